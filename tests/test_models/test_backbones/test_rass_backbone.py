import json
import math
import os.path as osp

import pytest
import torch
from safetensors.torch import load_file

from rass_mmseg.models.adapters.lora_adapters import lora_parameter_names, save_lora_adapter
from rass_mmseg.models.backbones import RASSBackbone
from tests.utils import build_rass_backbone as build
from tests.utils import randomize_seg_lora


def run(backbone: RASSBackbone, images: torch.Tensor, phrases=('a photo',)) -> list:
    backbone.eval()
    with torch.no_grad():
        return backbone(images, backbone.encode_prompt(list(phrases)).embeddings)


@pytest.mark.parametrize('size', [(64, 64), (100, 72), (33, 47), (128, 96), (5, 7)])
def test_feature_shapes_and_strides(tiny_backbone_cfg, size):
    backbone = build(tiny_backbone_cfg)
    assert backbone.feature_strides == [4, 8, 32, 16, 8, 8]
    assert backbone.feature_channels == [32, 32, 64, 64, 32, 32]
    assert backbone.size_divisor == 64
    height, width = size
    features = run(backbone, torch.rand(2, 3, height, width) * 2 - 1)
    assert len(features) == 6
    for feature, channels, stride in zip(features, backbone.feature_channels, backbone.feature_strides):
        assert tuple(feature.shape) == (2, channels, math.ceil(height / stride), math.ceil(width / stride))
        assert torch.isfinite(feature).all()


def test_only_seg_lora_and_conv_in_train(tiny_backbone_cfg):
    backbone = build(tiny_backbone_cfg)
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    lora = {f'unet.{n}' for n in lora_parameter_names(backbone.unet, 'seg')}
    conv_in = {'unet.conv_in.base_layer.weight', 'unet.conv_in.base_layer.bias'}
    assert lora and trainable == lora | conv_in
    assert all('.seg.' in n for n in lora)
    # every LoRA target family of RASS.md got an adapter, conv_out did not
    for target in ('to_q', 'to_k', 'to_v', 'to_out.0', 'conv1', 'conv2', 'conv_in', 'conv_shortcut', 'proj_in',
                   'proj_out', 'ff.net.2', 'ff.net.0.proj', 'upsamplers.0.conv'):
        assert any(f'{target}.lora_A' in n for n in lora), target
    assert not any('conv_out' in n for n in lora)
    assert not any(n.startswith(('vae.', 'text_encoder.')) for n in trainable)

    features = backbone.train()(torch.rand(1, 3, 64, 64) * 2 - 1, backbone.encode_prompt(['x']).embeddings)
    sum(f.float().mean() for f in features).backward()
    with_grad = {n for n, p in backbone.named_parameters() if p.grad is not None}
    assert with_grad <= trainable and 'unet.conv_in.base_layer.weight' in with_grad


def test_frozen_parts_stay_in_eval_mode(tiny_backbone_cfg):
    backbone = build(tiny_backbone_cfg).train()
    assert backbone.unet.training
    assert not backbone.vae.training and not backbone.text_encoder.training


def test_new_seg_lora_is_a_no_op_and_changes_output_once_trained(tiny_backbone_cfg):
    backbone = build(tiny_backbone_cfg)
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    before = run(backbone, images)
    randomize_seg_lora(backbone)
    after = run(backbone, images)
    assert torch.equal(before[0], after[0])  # VAE taps do not depend on the UNet LoRA
    assert (before[-1] - after[-1]).abs().max() > 1e-3


def test_adapter_round_trip_and_merge_equals_unmerged(tiny_backbone_cfg, tmp_path):
    source = build(tiny_backbone_cfg)
    randomize_seg_lora(source)
    adapter_dir = str(tmp_path / 'scr_adapter')
    save_lora_adapter(source.unet, 'seg', adapter_dir)

    lora = {n.replace('.seg.', '.'): source.unet.get_parameter(n) for n in lora_parameter_names(source.unet, 'seg')}
    # peft's keys (the UNet inside a PeftModel) and diffusers' keys (the UNet inside a pipeline)
    for file_name, prefix in (('adapter_model.safetensors', 'base_model.model.'),
                              ('pytorch_lora_weights.safetensors', 'unet.')):
        saved = load_file(osp.join(adapter_dir, file_name))
        expected = {prefix + k: v for k, v in lora.items()}
        assert set(saved) == set(expected), file_name
        assert all(torch.equal(saved[k], expected[k].detach()) for k in saved), file_name
    config = json.load(open(osp.join(adapter_dir, 'adapter_config.json')))
    assert config['r'] == 4 and 'to_q' in config['target_modules']

    merged = build(tiny_backbone_cfg, merge_adapters=[adapter_dir])
    assert not any('merged0' in n for n, _ in merged.named_parameters())
    images = torch.rand(2, 3, 64, 80) * 2 - 1
    unmerged_features = run(source, images)
    merged_features = run(merged, images)
    for a, b in zip(unmerged_features, merged_features):
        # merging folds B @ A into the fp32 base weights: equal up to float rounding
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    # the merged model still has a fresh, trainable seg LoRA
    assert lora_parameter_names(merged.unet, 'seg')


