"""Additive Gaussian and Poisson noise with a noise level, a noise type and a gray/colour choice per sample.

Follows Real-ESRGAN's ``random_add_gaussian_noise_pt`` / ``random_add_poisson_noise_pt`` (clipped to [0, 1],
not rounded), with the gray/colour choice and the noise type drawn per sample instead of per batch. Poisson noise
comes in two rules: 256 levels for every image (:func:`add_poisson_noise`) or BasicSR's levels from each image's
count of distinct values (:func:`add_distinct_poisson_noise`, the public RASS code's).
"""
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .color import mix_channels, rgb_to_luma
from .degradation_backend import DegradationBackend
from .random_source import RandomSource

__all__ = [
    'POISSON_LEVELS', 'QUANTILE_BINS', 'TORCHVISION_LUMA_WEIGHTS', 'poisson_quantile_table', 'poisson_from_uniform',
    'add_gaussian_noise', 'add_poisson_noise', 'distinct_level_counts', 'add_distinct_poisson_noise', 'draw_noise',
    'add_random_noise'
]

#: Real-ESRGAN scales the 8-bit image by 2**ceil(log2(number of distinct levels)) before Poisson sampling: 256 for
#: any image with more than 128 distinct 8-bit levels. add_poisson_noise (ops='libjpeg') uses 256 always (no
#: per-image histogram); add_distinct_poisson_noise (ops='basicsr') counts the levels of each image.
POISSON_LEVELS = 256
#: Poisson counts come from a quantile table: one row per 8-bit level, one column per 1/4096 of probability.
QUANTILE_BINS = 4096
_MAX_COUNT = 640
_quantile_tables: Dict[Tuple[torch.device, Optional[int]], torch.Tensor] = {}
#: torchvision's ``rgb_to_grayscale`` weights, which BasicSR's Poisson noise uses for its gray noise.
TORCHVISION_LUMA_WEIGHTS = (0.2989, 0.587, 0.114)


def poisson_quantile_table(device: torch.device, levels: Optional[int] = None) -> torch.Tensor:
    """Quantiles of Poisson counts for every 8-bit level ``k`` at the centres of 4096 equal probability bins.

    Args:
        device: Device of the table.
        levels: ``None`` for the rate ``256 * k / 255`` (computed in float64); else BasicSR's rate for ``levels``
            quantisation levels, ``float32(float32(k / 255) * levels)``.

    Returns:
        float32 ``(256 * 4096,)``: entry ``k * 4096 + m`` is the smallest count whose CDF reaches
        ``(m + 0.5) / 4096``.
    """
    device = torch.device(device)
    key = (device, levels)
    if key not in _quantile_tables:
        if levels is None:
            rate = torch.arange(256, dtype=torch.float64).view(-1, 1) * (POISSON_LEVELS / 255.0)
        else:
            rate = ((torch.arange(256, dtype=torch.float32) / 255.0) * float(levels)).double().view(-1, 1)
        counts = torch.arange(_MAX_COUNT, dtype=torch.float64).view(1, -1)
        log_pmf = counts * torch.log(rate.clamp(min=1e-300)) - rate - torch.lgamma(counts + 1)
        log_pmf[0] = torch.where(counts[0] == 0, 0.0, -torch.inf)
        cdf = torch.exp(log_pmf).cumsum(dim=1)
        targets = ((torch.arange(QUANTILE_BINS, dtype=torch.float64) + 0.5) / QUANTILE_BINS).expand(256, -1)
        table = torch.searchsorted(cdf.contiguous(), targets.contiguous()).clamp(max=_MAX_COUNT - 1)
        _quantile_tables[key] = table.to(device=device, dtype=torch.float32).reshape(-1)
    return _quantile_tables[key]


