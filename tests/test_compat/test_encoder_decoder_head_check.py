"""mmseg's plain EncoderDecoder refuses, at build time and in one line, a decode head that does not fit a RASS
backbone or neck (the check of RASSEncoderDecoder, reused); models without RASS parts build as before."""
import copy

import pytest
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS

from rass_mmseg import compat
from rass_mmseg.compat import encoder_decoder_head_check


@pytest.fixture
def plain_cfg(tiny_cfg) -> dict:
    cfg = copy.deepcopy(tiny_cfg.model)
    cfg.type = 'EncoderDecoder'
    return cfg


def test_head_that_does_not_fit_the_neck_is_refused_in_one_line(plain_cfg):
    plain_cfg.decode_head.in_channels = [32, 64, 160, 256]  # mmseg's SegFormer-B0 head, left as it was
    with pytest.raises(ValueError) as error:
        MODELS.build(plain_cfg)
    message = str(error.value)
    assert '\n' not in message
    assert message == ('EncoderDecoder: model.decode_head.in_channels=[32, 64, 160, 256] (in_index=[0, 1, 2, 3]) does '
                       'not fit model.neck.out_channels: the neck outputs have channels [64, 64, 64, 64]; expected '
                       'in_channels=[64, 64, 64, 64]')


def test_backbone_without_neck_is_refused_naming_the_neck_key(plain_cfg):
    plain_cfg.pop('neck')
    with pytest.raises(ValueError, match=r"^EncoderDecoder: model.decode_head.in_channels=\[64, 64, 64, 64\] .* "
                                         r"does not fit model.backbone's feature channels: the backbone outputs .*"
                                         r"\(or add model.neck=dict\(type='FeatureProjection'"):
        MODELS.build(plain_cfg)


def test_fitting_head_builds_and_rass_encoder_decoder_keeps_its_own_message(plain_cfg, tiny_cfg):
    assert type(MODELS.build(plain_cfg)) is EncoderDecoder
    rass_cfg = copy.deepcopy(tiny_cfg.model)
    rass_cfg.decode_head.in_channels = [32, 64, 160, 256]
    with pytest.raises(ValueError, match=r'^model.decode_head.in_channels=\[32, 64, 160, 256\] .* does not fit '
                                         r'model.neck.out_channels') as error:
        MODELS.build(rass_cfg)
    assert str(error.value).count('model.neck.out_channels') == 1  # RASSEncoderDecoder checks once, itself


def test_models_without_rass_parts_build_as_before():
    # a tiny MiT with a head that does not fit it: mmseg's own parts are left to mmseg (fails at the first forward)
    cfg = dict(
        type='EncoderDecoder',
        backbone=dict(type='MixVisionTransformer', embed_dims=8, num_layers=[1, 1, 1, 1], num_heads=[1, 1, 1, 1]),
        decode_head=dict(type='SegformerHead', in_channels=[1, 2, 3, 4], in_index=[0, 1, 2, 3], channels=8,
                         num_classes=2))
    assert type(MODELS.build(cfg)) is EncoderDecoder


def test_the_fix_is_listed_and_installed_on_the_pinned_stack():
    assert 'encoder_decoder_head_check' in compat.installed_fixes()
    assert EncoderDecoder.__init__ is encoder_decoder_head_check._init_then_check
    assert EncoderDecoder.__init__.__wrapped__ is encoder_decoder_head_check._original_init
