"""SCR end to end: train through tools/train.py, export the adapter, start RASS from the merged weights."""
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from safetensors.torch import load_file

from rass_mmseg.compat import CHECKPOINT_SAFE_GLOBALS
from tests.utils import FAST_TOOLS as FAST
from tests.utils import load_tool, repo_path, run_in_process, tool_path

SCR_CONFIG = repo_path('configs', 'scr', 'scr_tiny-sd_1xb4-300it_textures-128x128.py')
RASS_CONFIG = repo_path('configs', 'rass', 'rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py')


@pytest.fixture(scope='module')
def scr_run(tmp_path_factory):
    """Two SCR iterations through this repo's tools/train.py, then tools/model_converters/export_adapter.py on the
    checkpoint (both in-process)."""
    root = tmp_path_factory.mktemp('scr')
    work_dir = str(root / 'work')
    run_in_process(repo_path('tools', 'train.py'), SCR_CONFIG, '--work-dir', work_dir, '--cfg-options',
                   'train_cfg.max_iters=2', *FAST, cwd=str(root))
    run_in_process(tool_path('model_converters/export_adapter'), SCR_CONFIG, osp.join(work_dir, 'iter_2.pth'),
                   str(root / 'exported'), cwd=str(root), runner_tool=False)
    return root, work_dir


def test_training_exports_the_adapter_and_the_tool_exports_the_same(scr_run):
    root, work_dir = scr_run
    hook_dir = osp.join(work_dir, 'scr_adapter_iter_2')
    for name in ('adapter_config.json', 'adapter_model.safetensors', 'pytorch_lora_weights.safetensors',
                 'rass_adapter.json', 'trained_modules.safetensors'):
        assert osp.isfile(osp.join(hook_dir, name)), name
        assert osp.isfile(root / 'exported' / name), name
    for name in ('adapter_model.safetensors', 'pytorch_lora_weights.safetensors', 'trained_modules.safetensors'):
        hook, tool = load_file(osp.join(hook_dir, name)), load_file(str(root / 'exported' / name))
        assert hook.keys() == tool.keys() and all(torch.equal(hook[k], tool[k]) for k in hook)
    metadata = [json.loads(open(osp.join(folder, 'rass_adapter.json')).read())
                for folder in (hook_dir, str(root / 'exported'))]
    assert metadata[0] == metadata[1] and metadata[0]['trained_modules'] == ['conv_in']
    trained = load_file(osp.join(hook_dir, 'trained_modules.safetensors'))
    assert sorted(trained) == ['conv_in.bias', 'conv_in.weight']
    # training changed the adapter: peft initialises lora_B to zero
    lora = load_file(osp.join(hook_dir, 'adapter_model.safetensors'))
    assert any('lora_B' in k and v.abs().sum() > 0 for k, v in lora.items())
    with pytest.raises(SystemExit, match='export_adapter: adapter folder .*exported is not empty; choose a new folder'):
        load_tool('model_converters/export_adapter').main([SCR_CONFIG, osp.join(work_dir, 'iter_2.pth'),
                                                           str(root / 'exported')])


def _rass_runner(tmp_path, adapter: str, seed: int = 0) -> Runner:
    cfg = Config.fromfile(RASS_CONFIG)
    cfg.model.backbone.merge_adapters = [adapter]
    cfg.work_dir = str(tmp_path / 'rass')
    cfg.randomness = dict(seed=seed)
    return Runner.from_cfg(cfg)


def test_rass_starts_from_the_merged_scr_weights(scr_run, tmp_path):
    _, work_dir = scr_run
    with torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS):
        scr = torch.load(osp.join(work_dir, 'iter_2.pth'), weights_only=True)['state_dict']
    runner = _rass_runner(tmp_path, osp.join(work_dir, 'scr_adapter_iter_2'))
    rass = runner.model.state_dict()
    scr_backbone = Config.fromfile(SCR_CONFIG).model.backbone
    scale = scr_backbone.lora_alpha / scr_backbone.lora_rank  # peft's default alpha 8 at rank 4: 2
    assert scale == 2
    checked = 0
    for key in scr:
        if '.lora_A.scr.' not in key:
            continue
        prefix = key.split('.lora_A.scr.')[0]
        a, b = scr[key], scr[f'{prefix}.lora_B.scr.weight']
        base = scr[f'{prefix}.base_layer.weight']
        if a.dim() == 2:  # Linear: W + (alpha / r) B A
            delta = scale * b @ a
        else:  # Conv2d: A is (r, in, k, k), B a 1x1 (out, r, 1, 1) conv
            delta = scale * (b.flatten(1) @ a.flatten(1)).reshape(base.shape)
        merged = rass[f'{prefix}.base_layer.weight']  # RASS wraps the merged weight in its Seg LoRA
        torch.testing.assert_close(merged, base + delta, rtol=1e-5, atol=1e-6)
        checked += 1
    assert checked > 100
    # conv_in starts from the conv_in SCR trained, not the random one
    plain = Config.fromfile(RASS_CONFIG)
    plain.work_dir = str(tmp_path / 'plain')
    initial = Runner.from_cfg(plain).model.state_dict()
    assert not torch.equal(rass['backbone.unet.conv_in.base_layer.weight'],
                           initial['backbone.unet.conv_in.base_layer.weight'])
    # the SCR run and the RASS run built the same random base weights (same seed)
    frozen = 'backbone.unet.conv_out.weight'
    assert torch.equal(rass[frozen], scr[frozen])


def test_an_adapter_for_another_base_model_is_refused(scr_run, tmp_path):
    _, work_dir = scr_run
    with pytest.raises(ValueError, match='was trained on another base UNet'):
        _rass_runner(tmp_path, osp.join(work_dir, 'scr_adapter_iter_2'), seed=1)
