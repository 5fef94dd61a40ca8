"""``test_cfg.pad_to_multiple`` of ``slide_features``: the public RASS code's test-time padding.

detectron2's ``ImageList.from_tensors(images, SIZE_DIVISIBILITY=8)`` pads each 0-255 image with zeros at the bottom
and right before its backbone maps pixels to [-1, 1]; the windows slide over the padded image, the head's masks are
upsampled to the padded size and cropped back to the image (``sem_seg_postprocess``)."""
import copy

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmseg.registry import MODELS

from tests.utils import repo_path

SEGFORMER = repo_path('configs', '_base_', 'models', 'rass_tiny-sd_segformer-head.py')
MASK2FORMER = repo_path('configs', '_base_', 'models', 'rass_tiny-sd_mask2former.py')
PADDED = ConfigDict(mode='slide_features', pad_to_multiple=8, pad_value=-1.0)
IMAGENET = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])


def build(config: str, imagenet_inputs: bool = False):
    cfg = copy.deepcopy(Config.fromfile(config).model)
    if imagenet_inputs:  # a preprocessor with ImageNet statistics; the backbone maps its inputs to [-1, 1]
        cfg.data_preprocessor.update(IMAGENET)
        cfg.backbone.input_normalization = IMAGENET
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.eval()


def metas(height: int, width: int) -> list:
    return [dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width))]


@pytest.mark.parametrize('config', [SEGFORMER, MASK2FORMER])
def test_padding_with_black_matches_padding_by_hand_sliding_and_cropping(config):
    """40x61 (not a multiple of 8): padded to 40x64 with -1 by hand, windows x = 0..40 and 24..64 through backbone
    and neck, placed at offset // stride and averaged, the head sized to 40x64, cropped back to 40x61."""
    model = build(config)
    inputs = torch.rand(1, 3, 40, 61, generator=torch.Generator().manual_seed(0)) * 2 - 1
    padded = torch.cat([inputs, torch.full((1, 3, 40, 3), -1.0)], dim=-1)
    with torch.no_grad():
        windows = [model.extract_feat(padded[..., x1:x1 + 40]) for x1 in (0, 24)]
        features = []
        for level, stride in enumerate((4, 8, 16, 32)):
            total = torch.zeros(1, windows[0][level].shape[1], 40 // stride, 64 // stride)
            count = torch.zeros(1, 1, 40 // stride, 64 // stride)
            for x1, window in zip((0, 24), windows):
                left, right = x1 // stride, (x1 + 40) // stride
                total[..., :, left:right] += window[level][..., :40 // stride, :right - left]
                count[..., :, left:right] += 1
            features.append(total / count)
        expected = model.decode_head.predict(features, metas(40, 64), PADDED)[..., :40, :61]
        model.test_cfg = PADDED
        logits = model.inference(inputs, metas(40, 61))
        torch.testing.assert_close(logits, expected)
        assert logits.shape[-2:] == (40, 61)
        model.test_cfg = ConfigDict(mode='slide_features')  # without padding: narrower feature maps, other scores
        assert not torch.allclose(model.inference(inputs, metas(40, 61)), logits, atol=1e-3)
        aligned = inputs[..., :56]  # a size that is a multiple of 8 is not padded
        unpadded = model.inference(aligned, metas(40, 56))
        model.test_cfg = PADDED
        torch.testing.assert_close(model.inference(aligned, metas(40, 56)), unpadded)


@pytest.mark.parametrize('imagenet_inputs', [False, True])
def test_pad_value_minus_one_is_detectron2s_zero_pixel_padding(imagenet_inputs):
    """Padding the uint8 image with 0 before the data preprocessor (as detectron2 does), sliding without padding and
    cropping gives the padded test's logits, whatever normalisation the preprocessor applies."""
    model = build(SEGFORMER, imagenet_inputs)
    image = torch.randint(0, 256, (3, 40, 61), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    zero_padded = torch.cat([image, torch.zeros(3, 40, 3, dtype=torch.uint8)], dim=-1)
    with torch.no_grad():
        model.test_cfg = ConfigDict(mode='slide_features')
        inputs = model.data_preprocessor(dict(inputs=[zero_padded]), training=False)['inputs']
        expected = model.inference(inputs, metas(40, 64))[..., :40, :61]
        model.test_cfg = PADDED
        inputs = model.data_preprocessor(dict(inputs=[image]), training=False)['inputs']
        torch.testing.assert_close(model.inference(inputs, metas(40, 61)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('test_cfg, match', [
    (dict(mode='slide_features', pad_to_multiple=0), 'pad_to_multiple must be a positive int, got 0'),
    (dict(mode='slide_features', pad_to_multiple='8'), "pad_to_multiple must be a positive int, got '8'"),
    (dict(mode='slide_features', pad_to_multiple=8, pad_value='black'), "pad_value must be a number, got 'black'"),
    (dict(mode='whole', pad_to_multiple=8), "applies to mode='slide_features' only, got mode='whole'"),
])
def test_bad_padding_settings_are_refused_in_one_line(test_cfg, match):
    cfg = Config.fromfile(SEGFORMER).model
    cfg.test_cfg = test_cfg
    with pytest.raises(ValueError, match=match) as error:
        MODELS.build(cfg)
    assert '\n' not in str(error.value)
