"""Each degradation operation on known inputs, and the whole engine's output format and determinism."""
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from rass_mmseg.models.data_preprocessors.degradations import (
    GeneratorRandomSource, KeyedRandomSource, SecondOrderDegradation, add_gaussian_noise, add_poisson_noise,
    add_random_noise, anisotropic_kernels, blur_ragged, circular_lowpass_kernels, jpeg_ragged, poisson_from_uniform,
    resize_ragged, sample_blur_kernels)

CPU = torch.device('cpu')


def keyed(count: int, seed: int = 0) -> KeyedRandomSource:
    return KeyedRandomSource.from_identities([f'image_{index}.png' for index in range(count)], seed)


def photo(size: int = 64) -> torch.Tensor:
    """A real RGB photo (scikit-image's astronaut), ``(1, 3, size, size)`` in [0, 1], 8-bit levels."""
    image = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float()
    return F.interpolate(image, size=(size, size), mode='area').round() / 255.0


def kernel_moments(kernels: torch.Tensor) -> torch.Tensor:
    """Covariance matrices ``(B, 2, 2)`` of kernels seen as distributions over (x, y)."""
    axis = torch.arange(kernels.shape[-1], dtype=torch.float64) - kernels.shape[-1] // 2
    y, x = torch.meshgrid(axis, axis, indexing='ij')
    k = kernels.double()
    mean_x, mean_y = (k * x).sum((1, 2)), (k * y).sum((1, 2))
    var_x = (k * x * x).sum((1, 2)) - mean_x**2
    var_y = (k * y * y).sum((1, 2)) - mean_y**2
    cov = (k * x * y).sum((1, 2)) - mean_x * mean_y
    return torch.stack((torch.stack((var_x, cov), -1), torch.stack((cov, var_y), -1)), -2)


# ---------------------------------------------------------------- blur kernels
def test_sampled_kernels_sum_to_one_and_respect_their_size():
    kernels = sample_blur_kernels(keyed(200), 'k', kernel_sizes=(7, 9, 21), kernel_types=('iso', 'aniso'),
                                  kernel_probs=(0.5, 0.5), sinc_prob=0.3, sigma_range=(3.0, 3.0),
                                  betag_range=(0.5, 4.0), betap_range=(1.0, 2.0))
    assert kernels.shape == (200, 21, 21)
    torch.testing.assert_close(kernels.sum((1, 2)), torch.ones(200), atol=1e-5, rtol=0)
    # Each kernel is zero outside a centred 7x7, 9x9 or 21x21 window, and all three sizes occur.
    support = (kernels.abs() > 0).any(dim=1).sum(dim=1)
    assert set(support.tolist()) == {7, 9, 21}


def test_gaussian_kernel_has_the_requested_covariance():
    sigma_x, sigma_y, theta = torch.tensor([1.5, 2.0]), torch.tensor([1.5, 1.0]), torch.tensor([0.0, math.pi / 4])
    kernels = anisotropic_kernels(sigma_x, sigma_y, theta, torch.ones(2), torch.zeros(2, dtype=torch.bool),
                                  torch.tensor([21, 21]), 21)
    covariance = kernel_moments(kernels)
    torch.testing.assert_close(covariance[0], torch.tensor([[2.25, 0.0], [0.0, 2.25]], dtype=torch.float64),
                               atol=2e-3, rtol=0)
    # Rotated by 45 degrees: R diag(4, 1) R^T = [[2.5, 1.5], [1.5, 2.5]].
    torch.testing.assert_close(covariance[1], torch.tensor([[2.5, 1.5], [1.5, 2.5]], dtype=torch.float64),
                               atol=2e-2, rtol=0)


def test_sampled_iso_sigmas_cover_the_requested_range():
    kernels = sample_blur_kernels(keyed(300), 'k', kernel_sizes=(21, ), kernel_types=('iso', ),
                                  kernel_probs=(1.0, ), sinc_prob=0.0, sigma_range=(1.0, 2.0),
                                  betag_range=(0.5, 4.0), betap_range=(1.0, 2.0))
    variance = kernel_moments(kernels)[:, 0, 0]
    sigma = variance.sqrt()
    assert sigma.min() >= 0.99 and sigma.max() <= 2.01
    assert sigma.min() < 1.1 and sigma.max() > 1.9  # the whole range is used


def test_plateau_and_generalized_kernels_differ_from_gaussian():
    ones = torch.ones(3)
    beta = torch.tensor([1.0, 3.0, 1.5])
    plateau = torch.tensor([False, False, True])
    kernels = anisotropic_kernels(ones * 2, ones * 2, ones * 0, beta, plateau, torch.tensor([21, 21, 21]), 21)
    torch.testing.assert_close(kernels.sum((1, 2)), torch.ones(3), atol=1e-5, rtol=0)
    gaussian, flat_top, heavy_tail = kernel_moments(kernels)[:, 0, 0].tolist()
    assert flat_top < gaussian < heavy_tail  # beta 3 is flatter and narrower; the plateau has heavy tails


