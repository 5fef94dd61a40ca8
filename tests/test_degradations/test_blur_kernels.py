"""Random blur kernels: normalisation, support, covariance, families, sinc."""
import math

import torch

from rass_mmseg.degradations.blur_kernels import anisotropic_kernels, circular_lowpass_kernels, sample_blur_kernels
from tests.test_degradations.helpers import keyed


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
