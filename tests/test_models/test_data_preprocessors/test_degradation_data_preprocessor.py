"""DegradationDataPreProcessor: when it degrades, what it keeps, and its determinism rules."""
import os.path as osp
from typing import List, Tuple

import pytest
import torch
from mmengine.config import Config
from mmengine.structures import PixelData
from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import rass_mmseg  # noqa: F401  (registers the preprocessor)
from rass_mmseg.models.data_preprocessors import DegradationDataPreProcessor

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
RASS_NORM = dict(mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True)


def make_batch(count: int, height: int = 48, width: int = 56, seed: int = 0,
               folder: str = '/data/ade/images/validation') -> Tuple[List[torch.Tensor], List[SegDataSample]]:
    """uint8 BGR images with smooth content plus labels, as a dataloader would give them."""
    generator = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for index in range(count):
        low = torch.rand(1, 3, height // 8, width // 8, generator=generator) * 255
        image = torch.nn.functional.interpolate(low, size=(height, width), mode='bilinear', align_corners=False)
        inputs.append(image[0].round().to(torch.uint8))
        sample = SegDataSample(metainfo=dict(img_path=f'{folder}/ADE_val_{seed}_{index:04d}.jpg'))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, height, width), generator=generator))
        samples.append(sample)
    return inputs, samples


def run(preprocessor: SegDataPreProcessor, inputs, samples, training: bool):
    return preprocessor(dict(inputs=[image.clone() for image in inputs], data_samples=samples), training=training)


def to_levels(normalised: torch.Tensor) -> torch.Tensor:
    """Undo the RASS normalisation: back to [0, 255]."""
    return normalised * 127.5 + 127.5


def test_degrades_training_batches_but_not_validation_batches_by_default():
    inputs, samples = make_batch(3)
    degrading = DegradationDataPreProcessor(**RASS_NORM, size=(48, 56), train_seed=1)
    plain = SegDataPreProcessor(**RASS_NORM, size=(48, 56))
    expected_train = run(plain, inputs, make_batch(3)[1], training=True)['inputs']
    expected_val = run(plain, inputs, make_batch(3)[1], training=False)['inputs']

    train = run(degrading, inputs, samples, training=True)
    assert train['inputs'].shape == expected_train.shape
    difference = (to_levels(train['inputs']) - to_levels(expected_train)).abs().mean(dim=(1, 2, 3))
    assert (difference > 2.0).all()  # every image is degraded (> 2 levels of mean change)

    val = run(degrading, inputs, make_batch(3)[1], training=False)
    torch.testing.assert_close(val['inputs'], expected_val, atol=1e-6, rtol=0)


def test_labels_untouched_size_kept_and_output_on_8bit_levels():
    inputs, samples = make_batch(2, height=40, width=50)
    _, reference = make_batch(2, height=40, width=50)
    plain = SegDataPreProcessor(**RASS_NORM, size=(48, 64), seg_pad_val=255)
    expected = run(plain, inputs, reference, training=True)
    out = run(DegradationDataPreProcessor(**RASS_NORM, size=(48, 64), train_seed=0), inputs, samples, training=True)
    assert out['inputs'].shape == expected['inputs'].shape == (2, 3, 48, 64)
    for sample, expected_sample in zip(out['data_samples'], expected['data_samples']):
        assert torch.equal(sample.gt_sem_seg.data, expected_sample.gt_sem_seg.data)
    levels = to_levels(out['inputs'])
    torch.testing.assert_close(levels, levels.round(), atol=1e-3, rtol=0)
    assert levels.min() >= -1e-3 and levels.max() <= 255 + 1e-3


