"""mmseg's plain EncoderDecoder with a RASS backbone or neck refuses, in loss and predict and in one line naming the
label file, ground-truth labels its decode head has no class for (the check of RASSEncoderDecoder, reused); models
without RASS parts run as before."""
import copy

import pytest
import torch
from mmengine.structures import PixelData
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from rass_mmseg import compat
from rass_mmseg.compat import encoder_decoder_label_check


def samples(label_value: int, size=(64, 64)):
    label = torch.zeros(1, *size, dtype=torch.long)
    label[:, :8] = label_value
    sample = SegDataSample(metainfo=dict(img_path='data/x/img/a.jpg', seg_map_path='data/x/ann/a.png',
                                         img_shape=size, ori_shape=size, pad_shape=size))
    sample.gt_sem_seg = PixelData(data=label)
    return [sample]


@pytest.fixture
def plain_model(tiny_cfg) -> EncoderDecoder:
    cfg = copy.deepcopy(tiny_cfg.model)
    cfg.type = 'EncoderDecoder'
    model = MODELS.build(cfg)
    assert type(model) is EncoderDecoder
    return model


def test_loss_and_predict_refuse_a_label_outside_the_classes_in_one_line_naming_the_file(plain_model):
    inputs = torch.rand(1, 3, 64, 64) * 2 - 1
    num_classes = plain_model.decode_head.num_classes
    calls = (lambda: plain_model.loss(inputs, samples(200)), lambda: plain_model.eval().predict(inputs, samples(200)))
    for call in calls:
        with pytest.raises(ValueError) as error:
            call()
        message = str(error.value)
        assert '\n' not in message
        assert message.startswith('EncoderDecoder: label map data/x/ann/a.png (image data/x/img/a.jpg) holds label(s) '
                                  f'200, outside the classes 0..{num_classes - 1} and ignore_index 255')
        assert 'model.decode_head.num_classes' in message


def test_labels_in_range_and_ignored_pixels_pass(plain_model):
    inputs = torch.rand(1, 3, 64, 64) * 2 - 1
    losses = plain_model.train().loss(inputs, samples(255))
    assert all(torch.isfinite(value).all() for key, value in losses.items() if key.startswith('decode.loss'))
    assert len(plain_model.eval().predict(inputs, samples(1))) == 1


def test_rass_encoder_decoder_checks_once_itself(tiny_cfg, monkeypatch):
    calls = []
    monkeypatch.setattr('rass_mmseg.models.utils.batch_checks.check_label_range', lambda *a, **k: calls.append(a[3]))
    model = MODELS.build(copy.deepcopy(tiny_cfg.model))
    encoder_decoder_label_check.check_rass_labels(model, samples(200))
    assert calls == []  # RASSEncoderDecoder's own loss/predict check; the fix leaves it alone


def test_models_without_rass_parts_are_not_checked():
    cfg = dict(
        type='EncoderDecoder',
        backbone=dict(type='MixVisionTransformer', in_channels=3, embed_dims=8, num_stages=4,
                      num_layers=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], patch_sizes=[7, 3, 3, 3],
                      sr_ratios=[8, 4, 2, 1], out_indices=(0, 1, 2, 3)),
        decode_head=dict(type='SegformerHead', in_channels=[8, 16, 32, 64], in_index=[0, 1, 2, 3], channels=8,
                         num_classes=3, loss_decode=dict(type='CrossEntropyLoss')))
    model = MODELS.build(cfg)
    encoder_decoder_label_check.check_rass_labels(model, samples(200))  # mmseg's parts: mmseg's behaviour


def test_the_fix_is_installed_with_the_pinned_mmseg():
    assert 'encoder_decoder_label_check' in compat.installed_fixes()
    assert EncoderDecoder.loss is encoder_decoder_label_check._loss_after_label_check
    assert EncoderDecoder.predict is encoder_decoder_label_check._predict_after_label_check
