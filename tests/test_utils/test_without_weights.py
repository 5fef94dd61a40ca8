"""rass_mmseg.utils.model_without_weights: the one build-without-weights helper of tools/analysis_tools/benchmark.py
(``--without-weights``) and of the checkpoint converter (rass_mmseg.converters.target_model)."""
import re

import pytest
from mmengine.config import Config

from rass_mmseg.converters.target_model import trainable_state_shapes
from rass_mmseg.utils import model_without_weights
from rass_mmseg.utils.model_benchmark import load_config
from tests.utils import TINY, repo_path

FULL = repo_path('configs', 'rass', 'rass_sd21-base_segformer-head_8xb2-160k_ade20k-lq-512x512.py')


def test_the_model_reads_the_architecture_dicts_and_the_config_is_left_alone():
    cfg = Config.fromfile(FULL)
    pretrained = cfg.model.backbone.pretrained
    model = model_without_weights(cfg, FULL)
    assert model.backbone.pretrained is None and model.backbone.unet == cfg.sd21_base_unet
    assert model.backbone.vae == cfg.sd21_base_vae and model.backbone.text_encoder == cfg.sd21_base_text_encoder
    assert pretrained and cfg.model.backbone.pretrained == pretrained and 'unet' not in cfg.model.backbone


def test_the_converter_and_the_benchmark_refuse_a_config_without_the_dicts_in_the_same_words(tmp_path):
    config = tmp_path / 'reads_a_folder.py'
    config.write_text(f"_base_ = [{TINY!r}]\nmodel = dict(backbone=dict(pretrained='checkpoints/some_sd'))\n")
    message = (rf'{re.escape(str(config))} needs model.backbone.pretrained and the keys sd21_base_vae, sd21_base_unet, '
               r'sd21_base_text_encoder to build without weights; missing: sd21_base_vae, sd21_base_unet')
    with pytest.raises(ValueError, match=message):
        trainable_state_shapes(Config.fromfile(str(config)), str(config))
    with pytest.raises(ValueError, match=message):
        load_config(str(config), without_weights=True)
