"""RestoreThenSegment (R2S): restorer -> segmentor in the segmentor's own input format, inference only.

The reference ("by hand") path never calls RestoreThenSegment's conversion: it normalises the batch for the
restorer with explicit tensors, crops, writes the restored image as mmseg's loader would give it (BGR, 0-255) and
hands it to the segmentor's *own* SegDataPreProcessor, then calls the segmentor's predict.
"""
import copy
import functools
from typing import List, Optional

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config, ConfigDict
from mmengine.runner import load_checkpoint
from mmengine.structures import PixelData
from mmseg.models.segmentors import BaseSegmentor
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import Tensor, nn

from tests.utils import repo_path

SEGFORMER_CFG = repo_path('configs', 'protocols', 'dt-segformer_mit-tiny_1xb4-300it_textures-128x128.py')
MASK2FORMER_CFG = repo_path('configs', 'protocols', 'dt-mask2former_mit-tiny_1xb4-300it_textures-128x128.py')
RESTORER_PREPROCESSOR = dict(type='SegDataPreProcessor', mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True)
HEIGHT, WIDTH = 40, 56  # not multiples of 32: padding paths are exercised


@MODELS.register_module(force=True)
class R2STestRestorer(BaseSegmentor):
    """Test double of SemanticConstrainedRestorer: ``restore`` maps its preprocessed [-1, 1] RGB batch to RGB in
    [0, 1] through a fixed 3x3 convolution (channel-mixing, so a channel-order mistake shows)."""

    def __init__(self, data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        generator = torch.Generator().manual_seed(1)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(0.3 * torch.randn(3, 3, 3, 3, generator=generator))
            self.conv.weight[:, :, 1, 1] += torch.eye(3)
            self.conv.bias.copy_(torch.tensor([0.1, -0.2, 0.05]))

    def restore(self, inputs: Tensor) -> Tensor:
        return torch.sigmoid(2 * self.conv(inputs))

    def extract_feat(self, inputs: Tensor) -> Tensor:
        return self.conv(inputs)

    def encode_decode(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        return self.restore(inputs)

    def loss(self, inputs: Tensor, data_samples: list) -> dict:
        return dict(loss=self.restore(inputs).mean())

    def predict(self, inputs: Tensor, data_samples: Optional[list] = None) -> list:
        return data_samples

    def _forward(self, inputs: Tensor, data_samples: Optional[list] = None) -> Tensor:
        return self.restore(inputs)


def restorer_cfg() -> dict:
    return dict(type='R2STestRestorer', data_preprocessor=copy.deepcopy(RESTORER_PREPROCESSOR))


@functools.lru_cache(maxsize=None)
def model_cfg(path: str) -> ConfigDict:
    return Config.fromfile(path).model


def segmentor_cfg(path: str = SEGFORMER_CFG, **preprocessor) -> ConfigDict:
    cfg = copy.deepcopy(model_cfg(path))
    cfg.data_preprocessor.update(preprocessor)
    return cfg


def build(segmentor: dict, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return MODELS.build(dict(type='RestoreThenSegment', restorer=restorer_cfg(), segmentor=segmentor, **kwargs))


def make_batch(batch: int = 2) -> dict:
    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for i in range(batch):
        inputs.append(torch.randint(0, 256, (3, HEIGHT, WIDTH), generator=generator, dtype=torch.uint8))  # BGR
        sample = SegDataSample(metainfo=dict(img_path=f'img_{i}.png', img_shape=(HEIGHT, WIDTH),
                                             ori_shape=(HEIGHT, WIDTH)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 8, (1, HEIGHT, WIDTH), generator=generator))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def by_hand(model: nn.Module, data: dict, r2s_pad_divisor: Optional[int] = None, swap_channels: bool = False):
    """Restorer, then the segmentor through its own preprocessor: (restored, segmentor inputs, predictions)."""
    data = copy.deepcopy(data)
    batch = torch.stack(data['inputs']).float().flip(1)  # BGR -> RGB, as bgr_to_rgb=True
    batch = (batch - 127.5) / 127.5
    if r2s_pad_divisor:
        pad_h, pad_w = -HEIGHT % r2s_pad_divisor, -WIDTH % r2s_pad_divisor
        batch = F.pad(batch, (0, pad_w, 0, pad_h), value=0)
    restored = model.restorer.restore(batch)[..., :HEIGHT, :WIDTH].clamp(0, 1)
    loaded = restored * 255 if swap_channels else restored.flip(1) * 255  # mmseg's loader order is BGR
    segmentor = model.segmentor
    processed = segmentor.data_preprocessor(dict(inputs=list(loaded), data_samples=data['data_samples']), False)
    predictions = segmentor.predict(processed['inputs'], processed['data_samples'])
    return restored, processed['inputs'], predictions


CASES = {
    'rgb-imagenet': (SEGFORMER_CFG, dict()),
    'bgr-other-mean-std': (SEGFORMER_CFG, dict(bgr_to_rgb=False, mean=[100.0, 120.0, 140.0], std=[50.0, 60.0, 70.0])),
    'rgb-test-padding': (SEGFORMER_CFG, dict(test_cfg=dict(size_divisor=32))),
    'mask2former-test-padding': (MASK2FORMER_CFG, dict(test_cfg=dict(size_divisor=32))),
}


@pytest.mark.parametrize('r2s_pad_divisor', [None, 64])
@pytest.mark.parametrize('case', list(CASES))
def test_predict_equals_restorer_then_segmentor_by_hand(case, r2s_pad_divisor):
    path, preprocessor = CASES[case]
    r2s_preprocessor = dict(RESTORER_PREPROCESSOR)
    if r2s_pad_divisor:  # our own preprocessor pads test batches: the restored image is cropped back
        r2s_preprocessor['test_cfg'] = dict(size_divisor=r2s_pad_divisor)
    model = build(segmentor_cfg(path, **preprocessor), data_preprocessor=r2s_preprocessor)
    data = make_batch()
    restored, expected_inputs, expected = by_hand(model, data, r2s_pad_divisor)
    results = model.test_step(copy.deepcopy(data))

    for result, reference, image in zip(results, expected, restored):
        torch.testing.assert_close(result.seg_logits.data, reference.seg_logits.data, atol=1e-5, rtol=0)
        assert torch.equal(result.pred_sem_seg.data, reference.pred_sem_seg.data)
        assert result.pred_sem_seg.shape == (HEIGHT, WIDTH)
        torch.testing.assert_close(result.restored_img.data, image, atol=1e-6, rtol=0)
        padding = [list(sample.metainfo.get('img_padding_size', [0] * 4)) for sample in (result, reference)]
        assert padding[0] == padding[1]

    if 'mask2former' not in case:  # mmseg's EncoderDecoder._forward cannot run Mask2FormerHead (needs samples)
        raw = model(*model.data_preprocessor(copy.deepcopy(data), False).values(), mode='tensor')
        torch.testing.assert_close(raw, model.segmentor._forward(expected_inputs), atol=1e-5, rtol=0)
    if not r2s_pad_divisor:  # inference (what analysis_tools/benchmark.py times): the segmentor's, on the same inputs
        metas = [dict(img_shape=(HEIGHT, WIDTH), ori_shape=(HEIGHT, WIDTH), pad_shape=expected_inputs.shape[-2:])] * 2
        inputs = model.data_preprocessor(copy.deepcopy(data), False)['inputs']
        torch.testing.assert_close(model.inference(inputs, metas), model.segmentor.inference(expected_inputs, metas),
                                   atol=1e-5, rtol=0)

    # the comparison can fail: the other channel order gives other logits
    _, _, swapped = by_hand(model, data, r2s_pad_divisor, swap_channels=True)
    assert (swapped[0].seg_logits.data - expected[0].seg_logits.data).abs().max() > 1e-3


@pytest.mark.parametrize('bgr_to_rgb', [True, False])
def test_segmentor_inputs_are_normalised_manually(bgr_to_rgb):
    mean, std = [100.0, 120.0, 140.0], [50.0, 60.0, 70.0]
    model = build(segmentor_cfg(bgr_to_rgb=bgr_to_rgb, mean=mean, std=std))
    restored = torch.rand(2, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(3))
    rgb = restored * 255
    seen = rgb if bgr_to_rgb else rgb[:, [2, 1, 0]]
    expected = (seen - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(model.segmentor_inputs(restored), expected, atol=1e-5, rtol=0)


def test_loss_raises_and_sub_models_are_frozen():
    model = build(segmentor_cfg())
    data = model.data_preprocessor(make_batch(), False)
    with pytest.raises(NotImplementedError, match='evaluation protocol'):
        model(data['inputs'], data['data_samples'], mode='loss')
    model.train()
    assert not any(module.training for module in model.modules())
    assert not any(parameter.requires_grad for parameter in model.parameters())


def perturbed_state_dict(module: nn.Module, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {key: value + 0.01 * torch.randn(value.shape, generator=generator) if value.is_floating_point() else value
            for key, value in module.state_dict().items()}


def assert_weights(module: nn.Module, state_dict: dict) -> None:
    own = module.state_dict()
    assert set(own) == set(state_dict)
    for key, value in state_dict.items():
        assert torch.equal(own[key], value), key


def test_checkpoints_are_loaded(tmp_path):
    fresh = build(segmentor_cfg())
    restorer_state = perturbed_state_dict(fresh.restorer, 1)
    segmentor_state = perturbed_state_dict(fresh.segmentor, 2)
    torch.save(dict(state_dict=restorer_state, meta=dict()), tmp_path / 'restorer.pth')
    torch.save(dict(state_dict=segmentor_state, meta=dict()), tmp_path / 'segmentor.pth')
    model = build(segmentor_cfg(), restorer_checkpoint=str(tmp_path / 'restorer.pth'),
                  segmentor_checkpoint=str(tmp_path / 'segmentor.pth'))
    assert_weights(model.restorer, restorer_state)
    assert_weights(model.segmentor, segmentor_state)
    model.init_weights()  # never overwrites loaded weights
    assert_weights(model.segmentor, segmentor_state)
    assert not torch.equal(fresh.restorer.conv.weight, model.restorer.conv.weight)

    with pytest.raises(FileNotFoundError, match='segmentor_checkpoint'):
        build(segmentor_cfg(), segmentor_checkpoint=str(tmp_path / 'missing.pth'))


def test_sub_model_checkpoint_given_to_the_whole_model(tmp_path):
    """What tools/test.py does with its checkpoint argument: load it into the R2S model."""
    model = build(segmentor_cfg())
    restorer_before = copy.deepcopy(model.restorer.state_dict())
    segmentor_state = perturbed_state_dict(model.segmentor, 4)
    torch.save(dict(state_dict=segmentor_state, meta=dict()), tmp_path / 'segmentor.pth')
    load_checkpoint(model, str(tmp_path / 'segmentor.pth'), map_location='cpu', strict=True)
    assert_weights(model.segmentor, segmentor_state)
    assert_weights(model.restorer, restorer_before)

    # a whole R2S state dict loads as usual
    other = build(segmentor_cfg())
    other.load_state_dict(model.state_dict(), strict=True)
    assert_weights(other, model.state_dict())


def test_sub_models_from_config_files_and_packaged_names():
    # train_cfg=None: what mmseg's init_model and analysis tools set on every config
    by_path = MODELS.build(dict(type='RestoreThenSegment', restorer=restorer_cfg(), segmentor=SEGFORMER_CFG,
                                train_cfg=None))
    assert by_path.segmentor.backbone.embed_dims == 16
    assert type(by_path.data_preprocessor).__name__ == 'SegDataPreProcessor'  # the restorer's, by default
    packaged = MODELS.build(dict(type='RestoreThenSegment', restorer=restorer_cfg(),
                                 segmentor='mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py'))
    assert packaged.segmentor.decode_head.num_classes == 150


@pytest.mark.parametrize('problem', ['no-restore', 'normalisation', 'segmentor-preprocessor', 'missing-config',
                                     'train-cfg', 'test-cfg', 'pretrained'])
def test_one_line_errors(problem):
    kwargs = dict(type='RestoreThenSegment', restorer=restorer_cfg(), segmentor=segmentor_cfg())
    if problem == 'no-restore':
        kwargs['restorer'] = segmentor_cfg()
        error, match = TypeError, 'no restore'
    elif problem == 'normalisation':
        kwargs['data_preprocessor'] = dict(RESTORER_PREPROCESSOR, mean=[0.0] * 3, std=[255.0] * 3)
        error, match = ValueError, 'normalises'
    elif problem == 'segmentor-preprocessor':
        kwargs['segmentor'].data_preprocessor = dict(type='BaseDataPreprocessor')
        error, match = TypeError, 'SegDataPreProcessor'
    elif problem == 'missing-config':
        kwargs['segmentor'] = 'configs/protocols/no_such_config.py'
        error, match = FileNotFoundError, 'does not exist'
    elif problem == 'train-cfg':
        kwargs['train_cfg'] = dict(type='IterBasedTrainLoop')
        error, match = ValueError, 'cannot be trained'
    elif problem == 'pretrained':  # None is accepted: mmseg's init_model sets it (tests/test_apis)
        kwargs['pretrained'] = 'checkpoints/segformer.pth'
        error, match = ValueError, 'not model.pretrained'
    else:
        kwargs['test_cfg'] = dict(mode='whole')
        error, match = ValueError, "segmentor's test_cfg"
    with pytest.raises(error, match=match):
        MODELS.build(kwargs)
