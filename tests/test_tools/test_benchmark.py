"""tools/analysis_tools/benchmark.py and its logic, :mod:`rass_mmseg.utils.model_benchmark`."""
import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS

from rass_mmseg.utils import model_benchmark
from tests.utils import load_tool, repo_path

benchmark = load_tool('analysis_tools/benchmark')

CONFIG = repo_path('configs', 'rass', 'rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py')
M2F_CONFIG = repo_path('configs', 'rass', 'rass_tiny-sd_mask2former_1xb4-300it_textures-128x128.py')


def independent_counts(config: str) -> tuple:
    """Parameters of the backbone, neck and head built on their own from the config."""
    cfg = Config.fromfile(config).model
    parts = [MODELS.build(cfg[key]) for key in ('backbone', 'neck', 'decode_head')]
    total = sum(p.numel() for part in parts for p in part.parameters())
    trainable = sum(p.numel() for part in parts for p in part.parameters() if p.requires_grad)
    return total, trainable


def test_benchmark_prints_the_fields_and_counts_match(capsys):
    results = benchmark.main([CONFIG, '--compare', M2F_CONFIG, '--shape', '64', '64', '--num-images', '2',
                              '--warmup', '1', '--rounds', '1', '--device', 'cpu'])
    out = capsys.readouterr().out
    for field in ('params', 'trainable', 'FPS', 'ms/img', 'peak MB', 'FPS ratio (first / second)'):
        assert field in out
    assert len(results) == 2
    for result, config in zip(results, (CONFIG, M2F_CONFIG)):
        assert (result['total'], result['trainable']) == independent_counts(config)
        assert result['fps'] > 0 and result['peak_memory_mb'] > 0
    ratio = float(out.strip().splitlines()[-1].split(':')[-1])
    assert abs(ratio - results[0]['fps'] / results[1]['fps']) < 1e-3


FULL_CONFIG = repo_path('configs', 'rass', 'rass_sd21-base_segformer-head_8xb2-160k_ade20k-lq-512x512.py')


def test_train_mode_steps_only_the_trainable_parameters():
    model = model_benchmark.build_model(CONFIG, None, 'cpu', training=True)
    wrapper = model_benchmark.build_training_optim_wrapper(model, model_benchmark.load_config(CONFIG), 'none', 'cpu')
    data = model_benchmark.random_training_batch(2, (64, 64), model_benchmark.label_count(model))
    labels = torch.cat([sample.gt_sem_seg.data for sample in data['data_samples']])
    assert labels.min() >= 0 and labels.max() < 8 and labels.unique().numel() == 8
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    assert model_benchmark.time_training(model, wrapper, data, iterations=2, warmup=0, device='cpu') > 0
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert changed and changed <= trainable
    assert any('lora' in name for name in changed) and 'decode_head.conv_seg.weight' in changed


def test_train_mode_prints_images_per_second(capsys):
    results = benchmark.main([CONFIG, '--mode', 'train', '--batch-size', '2', '--shape', '64', '64',
                              '--num-images', '1', '--warmup', '0', '--rounds', '1', '--device', 'cpu'])
    out = capsys.readouterr().out
    assert 'mode=train batch=2' in out and results[0]['fps'] > 0


def test_amp_training_needs_cuda():
    model = model_benchmark.build_model(CONFIG, None, 'cpu', training=True)
    with pytest.raises(ValueError, match='needs a CUDA device'):
        model_benchmark.build_training_optim_wrapper(model, model_benchmark.load_config(CONFIG), 'bf16', 'cpu')


def test_without_weights_uses_the_architecture_dicts():
    cfg = model_benchmark.load_config(FULL_CONFIG, without_weights=True)
    backbone = cfg.model.backbone
    assert backbone.pretrained is None
    assert backbone.unet == cfg.sd21_base_unet and backbone.vae == cfg.sd21_base_vae
    assert backbone.text_encoder == cfg.sd21_base_text_encoder
    scr_config = repo_path('configs', 'scr', 'scr_sd21-base_4xb4-100k_ade20k-512x512.py')
    scr = model_benchmark.load_config(scr_config, without_weights=True)
    assert scr.model.decode_head.lpips_weights is None and scr.model.backbone.pretrained is None


def test_without_weights_names_the_config_and_the_missing_keys():
    message = r'rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128\.py needs .*missing: sd21_base_vae'
    with pytest.raises(ValueError, match=message):
        model_benchmark.load_config(CONFIG, without_weights=True)


def test_compile_measures_the_config_eagerly_and_compiled_side_by_side(capsys, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, 'compile', lambda module, **kwargs: compiled.append(kwargs))
    results = benchmark.main([CONFIG, '--compile', 'reduce-overhead', '--shape', '64', '64', '--num-images', '1',
                              '--warmup', '1', '--rounds', '1', '--device', 'cpu'])
    out = capsys.readouterr().out
    assert compiled == [dict(mode='reduce-overhead')]  # only the second model's UNet
    assert results[1]['config'].endswith('(compiled, reduce-overhead)') and results[0]['config'] == CONFIG
    assert f'compiled / eager: {results[1]["fps"] / results[0]["fps"]:.3f}x' in out
    with pytest.raises(ValueError, match='--compare and --compile'):
        benchmark.main([CONFIG, '--compile', 'default', '--compare', CONFIG, '--device', 'cpu'])
