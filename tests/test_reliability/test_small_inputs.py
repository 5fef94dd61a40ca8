"""Images smaller than the latent stride (8) or the backbone's padding divisor (64), and odd sizes, go through the
whole tiny RASS segmentor (built from ``configs/_base_/models/rass_tiny-sd_segformer-head.py``) and give
predictions of their size.

``tests/test_models/test_backbones`` checks the backbone's feature shapes at such sizes; this checks the segmentor's
output (un-padding and resizing back to the input) for inference and a training step.
"""
import copy

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample


@pytest.fixture(scope='module')
def model(tiny_cfg):
    init_default_scope('mmseg')  # module-scoped: built before the autouse per-test scope fixture runs
    torch.manual_seed(0)
    segmentor = MODELS.build(copy.deepcopy(tiny_cfg.model))
    segmentor.init_weights()
    return segmentor


def batch(height: int, width: int, labels: bool = False) -> dict:
    generator = torch.Generator().manual_seed(height * 1000 + width)
    image = torch.randint(0, 256, (3, height, width), generator=generator, dtype=torch.uint8)
    sample = SegDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width)))
    if labels:
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 8, (1, height, width), generator=generator))
    return dict(inputs=[image], data_samples=[sample])


@pytest.mark.parametrize('size', [(1, 1), (5, 7), (7, 5), (65, 33), (33, 65), (63, 129)])
def test_prediction_has_the_input_size(model, size):
    model.eval()
    with torch.no_grad():
        result = model.test_step(batch(*size))[0]
    assert tuple(result.pred_sem_seg.data.shape) == (1, *size)
    logits = result.seg_logits.data
    assert logits.shape == (8, *size) and torch.isfinite(logits).all()
    assert int(result.pred_sem_seg.data.max()) < 8
    assert torch.equal(result.pred_sem_seg.data[0], logits.argmax(0))


@pytest.mark.parametrize('size', [(5, 7), (65, 33)])
def test_training_step_on_tiny_and_odd_sizes(model, size):
    model.train()
    optim_wrapper = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.01)))
    before = model.backbone.unet.conv_in.base_layer.weight.detach().clone()
    log_vars = model.train_step(batch(*size, labels=True), optim_wrapper)
    assert torch.isfinite(log_vars['loss'])
    assert not torch.equal(model.backbone.unet.conv_in.base_layer.weight, before)
