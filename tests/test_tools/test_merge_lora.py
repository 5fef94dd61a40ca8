import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from mmseg.registry import MODELS

from rass_mmseg.models.adapters.lora_adapters import lora_parameter_names
from tests.utils import load_tool, repo_path

merge_checkpoint = load_tool('model_converters/merge_lora').merge_checkpoint

CONFIG = repo_path('configs', 'rass', 'rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py')


def test_merged_checkpoint_predicts_like_the_lora_model(tmp_path):
    cfg = Config.fromfile(CONFIG)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a trained-looking Seg LoRA: B is no longer zero
        for name in lora_parameter_names(model.backbone.unet, 'seg'):
            param = model.backbone.unet.get_parameter(name)
            param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    checkpoint = str(tmp_path / 'lora.pth')
    torch.save(dict(meta=dict(iter=3), state_dict=model.state_dict()), checkpoint)

    out = str(tmp_path / 'merged.pth')
    state = merge_checkpoint(CONFIG, checkpoint, out)
    assert not any('lora_' in k or 'base_layer' in k for k in state)
    assert 'backbone.unet.conv_in.weight' in state

    deploy_cfg = copy.deepcopy(cfg.model)
    deploy_cfg.backbone.deploy = True
    deployed = MODELS.build(deploy_cfg).eval()
    assert not any('lora_' in n for n, _ in deployed.named_parameters())
    loaded = load_checkpoint(deployed, out, map_location='cpu', strict=True)
    assert loaded['meta']['rass_mmseg_merged_lora'] and loaded['meta']['iter'] == 3

    images = torch.rand(2, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        expected = model(images, mode='tensor')
        merged = deployed(images, mode='tensor')
    # B @ A folded into fp32 weights: equal up to float rounding
    torch.testing.assert_close(merged, expected, rtol=1e-4, atol=1e-4)

    with pytest.raises(FileExistsError, match='refusing to overwrite'):
        merge_checkpoint(CONFIG, checkpoint, out)
    assert osp.getsize(out) > 0
