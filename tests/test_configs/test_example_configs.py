"""configs/examples: a stock mmseg config (by ``mmseg::``) with the RASS backbone and neck swapped in builds at full
size without weights, trains through the tools at toy size, and refuses a head that does not fit in one line."""
import copy
import glob
import os.path as osp

import mmseg
import pytest
import torch
from mmengine.config import Config
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS

from rass_mmseg.models.utils.sd_components import without_weights
from tests.utils import repo_path

FULL = repo_path('configs', 'examples', 'segformer_rass-sd21-base_8xb2-160k_ade20k-512x512.py')
TINY = repo_path('configs', 'examples', 'segformer_rass-tiny-sd_1xb4-300it_textures-128x128.py')
MMSEG_SEGFORMER = osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs', 'segformer',
                           'segformer_mit-b5_8xb2-160k_ade20k-512x512.py')
SKIPPED_LINE = 'is skipped since its requires_grad=False'


def without_scope(cfg):
    """A config value without the ``_scope_`` keys mmengine adds to what comes from an ``mmseg::`` base."""
    if isinstance(cfg, dict):
        return {key: without_scope(value) for key, value in cfg.items() if key != '_scope_'}
    if isinstance(cfg, (list, tuple)):
        return [without_scope(value) for value in cfg]
    return cfg


def test_full_size_example_takes_mmseg_segformer_and_builds_without_weights():
    cfg = Config.fromfile(FULL)
    mmseg_cfg = Config.fromfile(MMSEG_SEGFORMER)
    # only the backbone, the neck and the preprocessor's normalisation differ from mmseg's config
    assert cfg.model.type == 'EncoderDecoder' and cfg.model.decode_head == mmseg_cfg.model.decode_head
    for key in ('optim_wrapper', 'param_scheduler', 'train_dataloader', 'val_dataloader', 'train_cfg'):
        assert without_scope(cfg[key]) == without_scope(mmseg_cfg[key]), key
    assert 'init_cfg' not in cfg.model.backbone  # mmseg's MiT checkpoint is not left behind
    assert cfg.runner_type == 'InputCheckingRunner' and 'rass_mmseg' in cfg.custom_imports.imports
    without_weights(cfg.model, cfg.sd21_base_vae, cfg.sd21_base_unet, cfg.sd21_base_text_encoder)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert type(model) is EncoderDecoder
    assert model.backbone.feature_channels == cfg.model.neck.in_channels
    assert model.neck.out_channels_per_level == list(model.decode_head.in_channels) == [64, 128, 320, 512]


def test_tiny_example_trains_with_one_line_for_the_frozen_parameters(tmp_path, train_tool):
    work_dir = tmp_path / 'work'
    train_tool(TINY, work_dir, 'train_cfg.max_iters=2')
    assert osp.isfile(work_dir / 'iter_2.pth')
    logs = glob.glob(str(work_dir / '*' / '*.log'))
    assert len(logs) == 1
    with open(logs[0], encoding='utf-8') as f:
        log = f.read()
    assert 'Iter(train) [2/2]' in log
    assert SKIPPED_LINE not in log
    summary = [line for line in log.splitlines() if 'frozen parameters' in line]
    assert len(summary) == 1, summary
    assert 'backbone.text_encoder' in summary[0] and 'backbone.unet' in summary[0] and 'backbone.vae' in summary[0]


@pytest.fixture(scope='module')
def tiny_model_cfg() -> Config:
    return Config.fromfile(TINY).model


def test_backbone_without_neck_in_plain_encoder_decoder_is_refused_at_build(tiny_model_cfg):
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg.pop('neck')  # only the backbone replaced, as in the bare swap of mmseg's SegFormer config
    with pytest.raises(ValueError) as error:
        MODELS.build(cfg)
    message = str(error.value)
    assert '\n' not in message
    assert message.startswith('EncoderDecoder: model.decode_head.in_channels=[64, 128, 320, 512]')
    assert 'backbone outputs have channels [32, 32, 64, 64, 32, 32]' in message
    assert "or add model.neck=dict(type='FeatureProjection'" in message


def test_neck_that_does_not_fit_the_head_in_plain_encoder_decoder_is_refused_at_build(tiny_model_cfg):
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg.neck.out_channels = 64
    with pytest.raises(ValueError) as error:
        MODELS.build(cfg)
    message = str(error.value)
    assert '\n' not in message
    assert 'model.decode_head.in_channels=[64, 128, 320, 512]' in message and 'channels [64, 64, 64, 64]' in message
    assert 'does not fit model.neck.out_channels' in message


def test_fitting_head_builds_and_runs(tiny_model_cfg):
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_cfg)
    model.eval()
    with torch.no_grad():
        logits = model(torch.zeros(1, 3, 64, 64), mode='tensor')
    assert logits.shape == (1, 8, 16, 16)