def poisson_from_uniform(levels: torch.Tensor, uniform: torch.Tensor,
                         table: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Poisson counts of rate ``256 * level / 255`` from one uniform number per element (inverse-CDF lookup).

    ``torch.poisson`` would need one generator for the whole tensor, which ties an image's noise to its position
    in the batch. Here each count is a function of its own level and uniform, read from
    :func:`poisson_quantile_table`: the distribution is exact up to probabilities rounded to 1/4096.

    Args:
        levels: 8-bit levels (integers 0..255 stored as float), any shape.
        uniform: Uniform numbers in (0, 1), same shape.
        table: Quantile table of other rates (:func:`poisson_quantile_table` with ``levels``), else ``None``.

    Returns:
        float32 counts, same shape.
    """
    table = poisson_quantile_table(levels.device) if table is None else table
    index = levels.long().mul_(QUANTILE_BINS).add_((uniform * QUANTILE_BINS).long().clamp_(max=QUANTILE_BINS - 1))
    return table[index]


def _gray_source(images: torch.Tensor, gray: torch.Tensor,
                 luma: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The images, with their ``luma`` (``(B, 1, H, W)``) on every channel where ``gray`` (``(B,)`` bool)."""
    if not bool(gray.any()):
        return images
    return torch.where(gray.view(-1, 1, 1, 1), luma(images).expand_as(images), images)


def _gray_where(gray: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Noise of the first channel on every channel where ``gray`` (B,) is True."""
    if not bool(gray.any()):
        return noise
    return torch.where(gray.view(-1, 1, 1, 1), noise[:, :1].expand_as(noise), noise)


def add_gaussian_noise(images: torch.Tensor, random: RandomSource, stream: str, sigma: torch.Tensor,
                       gray: torch.Tensor) -> torch.Tensor:
    """``images + sigma * N(0, 1)``, one noise field per sample, the same on all channels where ``gray``.

    Args:
        images: ``(B, C, H, W)`` in [0, 1].
        random: Source of the noise fields.
        stream: Stream name of the field.
        sigma: ``(B,)`` standard deviation in [0, 1] units.
        gray: ``(B,)`` bool.

    Returns:
        ``(B, C, H, W)``, not clipped.
    """
    noise = _gray_where(gray, random.normal(stream, images.shape[1:]))
    return images + noise * sigma.view(-1, 1, 1, 1)


def add_poisson_noise(images: torch.Tensor, random: RandomSource, stream: str, scale: torch.Tensor,
                      gray: torch.Tensor) -> torch.Tensor:
    """Add ``scale * (Poisson(256 * x) / 256 - x)`` with ``x`` the 8-bit-rounded image (its luma where ``gray``).

    Args:
        images: ``(B, 3, H, W)`` in [0, 1].
        random: Source of the uniform fields.
        stream: Stream name of the field.
        scale: ``(B,)`` noise scale.
        gray: ``(B,)`` bool, noise computed on the luma and added to all channels.

    Returns:
        ``(B, 3, H, W)``, not clipped.
    """
    source = _gray_source(images, gray, rgb_to_luma)
    levels = source.clamp(0.0, 1.0).mul_(255.0).round_()
    counts = poisson_from_uniform(levels, random.uniform(stream, images.shape[1:]))
    noise = _gray_where(gray, counts.mul_(1.0 / POISSON_LEVELS).sub_(levels.mul_(1.0 / 255.0)))
    return images + noise * scale.view(-1, 1, 1, 1)


def distinct_level_counts(levels: torch.Tensor, sizes: Optional[torch.Tensor]) -> List[int]:
    """BasicSR's Poisson levels of each image: ``2 ** ceil(log2(number of distinct values))`` of its 8-bit levels
    (all its channels), within its own region of a ragged batch.

    Args:
        levels: ``(B, C, H, W)`` 8-bit levels.
        sizes: ``(B, 2)`` image sizes, ``None`` when every image fills the canvas.

    Returns:
        One power of two per image.
    """
    counts = []
    for index in range(levels.shape[0]):
        height, width = levels.shape[-2:] if sizes is None else sizes[index].tolist()
        distinct = int(torch.unique(levels[index, :, :height, :width]).numel())
        counts.append(1 << (distinct - 1).bit_length())
    return counts


def add_distinct_poisson_noise(images: torch.Tensor, random: RandomSource, stream: str, scale: torch.Tensor,
                               gray: torch.Tensor, sizes: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Poisson noise as BasicSR's ``generate_poisson_noise_pt`` (the public RASS code) defines it.

    With ``x = clamp(round(255 * image), 0, 255) / 255`` (of the torchvision luma ``0.2989 R + 0.587 G + 0.114 B``
    where ``gray``) and ``L = 2 ** ceil(log2(number of distinct values of x in the image))``, the noise is
    ``Poisson(L * x) / L - x``, times ``scale``. An image with many distinct levels gets ``L = 256`` (as
    :func:`add_poisson_noise`); one with few, e.g. after a strong downscale, gets fewer levels and stronger
    noise. The counts come from the same uniform field as :func:`add_poisson_noise` through a quantile table of
    each ``L``.

    Args:
        images: ``(B, 3, H, W)`` in [0, 1].
        random: Source of the uniform fields.
        stream: Stream name of the field.
        scale: ``(B,)`` noise scale.
        gray: ``(B,)`` bool, noise computed on the luma and added to all channels.
        sizes: ``(B, 2)`` image sizes of a ragged batch (distinct values are counted in each image's region),
            ``None`` when every image fills the canvas.

    Returns:
        ``(B, 3, H, W)``, not clipped.
    """
    source = _gray_source(images, gray, lambda rgb: mix_channels((TORCHVISION_LUMA_WEIGHTS, ), rgb))
    levels = (source * 255.0).round_().clamp_(0.0, 255.0)
    quantized = levels / 255.0
    uniform = random.uniform(stream, images.shape[1:])
    noise = torch.empty_like(images)
    level_counts = distinct_level_counts(torch.where(gray.view(-1, 1, 1, 1), levels[:, :1].expand_as(levels),
                                                     levels), sizes)
    for index, count in enumerate(level_counts):
        table = poisson_quantile_table(images.device, count)
        counts = poisson_from_uniform(levels[index], uniform[index], table)
        noise[index] = counts / float(count) - quantized[index]
    return images + _gray_where(gray, noise) * scale.view(-1, 1, 1, 1)


def draw_noise(random: RandomSource, stream: str, *, gaussian_noise_prob: float, noise_range: Sequence[float],
               poisson_scale_range: Sequence[float],
               gray_noise_prob: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real-ESRGAN's per-sample noise choices: Gaussian or Poisson, gray or colour, and the levels.

    Args:
        random: Source of the draws.
        stream: Prefix of the stream names.
        gaussian_noise_prob: Probability of Gaussian (else Poisson) noise.
        noise_range: Range of the Gaussian sigma in 8-bit units (e.g. ``(1, 30)``).
        poisson_scale_range: Range of the Poisson scale.
        gray_noise_prob: Probability of gray (same on all channels) noise.

    Returns:
        ``(gaussian, gray, sigma, scale)``: ``(B,)`` bools and ``(B,)`` float32 sigma in [0, 1] units and scale.
    """
    gaussian = random.bernoulli(f'{stream}.gaussian', gaussian_noise_prob)
    gray = random.bernoulli(f'{stream}.gray', gray_noise_prob)
    sigma = random.uniform_range(f'{stream}.sigma', *noise_range) / 255.0
    scale = random.uniform_range(f'{stream}.poisson_scale', *poisson_scale_range)
    return gaussian, gray, sigma, scale


def add_random_noise(images: Any, random: RandomSource, stream: str, *, backend: DegradationBackend,
                     gaussian_noise_prob: float, noise_range: Sequence[float], poisson_scale_range: Sequence[float],
                     gray_noise_prob: float, sizes: Optional[torch.Tensor] = None) -> Any:
    """Real-ESRGAN's random noise step, drawn per sample, clipped to [0, 1].

    Args:
        images: The batch in ``backend``'s form (a ``(B, 3, H, W)`` tensor in [0, 1] for the torch backends).
        random: Source of the draws and fields.
        stream: Prefix of the stream names.
        backend: Backend that adds the noise.
        gaussian_noise_prob: Probability of Gaussian (else Poisson) noise.
        noise_range: Range of the Gaussian sigma in 8-bit units (e.g. ``(1, 30)``).
        poisson_scale_range: Range of the Poisson scale.
        gray_noise_prob: Probability of gray (same on all channels) noise.
        sizes: ``(B, 2)`` image sizes of a ragged batch, ``None`` when every image fills the canvas.

    Returns:
        The batch in [0, 1], in the form it came in.
    """
    gaussian, gray, sigma, scale = draw_noise(random, stream, gaussian_noise_prob=gaussian_noise_prob,
                                              noise_range=noise_range, poisson_scale_range=poisson_scale_range,
                                              gray_noise_prob=gray_noise_prob)

    def gaussian_step(subset: Any, index: torch.Tensor) -> Any:
        return backend.gaussian_noise(subset, random.subset(index), f'{stream}.gaussian_field', sigma[index],
                                      gray[index])

    def poisson_step(subset: Any, index: torch.Tensor) -> Any:
        return backend.poisson_noise(subset, random.subset(index), f'{stream}.poisson_field', scale[index],
                                     gray[index], None if sizes is None else sizes[index])

    images = backend.apply_to_subset(images, gaussian, gaussian_step)
    images = backend.apply_to_subset(images, ~gaussian, poisson_step)
    return backend.clamp(images)