def test_clean_image_is_kept_in_the_data_samples():
    inputs, samples = make_batch(2)
    out = run(DegradationDataPreProcessor(**RASS_NORM, size=(48, 64), train_seed=0), inputs, samples, True)
    for image, sample in zip(inputs, out['data_samples']):
        hq = sample.gt_hq_img.data
        assert hq.dtype == torch.float32 and hq.shape == (3, 48, 64)  # after padding
        assert hq.min() >= 0 and hq.max() <= 1
        # RGB (the channel order of inputs after bgr_to_rgb) of the clean image.
        torch.testing.assert_close(hq[:, :48, :56], image.flip(0).float() / 255, atol=1e-6, rtol=0)
        torch.testing.assert_close(hq[:, :, 56:], torch.full((3, 48, 8), 0.5))  # pad_val 0 -> 127.5


def test_always_mode_evaluation_depends_only_on_seed_identity_and_image():
    inputs, samples = make_batch(5)
    preprocessor = DegradationDataPreProcessor(**RASS_NORM, degrade='always', test_seed=3)
    full = run(preprocessor, inputs, samples, training=False)['inputs']
    for order in ([4, 2], [1], [3, 0, 2, 1, 4]):
        # The same images in other batches, other orders and another folder (the identity is the file name).
        _, moved = make_batch(5, folder='/elsewhere')
        part = run(preprocessor, [inputs[i] for i in order], [moved[i] for i in order], training=False)['inputs']
        assert torch.equal(part, full[order])
    other_seed = DegradationDataPreProcessor(**RASS_NORM, degrade='always', test_seed=4)
    assert (run(other_seed, inputs, make_batch(5)[1], training=False)['inputs'] != full).float().mean() > 0.5
    # Independent of the number of intra-op threads too.
    torch.set_num_threads(2)
    assert torch.equal(run(preprocessor, inputs, make_batch(5)[1], training=False)['inputs'], full)


def test_training_draws_are_fresh_per_visit_and_reproducible_from_the_run_seed():
    inputs, samples = make_batch(2)

    def two_visits(preprocessor):
        first = run(preprocessor, inputs, make_batch(2)[1], training=True)['inputs']
        second = run(preprocessor, inputs, make_batch(2)[1], training=True)['inputs']
        return first, second

    torch.manual_seed(123)  # what mmengine's randomness=dict(seed=123) does before building the model
    first, second = two_visits(DegradationDataPreProcessor(**RASS_NORM, size=(48, 56)))
    assert (first != second).float().mean() > 0.5
    torch.manual_seed(123)
    again = two_visits(DegradationDataPreProcessor(**RASS_NORM, size=(48, 56)))
    assert torch.equal(again[0], first) and torch.equal(again[1], second)
    torch.manual_seed(124)
    other_run = two_visits(DegradationDataPreProcessor(**RASS_NORM, size=(48, 56)))
    assert not torch.equal(other_run[0], first)


def test_never_mode_and_per_channel_padding_match_the_parent():
    norm = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True)
    inputs, samples = make_batch(2, height=40, width=50)
    out = run(DegradationDataPreProcessor(**norm, size=(48, 64), degrade='never'), inputs, samples, True)
    expected = run(SegDataPreProcessor(**norm, size=(48, 64)), inputs, make_batch(2, 40, 50)[1], True)
    torch.testing.assert_close(out['inputs'], expected['inputs'], atol=1e-5, rtol=0)


def test_bgr_batches_are_degraded_as_rgb():
    inputs, samples = make_batch(2)
    rgb = run(DegradationDataPreProcessor(bgr_to_rgb=True, degrade='always'), inputs, samples, False)['inputs']
    bgr = run(DegradationDataPreProcessor(degrade='always'), inputs, make_batch(2)[1], False)['inputs']
    assert torch.equal(bgr, rgb.flip(1))