def test_adapter_errors_name_the_file(tiny_backbone_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match='missing .*adapter_config.json'):
        build(tiny_backbone_cfg, merge_adapters=[str(tmp_path / 'nope')])

    wrong_rank = build(tiny_backbone_cfg, lora_rank=2)
    save_lora_adapter(wrong_rank.unet, 'seg', str(tmp_path / 'rank2'))
    config_file = tmp_path / 'rank2' / 'adapter_config.json'
    config = json.loads(config_file.read_text())
    config['r'] = 4  # config claims rank 4, weights are rank 2
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r'rank2.*shape .*wrong rank'):
        build(tiny_backbone_cfg, merge_adapters=[str(tmp_path / 'rank2')])

    other = build(tiny_backbone_cfg, lora_targets=['to_q', 'to_v'])
    save_lora_adapter(other.unet, 'seg', str(tmp_path / 'qv'))
    config_file = tmp_path / 'qv' / 'adapter_config.json'
    config = json.loads(config_file.read_text())
    config['target_modules'] = ['to_q', 'to_k', 'to_v']
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r'qv.*missing keys'):
        build(tiny_backbone_cfg, merge_adapters=[str(tmp_path / 'qv')])

    (tmp_path / 'bad').mkdir()
    adapter_config = {'r': 4, 'lora_alpha': 4, 'target_modules': ['x']}
    (tmp_path / 'bad' / 'adapter_config.json').write_text(json.dumps(adapter_config))
    (tmp_path / 'bad' / 'adapter_model.safetensors').write_bytes(b'not a safetensors file')
    with pytest.raises(ValueError, match='not a readable safetensors file'):
        build(tiny_backbone_cfg, merge_adapters=[str(tmp_path / 'bad')])


