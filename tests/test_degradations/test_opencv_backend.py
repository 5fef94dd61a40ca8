"""The OpenCV (CPU) backend against the torch backend: same draws, same images within stated tolerances.

Tolerances (images in [0, 1]): blur and resize within 1e-5 of the torch operations (float rounding; the brief's
bound is 1/255); noise bit-identical; JPEG is libjpeg, within 40 dB PSNR of the torch codec; the whole pipeline
gives the same PSNR to the clean image on average (within 0.1 dB) and images ~40 dB apart.
"""
import math
from typing import List, Tuple

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from rass_mmseg.degradations import GeneratorRandomSource, KeyedRandomSource, SecondOrderDegradation
from rass_mmseg.degradations.blur import blur_ragged
from rass_mmseg.degradations.blur_kernels import (
    KERNEL_TYPES,
    blur_kernels_from_draws,
    draw_blur_kernels,
    draw_sinc_kernels,
)
from rass_mmseg.degradations.jpeg import jpeg_ragged
from rass_mmseg.degradations.noise import add_random_noise
from rass_mmseg.degradations.opencv_backend import ImageList, OpenCVBackend
from rass_mmseg.degradations.opencv_ops import blur_image, blur_kernels_numpy, jpeg_image, resize_image
from rass_mmseg.degradations.resize import resize_ragged
from rass_mmseg.degradations.torch_backend import TorchBackend
from tests.test_degradations.helpers import keyed

PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'immunohistochemistry', 'hubble_deep_field', 'retina', 'brick',
          'camera', 'grass', 'gravel', 'moon')


def photos(size: Tuple[int, int], names=PHOTOS) -> torch.Tensor:
    """scikit-image's photos as ``(N, 3, h, w)`` RGB in [0, 1] on 8-bit levels."""
    images = []
    for name in names:
        image = torch.from_numpy(np.ascontiguousarray(getattr(data, name)())).float()
        image = image[..., None].expand(*image.shape, 3) if image.ndim == 2 else image[..., :3]
        images.append(F.interpolate(image.permute(2, 0, 1)[None], size=size, mode='area')[0].round() / 255)
    return torch.stack(images)


def hwc(image: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(image.permute(1, 2, 0).numpy())


def chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)