def test_bad_configuration_gives_one_line_errors():
    with pytest.raises(ValueError, match=r"degrade must be one of \['train', 'always', 'never'\], got 'sometimes'$"):
        DegradationDataPreProcessor(degrade='sometimes')
    # the value's name before it said that training batches are degraded too
    with pytest.raises(ValueError, match=r"degrade must be one of \['train', 'always', 'never'\], got 'test'$"):
        DegradationDataPreProcessor(degrade='test')
    with pytest.raises(ValueError, match=r"unknown degradation key\(s\) \['blur_prob'\]"):
        DegradationDataPreProcessor(degradation=dict(blur_prob=0.5))
    with pytest.raises(ValueError, match="'kernel_prob' must be non-negative probabilities that sum to 1"):
        DegradationDataPreProcessor(degradation=dict(kernel_prob=[0.5, 0.5, 0.5, 0.0, 0.0, 0.0]))
    inputs, samples = make_batch(1)
    samples[0].set_metainfo(dict(img_path=None))
    with pytest.raises(ValueError, match=r"metainfo\['img_path'\]"):
        run(DegradationDataPreProcessor(degrade='always'), inputs, samples, training=False)


def test_always_mode_degrades_training_batches_as_train_mode_and_evaluation_batches_too():
    inputs, samples = make_batch(2)
    for training in (True, False):
        by_mode = {
            mode: run(DegradationDataPreProcessor(**RASS_NORM, size=(48, 56), degrade=mode, train_seed=5), inputs,
                      make_batch(2)[1], training)['inputs']
            for mode in ('train', 'always', 'never')
        }
        assert torch.equal(by_mode['train'], by_mode['always']) == training
        assert torch.equal(by_mode['train'], by_mode['never']) != training
        assert not torch.equal(by_mode['always'], by_mode['never'])


def test_config_piece_builds_the_rass_preprocessor():
    config = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'degradation.py'))
    preprocessor = MODELS.build(config.degradation_preprocessor)
    assert isinstance(preprocessor, DegradationDataPreProcessor)
    assert preprocessor.degrade == 'train' and preprocessor.inputs_are_rgb
    assert preprocessor.mean.flatten().tolist() == [127.5] * 3 and preprocessor.std.flatten().tolist() == [127.5] * 3
    assert preprocessor.degradation.to_dict()['resize_range'] == [0.15, 1.5]
    assert preprocessor.degradation.ops == 'libjpeg' and preprocessor.degradation.backend == 'auto'


def test_degraded_evaluation_images_are_kept_for_show_dir():
    inputs, samples = make_batch(2, height=40, width=50)
    for sample in samples:
        sample.set_metainfo(dict(img_shape=(40, 50)))
    preprocessor = DegradationDataPreProcessor(**RASS_NORM, degrade='always', test_seed=3, size_divisor=32)
    out = run(preprocessor, inputs, samples, training=False)
    for index, sample in enumerate(out['data_samples']):
        lq = sample.lq_img.data
        assert lq.dtype == torch.uint8 and lq.shape == (3, 40, 50)  # padding cropped
        torch.testing.assert_close(lq.float(), to_levels(out['inputs'][index, :, :40, :50]), atol=1e-3, rtol=0)
    train_samples = make_batch(2)[1]
    run(DegradationDataPreProcessor(**RASS_NORM, size=(48, 56), train_seed=0), inputs, train_samples, training=True)
    assert all('lq_img' not in s for s in train_samples)  # training batches carry no extra copy


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_degradation_inside_autocast_is_the_float32_degradation(dtype):
    """mmengine's AmpOptimWrapper runs the data preprocessor inside autocast (seen failing on a GPU with mixed
    bf16/float32 ragged updates): the degradation must ignore autocast and give the float32 bits."""
    inputs, _ = make_batch(4)
    expected = run(DegradationDataPreProcessor(**RASS_NORM, size=(48, 56), train_seed=3), inputs,
                   make_batch(4)[1], training=True)['inputs']
    with torch.autocast('cpu', dtype=dtype):
        under_amp = run(DegradationDataPreProcessor(**RASS_NORM, size=(48, 56), train_seed=3), inputs,
                        make_batch(4)[1], training=True)['inputs']
    assert under_amp.dtype == torch.float32
    assert torch.equal(under_amp, expected)