def test_sdpa_and_eager_attention_agree(tiny_backbone_cfg):
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    sdpa = run(build(tiny_backbone_cfg, attention='sdpa'), images)
    eager = run(build(tiny_backbone_cfg, attention='eager'), images)
    for a, b in zip(sdpa, eager):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_gradient_checkpointing_gives_same_gradients(tiny_backbone_cfg):
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    grads = []
    for checkpointing in (False, True):
        backbone = build(tiny_backbone_cfg, gradient_checkpointing=checkpointing).train()
        randomize_seg_lora(backbone)
        features = backbone(images, backbone.encode_prompt(['x']).embeddings)
        sum(f.square().mean() for f in features).backward()
        grads.append(backbone.unet.conv_in.base_layer.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_latent_mode(tiny_backbone_cfg):
    images = torch.rand(1, 3, 32, 32) * 2 - 1

    def two_encodings(backbone, training):
        backbone.train(training)
        with torch.no_grad():
            return [backbone.encode_latents(images) for _ in range(2)]

    mode = build(tiny_backbone_cfg, latent_mode='mode')
    posterior = mode.vae.encode(images).latent_dist
    for training in (True, False):
        a, b = two_encodings(mode, training)
        assert torch.equal(a, b) and torch.equal(a, posterior.mode() * mode.vae.config.scaling_factor)
    sample_in_training = build(tiny_backbone_cfg, latent_mode='sample_in_training')
    assert not torch.equal(*two_encodings(sample_in_training, True))
    assert torch.equal(*two_encodings(sample_in_training, False))
    sample = build(tiny_backbone_cfg, latent_mode='sample')  # the public code samples at test too
    for training in (True, False):
        a, b = two_encodings(sample, training)
        assert not torch.equal(a, b)
    # samples of the posterior: their mean over many draws is the mode, their spread its std
    with torch.no_grad():
        draws = torch.cat([sample.encode_latents(images.expand(32, -1, -1, -1)) for _ in range(2)])
    draws = draws / sample.vae.config.scaling_factor
    bound = 5 * posterior.std / draws.shape[0]**0.5  # five standard errors of the mean of 64 draws
    assert ((draws.mean(0, keepdim=True) - posterior.mode()).abs() <= bound).all()
    assert ((draws.std(0, keepdim=True) / posterior.std - 1).abs() < 0.5).all()
    with pytest.raises(ValueError, match="latent_mode must be one of"):
        build(tiny_backbone_cfg, latent_mode='mean')


def test_pretrained_folder_matches_dicts_and_reports_missing_parts(tiny_backbone_cfg, tmp_path):
    reference = build(tiny_backbone_cfg)
    folder = tmp_path / 'sd'
    torch.manual_seed(0)
    from rass_mmseg.models.utils.sd_components import build_sd_components
    vae, unet, text_encoder, tokenizer = build_sd_components(
        vae=tiny_backbone_cfg['vae'], unet=tiny_backbone_cfg['unet'], text_encoder=tiny_backbone_cfg['text_encoder'])
    vae.save_pretrained(folder / 'vae')
    unet.save_pretrained(folder / 'unet')
    text_encoder.save_pretrained(folder / 'text_encoder')
    tokenizer.save_pretrained(folder / 'tokenizer')
    keys = ('vae', 'unet', 'text_encoder')
    loaded = build({k: v for k, v in tiny_backbone_cfg.items() if k not in keys}, pretrained=str(folder))
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    for a, b in zip(run(reference, images), run(loaded, images)):
        torch.testing.assert_close(a, b)

    (folder / 'unet' / 'config.json').unlink()
    with pytest.raises(FileNotFoundError, match=r'incomplete: missing unet/config.json'):
        build({k: v for k, v in tiny_backbone_cfg.items() if k not in keys}, pretrained=str(folder))
    with pytest.raises(FileNotFoundError, match='no such folder'):
        build({k: v for k, v in tiny_backbone_cfg.items() if k not in keys}, pretrained=str(tmp_path / 'none'))
    with pytest.raises(ValueError, match='not both'):
        build(tiny_backbone_cfg, pretrained=str(folder))


def test_bad_arguments(tiny_backbone_cfg):
    with pytest.raises(ValueError, match=r'unet_feature_indices=\[4\]'):
        build(tiny_backbone_cfg, unet_feature_indices=[4])
    with pytest.raises(ValueError, match="attention must be 'sdpa' or 'eager'"):
        build(tiny_backbone_cfg, attention='flash')
    backbone = build(tiny_backbone_cfg)
    with pytest.raises(ValueError, match=r'shape \(N, 3, H, W\)'):
        backbone(torch.rand(1, 1, 64, 64), backbone.encode_prompt(['x']).embeddings)
    images = torch.zeros(1, 3, 16, 16)
    images[0, 1, 2, 3] = float('nan')
    images[0, 0, 0, 0] = float('inf')
    with pytest.raises(ValueError, match='holds 2 NaN/inf values'):
        backbone(images, backbone.encode_prompt(['x']).embeddings)


def test_compiled_unet_equals_eager_and_falls_back_when_compilation_fails(tiny_backbone_cfg, monkeypatch):
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    eager = build(tiny_backbone_cfg)
    randomize_seg_lora(eager)
    # dynamo's graphs, run eagerly: no C++ build in tests
    compiled = build(tiny_backbone_cfg, compile=dict(backend='eager'))
    compiled.load_state_dict(eager.state_dict())
    assert set(compiled.state_dict()) == set(eager.state_dict())  # compiling in place keeps the keys
    for a, b in zip(run(eager, images), run(compiled, images)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

    def failing_backend(graph, example_inputs):
        raise RuntimeError('no compiler here')

    logs = []
    monkeypatch.setattr('rass_mmseg.models.backbones.stable_diffusion_backbone.print_log',
                        lambda message, **kwargs: logs.append(message))
    broken = build(tiny_backbone_cfg, compile=dict(backend=failing_backend))
    broken.load_state_dict(eager.state_dict())
    for _ in range(2):
        for a, b in zip(run(eager, images), run(broken, images)):
            torch.testing.assert_close(a, b)
    assert len(logs) == 1 and 'running it eagerly' in logs[0] and 'no compiler here' in logs[0]