def psnr(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [0, 1]."""
    return 10 * torch.log10(1 / ((first - second)**2).mean(dim=(-3, -2, -1)).clamp(min=1e-12))


def all_kernel_draws(count: int):
    """Draws of every kernel family and size (stage-1 settings) and of final sinc kernels."""
    source = keyed(count)
    mixed = draw_blur_kernels(source, 'k', kernel_sizes=tuple(range(7, 22, 2)), kernel_types=KERNEL_TYPES,
                              kernel_probs=(0.2, 0.2, 0.15, 0.15, 0.15, 0.15), sinc_prob=0.2, sigma_range=(0.2, 3.0),
                              betag_range=(0.5, 4.0), betap_range=(1.0, 2.0))
    return mixed, draw_sinc_kernels(source, 's', kernel_sizes=tuple(range(7, 22, 2)))


def test_auto_takes_opencv_for_cpu_tensors_and_torch_elsewhere():
    assert isinstance(SecondOrderDegradation().backend_for(torch.device('cpu')), OpenCVBackend)
    assert isinstance(SecondOrderDegradation().backend_for(torch.device('cuda')), TorchBackend)
    assert isinstance(SecondOrderDegradation(backend='torch').backend_for(torch.device('cpu')), TorchBackend)
    with pytest.raises(ValueError, match="backend 'opencv' runs on CPU tensors") as error:
        SecondOrderDegradation(backend='opencv').backend_for(torch.device('cuda'))
    assert '\n' not in str(error.value)


def test_numpy_kernels_are_the_torch_kernels():
    for draws in all_kernel_draws(300):
        torch_kernels = blur_kernels_from_draws(draws).double()
        numpy_kernels = torch.from_numpy(blur_kernels_numpy(draws))
        torch.testing.assert_close(numpy_kernels, torch_kernels, atol=1e-6, rtol=0)


@pytest.mark.parametrize('size', [(48, 40), (5, 4), (1, 1), (13, 2)])
def test_blur_matches_the_torch_blur_for_every_kernel_family(size):
    image = photos(size, ('astronaut', ))[0]
    for draws in all_kernel_draws(120):
        count = draws.sizes.numel()
        expected = blur_ragged(image.expand(count, -1, -1, -1).contiguous(), torch.tensor([size] * count),
                               blur_kernels_from_draws(draws))
        kernels = blur_kernels_numpy(draws)
        for index in range(count):
            blurred = chw(blur_image(hwc(image), kernels[index]))
            assert (blurred - expected[index]).abs().max() < 1e-5  # float rounding (brief: 1/255)


def test_an_isotropic_gaussian_is_one_separable_pass_and_still_exact():
    axis = torch.arange(21, dtype=torch.float64) - 10
    gaussian = torch.exp(-0.5 * (axis[:, None]**2 + axis[None, :]**2) / 2.5**2)
    gaussian /= gaussian.sum()
    image = photos((64, 48), ('coffee', ))[0]
    expected = blur_ragged(image[None], torch.tensor([[64, 48]]), gaussian[None].float())[0]
    blurred = chw(blur_image(hwc(image), gaussian.numpy()))
    assert (blurred - expected).abs().max() < 1e-5
    # and it is separable: its SVD has one term above the tolerance
    assert np.linalg.svd(gaussian.numpy(), compute_uv=False)[1] < 1e-12


@pytest.mark.parametrize('mode_index, mode', [(0, 'area'), (1, 'bilinear'), (2, 'bicubic')])
def test_resize_matches_the_torch_resize(mode_index, mode):
    image = photos((40, 50), ('chelsea', ))[0]
    for height, width in ((17, 61), (52, 23), (40, 50), (1, 7), (6, 1), (80, 100), (13, 13)):
        expected = resize_ragged(image[None], torch.tensor([[40, 50]]), torch.tensor([[height, width]]),
                                 torch.tensor([mode_index]), (height, width))[0]
        resized = chw(resize_image(hwc(image), height, width, mode))
        assert resized.shape == (3, height, width)
        assert (resized - expected).abs().max() < 1e-5, (height, width)
        reference = F.interpolate(image[None], size=(height, width), mode=mode,
                                  **({} if mode == 'area' else dict(align_corners=False)))[0]
        assert (resized - reference).abs().max() < 1e-5  # and F.interpolate itself


@pytest.mark.parametrize('mode_index, mode', [(0, 'area'), (1, 'bilinear'), (2, 'bicubic')])
def test_resize_of_tiny_images_matches_the_torch_resize(mode_index, mode):
    image = photos((2, 3), ('coffee', ))[0]
    for (in_height, in_width), (height, width) in (((1, 1), (3, 4)), ((2, 3), (5, 1)), ((1, 3), (4, 7))):
        source = image[:, :in_height, :in_width]
        expected = resize_ragged(source[None].contiguous(), torch.tensor([[in_height, in_width]]),
                                 torch.tensor([[height, width]]), torch.tensor([mode_index]), (height, width))[0]
        resized = chw(resize_image(hwc(source), height, width, mode))
        assert (resized - expected).abs().max() < 1e-5, ((in_height, in_width), (height, width))


@pytest.mark.parametrize('quality', [30.0, 57.4, 95.0])
def test_opencv_jpeg_is_libjpeg_and_within_40_db_of_the_torch_codec(quality):
    images = photos((128, 96), ('astronaut', 'coffee', 'chelsea', 'rocket'))
    for image in images:
        coded = chw(jpeg_image(hwc(image), round(quality)))
        expected = jpeg_ragged(image[None], torch.tensor([[128, 96]]), torch.tensor([quality]))[0]
        assert psnr(coded, expected) > 40.0
        # The codec itself: OpenCV's encoder on the 8-bit image at the rounded quality, decoded.
        levels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        _, encoded = cv2.imencode('.jpg', levels[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, round(quality)])
        reference = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]
        assert np.array_equal(np.round(hwc(coded) * 255).astype(np.uint8), reference)


def test_backend_jpeg_rounds_the_drawn_quality():
    image = photos((32, 32), ('rocket', ))[0]
    batch = OpenCVBackend().load(image.expand(2, -1, -1, -1).contiguous())
    coded = OpenCVBackend().jpeg(batch, torch.tensor([[32, 32]] * 2), torch.tensor([57.4, 56.6]))
    assert np.array_equal(coded.images[0], coded.images[1])  # both quality 57
    assert np.array_equal(coded.images[0], jpeg_image(hwc(image), 57))


def ragged(count: int) -> Tuple[torch.Tensor, torch.Tensor, List[np.ndarray]]:
    """A ragged canvas (garbage outside each image, values a little outside [0, 1]) and its images."""
    torch.manual_seed(0)
    canvas = torch.rand(count, 3, 40, 50) * 1.2 - 0.1
    sizes = torch.tensor([[40, 50], [33, 50], [40, 21], [7, 9], [40, 50]])[:count]
    images = [hwc(canvas[index, :, :height, :width]) for index, (height, width) in enumerate(sizes.tolist())]
    for index, (height, width) in enumerate(sizes.tolist()):
        canvas[index, :, height:], canvas[index, :, :, width:] = 7.0, 7.0
    return canvas, sizes, images


@pytest.mark.parametrize('source', ['keyed', 'generator'])
@pytest.mark.parametrize('gaussian_prob, gray_prob', [(1.0, 0.0), (1.0, 1.0), (0.0, 0.0), (0.0, 1.0), (0.5, 0.5)])
def test_noise_is_bit_identical_to_the_torch_backend(source, gaussian_prob, gray_prob):
    canvas, sizes, images = ragged(5)

    def draws():
        if source == 'keyed':
            return KeyedRandomSource.from_identities([f'{index}.png' for index in range(5)], 3)
        return GeneratorRandomSource(torch.Generator().manual_seed(4), 5, torch.device('cpu'))

    options = dict(gaussian_noise_prob=gaussian_prob, noise_range=(1.0, 30.0), poisson_scale_range=(0.05, 3.0),
                   gray_noise_prob=gray_prob)
    expected = add_random_noise(canvas, draws(), 'n', backend=TorchBackend(), **options)
    noisy = add_random_noise(ImageList(images, (40, 50)), draws(), 'n', backend=OpenCVBackend(), **options)
    for index, (height, width) in enumerate(sizes.tolist()):
        assert torch.equal(chw(noisy.images[index]), expected[index, :, :height, :width])
        assert not torch.equal(chw(noisy.images[index]), chw(images[index]).clamp(0, 1))  # noise was added


class RecordingSource(GeneratorRandomSource):
    """A generator source that logs every draw (stream, batch size, shape) into a shared list."""

    def __init__(self, generator: torch.Generator, batch_size: int, log: list) -> None:
        super().__init__(generator, batch_size, torch.device('cpu'))
        self.log = log

    def uniform(self, stream, shape=()):
        self.log.append(('uniform', stream, self.batch_size, tuple(shape)))
        return super().uniform(stream, shape)

    def normal(self, stream, shape=()):
        self.log.append(('normal', stream, self.batch_size, tuple(shape)))
        return super().normal(stream, shape)

    def subset(self, index):
        return RecordingSource(self.generator, int(index.numel()), self.log)


def test_both_backends_make_the_same_draws_from_a_generator():
    images = photos((48, 40))[:6]
    logs, states = {}, {}
    for backend in ('torch', 'opencv'):
        log, generator = [], torch.Generator().manual_seed(11)
        SecondOrderDegradation(backend=backend)(images, RecordingSource(generator, 6, log))
        logs[backend], states[backend] = log, generator.get_state()
    assert len(logs['torch']) > 50 and any(shape for *_, shape in logs['torch'])  # fields were drawn
    assert logs['opencv'] == logs['torch']
    assert torch.equal(states['opencv'], states['torch'])


@pytest.mark.parametrize('source', ['keyed', 'generator'])
def test_whole_pipeline_statistics_match_the_torch_backend(source):
    clean = photos((64, 64)).repeat(4, 1, 1, 1)
    count = clean.shape[0]

    def draws():
        if source == 'keyed':
            return KeyedRandomSource.from_identities([f'{index}.png' for index in range(count)], 0)
        return GeneratorRandomSource(torch.Generator().manual_seed(0), count, torch.device('cpu'))

    on_torch = SecondOrderDegradation(backend='torch')(clean, draws())
    on_opencv = SecondOrderDegradation(backend='opencv')(clean, draws())
    between = psnr(on_torch, on_opencv)
    assert between.median() > 35.0 and between.min() > 28.0  # the same degradation, up to codec differences
    to_clean_torch, to_clean_opencv = psnr(on_torch, clean), psnr(on_opencv, clean)
    assert abs(float((to_clean_torch - to_clean_opencv).mean())) < 0.1  # dB: equally strong
    assert float(to_clean_torch.mean()) < 30.0  # and both really degrade
    error_torch, error_opencv = (on_torch - clean).abs().mean(), (on_opencv - clean).abs().mean()
    assert math.isclose(float(error_torch), float(error_opencv), rel_tol=0.03)


def test_opencv_keyed_output_does_not_depend_on_threads():
    images = photos((48, 40))[:4]
    engine = SecondOrderDegradation(backend='opencv')
    names = [f'{index}.jpg' for index in range(4)]
    threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    try:
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        single = engine(images, KeyedRandomSource.from_identities(names, 5))
        torch.set_num_threads(2)
        cv2.setNumThreads(2)
        double = engine(images, KeyedRandomSource.from_identities(names, 5))
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv2_threads)
    assert torch.equal(single, double)


def test_8bit_rounding_is_torch_round_half_to_even():
    values = [np.float32(k + 0.5) / np.float32(255) for k in range(255)]
    ties = [value for value in values if value * np.float32(255) == np.float32(int(value * 255) + 0.5)]
    assert len(ties) > 100  # values whose 255-multiple is a tie: half of them round down (to even)
    rng = np.random.default_rng(0)
    values = np.concatenate([np.array(ties, dtype=np.float32), rng.uniform(-0.2, 1.2, 3000).astype(np.float32)])
    image = np.ascontiguousarray(np.resize(values, (1, values.size // 3 * 3)).reshape(1, -1, 3))
    quantized = OpenCVBackend().unload(ImageList([image], image.shape[:2]), torch.zeros(()))
    expected = torch.from_numpy(image).permute(2, 0, 1).clamp(0, 1).mul(255).round().div(255)
    assert torch.equal(quantized[0], expected)
