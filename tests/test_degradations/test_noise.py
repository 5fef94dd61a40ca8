"""Gaussian and Poisson noise: levels, per-sample draws, gray noise, Poisson moments."""
import torch

from rass_mmseg.degradations.noise import add_gaussian_noise, add_poisson_noise, add_random_noise, poisson_from_uniform
from rass_mmseg.degradations.torch_backend import TorchBackend
from tests.test_degradations.helpers import keyed


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
    noisy = add_random_noise(images, keyed(16), 'n', backend=TorchBackend(), gaussian_noise_prob=1.0,
                             noise_range=(5.0, 15.0), poisson_scale_range=(1.0, 1.0), gray_noise_prob=0.0)
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