def test_sinc_kernel_is_symmetric_and_normalised():
    kernels = circular_lowpass_kernels(torch.tensor([math.pi / 3, math.pi / 2]), torch.tensor([21, 13]), 21)
    torch.testing.assert_close(kernels.sum((1, 2)), torch.ones(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(kernels, kernels.transpose(1, 2))
    torch.testing.assert_close(kernels, kernels.flip(1).flip(2))
    assert (kernels.flatten(1).argmax(1) == 10 * 21 + 10).all()
    assert (kernels < 0).any()  # ringing lobes


# ---------------------------------------------------------------- noise
def test_gaussian_noise_std_matches_the_request_and_gray_noise_is_shared():
    images = torch.full((3, 3, 128, 128), 0.5)
    sigma = torch.tensor([5.0, 20.0, 12.0]) / 255
    gray = torch.tensor([False, False, True])
    noise = add_gaussian_noise(images, keyed(3), 'n', sigma, gray) - images
    torch.testing.assert_close(noise.std(dim=(1, 2, 3)), sigma, rtol=0.03, atol=0)
    assert torch.equal(noise[2, 0], noise[2, 1]) and torch.equal(noise[2, 0], noise[2, 2])
    assert not torch.equal(noise[0, 0], noise[0, 1])


def test_random_noise_std_stays_within_the_requested_range():
    images = torch.full((16, 3, 96, 96), 0.5)
    noisy = add_random_noise(images, keyed(16), 'n', gaussian_noise_prob=1.0, noise_range=(5.0, 15.0),
                             poisson_scale_range=(1.0, 1.0), gray_noise_prob=0.0)
    std = (noisy - images).std(dim=(1, 2, 3)) * 255
    assert std.min() > 5.0 * 0.95 and std.max() < 15.0 * 1.05
    assert std.max() - std.min() > 3.0  # per-sample levels, not one per batch
    assert noisy.min() >= 0 and noisy.max() <= 1


def test_poisson_counts_have_poisson_mean_and_variance():
    for level in (2.0, 40.0, 200.0):
        rate = level * 256 / 255
        uniform = keyed(1).uniform('u', (200_000, ))
        counts = poisson_from_uniform(torch.full_like(uniform, level), uniform).double()
        assert abs(counts.mean().item() - rate) < 0.02 * rate
        assert abs(counts.var().item() - rate) < 0.03 * rate


def test_poisson_noise_scales_with_intensity_and_scale():
    images = torch.tensor([0.1, 0.5, 0.5]).view(3, 1, 1, 1).expand(3, 3, 128, 128).contiguous()
    scale = torch.tensor([1.0, 1.0, 2.0])
    noise = add_poisson_noise(images, keyed(3), 'p', scale, torch.zeros(3, dtype=torch.bool)) - images
    expected = scale * torch.sqrt(torch.tensor([round(0.1 * 255), round(0.5 * 255), round(0.5 * 255)]) / 255 / 256)
    torch.testing.assert_close(noise.std(dim=(1, 2, 3)), expected, rtol=0.04, atol=0)


# ---------------------------------------------------------------- resize and blur on ragged batches
@pytest.mark.parametrize('code, mode', [(0, 'area'), (1, 'bilinear'), (2, 'bicubic')])
def test_resize_matches_interpolate_for_each_image_of_a_ragged_batch(code, mode):
    torch.manual_seed(0)
    images = torch.rand(2, 3, 40, 50)
    canvas = torch.rand(2, 3, 64, 64)  # garbage around the images must not leak in
    canvas[:, :, :40, :50] = images
    sizes = torch.tensor([[40, 50], [40, 50]])
    targets = torch.tensor([[17, 61], [52, 23]])
    resized = resize_ragged(canvas, sizes, targets, torch.tensor([code, code]), (60, 70))
    options = {} if mode == 'area' else dict(align_corners=False)
    for index, (height, width) in enumerate(targets.tolist()):
        expected = F.interpolate(images[index:index + 1], size=(height, width), mode=mode, **options)[0]
        torch.testing.assert_close(resized[index, :, :height, :width], expected, atol=1e-5, rtol=0)


def test_blur_reflects_at_each_image_border():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 30, 40)
    canvas = torch.zeros(2, 3, 50, 50)
    canvas[:, :, :30, :40] = images
    kernels = torch.rand(2, 21, 21)
    kernels /= kernels.sum((1, 2), keepdim=True)
    blurred = blur_ragged(canvas, torch.tensor([[30, 40], [30, 40]]), kernels)
    padded = F.pad(images, (10, 10, 10, 10), mode='reflect')
    expected = torch.stack([F.conv2d(padded[i:i + 1], kernels[i].expand(3, 1, 21, 21), groups=3)[0] for i in range(2)])
    torch.testing.assert_close(blurred[:, :, :30, :40], expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- JPEG
def test_jpeg_changes_the_image_more_at_lower_quality_and_matches_libjpeg():
    image = photo(128)
    batch = image.expand(3, -1, -1, -1)
    sizes = torch.tensor([[128, 128]] * 3)
    coded = jpeg_ragged(batch, sizes, torch.tensor([20.0, 50.0, 90.0]))
    errors = (coded - batch).abs().mean(dim=(1, 2, 3))
    assert errors[2] > 0.5 / 255  # the output differs from the input
    assert errors[0] > errors[1] > errors[2]
    # Close to a real encoder: OpenCV's libjpeg at quality 50.
    rgb8 = (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    _, encoded = cv2.imencode('.jpg', rgb8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 50])
    reference = torch.from_numpy(cv2.imdecode(encoded, 1)[..., ::-1].copy()).permute(2, 0, 1).float() / 255
    assert (coded[1] - reference).abs().mean() < 1.5 / 255
    # Each sample is coded with its own quality: the batch equals separate calls.
    torch.testing.assert_close(coded[0:1], jpeg_ragged(image, sizes[:1], torch.tensor([20.0])), atol=1e-6, rtol=0)


# ---------------------------------------------------------------- the whole engine
def test_engine_output_is_8bit_in_range_same_size_and_degraded():
    images = photo(64).expand(4, -1, -1, -1).contiguous()
    degraded = SecondOrderDegradation()(images, keyed(4))
    assert degraded.shape == images.shape and degraded.dtype == torch.float32
    assert degraded.min() >= 0 and degraded.max() <= 1
    assert torch.equal(degraded * 255, (degraded * 255).round())
    assert ((degraded - images).abs().mean(dim=(1, 2, 3)) > 2 / 255).all()


def test_keyed_engine_is_independent_of_batch_size_and_order():
    torch.manual_seed(0)
    images = (torch.rand(6, 3, 48, 40) * 255).round() / 255
    names = [f'img_{index}.jpg' for index in range(6)]
    engine = SecondOrderDegradation()
    full = engine(images, KeyedRandomSource.from_identities(names, 7))
    for order in ([5, 1, 3], [2], [4, 0, 1, 2, 3, 5]):
        part = engine(images[order], KeyedRandomSource.from_identities([names[i] for i in order], 7))
        assert torch.equal(part, full[order])
    other_seed = engine(images, KeyedRandomSource.from_identities(names, 8))
    assert (other_seed != full).float().mean() > 0.5


def test_generator_engine_is_reproducible_from_its_seed_and_fresh_per_call():
    images = photo(48).expand(3, -1, -1, -1).contiguous()
    engine = SecondOrderDegradation()
    first = engine(images, GeneratorRandomSource(torch.Generator().manual_seed(3), 3, CPU))
    again = engine(images, GeneratorRandomSource(torch.Generator().manual_seed(3), 3, CPU))
    assert torch.equal(first, again)
    generator = torch.Generator().manual_seed(3)
    engine(images, GeneratorRandomSource(generator, 3, CPU))
    second_visit = engine(images, GeneratorRandomSource(generator, 3, CPU))
    assert (second_visit != first).float().mean() > 0.5


@pytest.mark.parametrize('key, value, message', [
    ('kernel_list', ['iso', 'box'], "'kernel_list' has unknown kernel types ['box']"),
    ('kernel_prob', [0.5, 0.25, 0.1, 0.05, 0.05, 0.03], "'kernel_prob' must be non-negative probabilities that sum"),
    ('resize_prob', [0.5, 0.5], "'resize_prob' needs 3 probabilities (for up, down, keep)"),
    ('resize_range', [1.2, 1.5], "'resize_range' must contain 1.0"),
    ('jpeg_range', [30, 120], "'jpeg_range' must lie within [1.0, 100.0]"),
    ('second_blur_prob', 1.5, "'second_blur_prob' must be a probability in [0, 1]"),
    ('kernel_range', [8, 21], "'kernel_range' must be [smallest, largest] odd kernel sizes"),
])
def test_bad_parameters_are_named_in_a_one_line_error(key, value, message):
    with pytest.raises(ValueError) as error:
        SecondOrderDegradation(**{key: value})
    assert message in str(error.value) and '\n' not in str(error.value)
