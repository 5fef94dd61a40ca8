"""Random blur kernels of the Real-ESRGAN degradation, one per sample, generated for the whole batch at once.

Kernel families (Wang et al., "Real-ESRGAN", ICCVW 2021, Sec. 3.2): isotropic / anisotropic Gaussian,
generalized Gaussian ``exp(-0.5 * q**beta)`` and plateau ``1 / (1 + q**beta)`` where ``q = x^T Sigma^-1 x``, plus
the 2-D sinc (circular low-pass, ``omega * J1(omega * r) / (2 * pi * r)``) that models ringing.

Why not kornia's kernel generators: ``kornia.filters.get_gaussian_kernel2d`` takes a sigma per sample but only an
axis-aligned Gaussian of one size; the rotated, generalized and plateau families, the sinc and a kernel *size*
per sample are not there. Here every kernel lives on a common ``max_size x max_size`` grid, zero outside its own
size (as Real-ESRGAN pads its kernels to 21x21), so a batch of kernels is one tensor computed with one expression.

Kernels are computed in float64 and returned as float32: the vectorised and scalar code paths of ``exp``, ``pow``
and ``cos`` may differ in the last bit, which float64 keeps far below float32's resolution, so a sample's kernel
does not depend on the batch size.
"""
import math
from typing import Any, NamedTuple, Optional, Sequence, Tuple

import torch

from .random_source import RandomSource

__all__ = [
    'KERNEL_TYPES', 'BlurKernelDraws', 'kernel_grid', 'anisotropic_kernels', 'circular_lowpass_kernels',
    'draw_blur_kernels', 'draw_sinc_kernels', 'blur_kernels_from_draws', 'sample_blur_kernels'
]

#: Kernel families understood by :func:`sample_blur_kernels` (Real-ESRGAN's ``kernel_list`` names).
KERNEL_TYPES: Tuple[str, ...] = ('iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso',
                                 'plateau_aniso')


def kernel_grid(max_size: int, device: torch.device,
                dtype: torch.dtype = torch.float64) -> Tuple[torch.Tensor, torch.Tensor]:
    """Centred integer coordinates of a ``max_size x max_size`` kernel.

    Returns:
        ``(x, y)``, tensors of shape ``(max_size, max_size)``; ``x`` varies along columns.
    """
    axis = torch.arange(max_size, dtype=dtype, device=device) - (max_size // 2)
    y, x = torch.meshgrid(axis, axis, indexing='ij')
    return x, y


def _support_mask(sizes: torch.Tensor, max_size: int) -> torch.Tensor:
    """Bool ``(B, max_size, max_size)``: True inside each sample's centred ``size x size`` window."""
    x, y = kernel_grid(max_size, sizes.device)
    radius = (sizes // 2).view(-1, 1, 1).to(x.dtype)
    return (x.abs() <= radius) & (y.abs() <= radius)


def _normalise(kernels: torch.Tensor) -> torch.Tensor:
    """float64 kernels scaled to sum 1, returned as float32."""
    return (kernels / kernels.sum(dim=(1, 2), keepdim=True)).to(torch.float32)


def anisotropic_kernels(sigma_x: torch.Tensor, sigma_y: torch.Tensor, theta: torch.Tensor, beta: torch.Tensor,
                        plateau: torch.Tensor, sizes: torch.Tensor, max_size: int) -> torch.Tensor:
    """Batched (generalized) Gaussian and plateau kernels, normalised to sum 1.

    With ``Sigma = R(theta) diag(sigma_x**2, sigma_y**2) R(theta)^T`` and ``q = x^T Sigma^-1 x`` the kernel is
    ``exp(-0.5 * q**beta)`` (``beta = 1`` is the Gaussian) or, where ``plateau`` is True, ``1 / (1 + q**beta)``.

    Args:
        sigma_x: ``(B,)`` standard deviation along the rotated x axis.
        sigma_y: ``(B,)`` standard deviation along the rotated y axis.
        theta: ``(B,)`` rotation in radians.
        beta: ``(B,)`` shape exponent.
        plateau: ``(B,)`` bool, plateau instead of generalized Gaussian.
        sizes: ``(B,)`` odd kernel sizes, at most ``max_size``.
        max_size: Side of the common kernel grid.

    Returns:
        float32 ``(B, max_size, max_size)``.
    """
    x, y = kernel_grid(max_size, sigma_x.device)
    theta, beta = theta.double().view(-1, 1, 1), beta.double().view(-1, 1, 1)
    cos, sin = torch.cos(theta), torch.sin(theta)
    along = cos * x + sin * y
    across = cos * y - sin * x
    quadratic = (along / sigma_x.double().view(-1, 1, 1))**2 + (across / sigma_y.double().view(-1, 1, 1))**2
    powered = quadratic.pow(beta)
    kernels = torch.where(plateau.view(-1, 1, 1), 1.0 / (powered + 1.0), torch.exp(-0.5 * powered))
    return _normalise(kernels * _support_mask(sizes, max_size))


def circular_lowpass_kernels(cutoff: torch.Tensor, sizes: torch.Tensor, max_size: int) -> torch.Tensor:
    """Batched 2-D sinc kernels ``cutoff * J1(cutoff * r) / (2 * pi * r)`` (centre ``cutoff**2 / (4 * pi)``).

    Args:
        cutoff: ``(B,)`` cutoff frequency omega in radians per pixel.
        sizes: ``(B,)`` odd kernel sizes, at most ``max_size``.
        max_size: Side of the common kernel grid.

    Returns:
        float32 ``(B, max_size, max_size)`` normalised to sum 1.
    """
    x, y = kernel_grid(max_size, cutoff.device)
    radius = torch.sqrt(x**2 + y**2)
    cutoff = cutoff.double().view(-1, 1, 1)
    safe_radius = torch.where(radius > 0, radius, torch.ones_like(radius))
    kernels = cutoff * torch.special.bessel_j1(cutoff * safe_radius) / (2 * math.pi * safe_radius)
    kernels = torch.where(radius > 0, kernels, cutoff**2 / (4 * math.pi))
    return _normalise(kernels * _support_mask(sizes, max_size))


class BlurKernelDraws(NamedTuple):
    """The random draws that define one blur kernel per sample (the kernels are built from them by
    :func:`blur_kernels_from_draws`, or by another backend's own arithmetic).

    ``sizes`` (long), ``sinc`` (bool) and ``cutoff`` are ``(B,)`` tensors; the Gaussian-family fields are ``(B,)``
    tensors too, or ``None`` when every kernel is a sinc (:func:`draw_sinc_kernels`).
    """

    sizes: torch.Tensor
    sinc: torch.Tensor
    cutoff: torch.Tensor
    sigma_x: Optional[torch.Tensor]
    sigma_y: Optional[torch.Tensor]
    theta: Optional[torch.Tensor]
    beta: Optional[torch.Tensor]
    plateau: Optional[torch.Tensor]
    max_size: int

    def select(self, index: torch.Tensor) -> 'BlurKernelDraws':
        """The draws of the samples ``index``."""
        return BlurKernelDraws(*(None if value is None else value[index] for value in self[:-1]), self.max_size)


def _draw_sizes(random: RandomSource, stream: str, kernel_sizes: Sequence[int]) -> torch.Tensor:
    choice = random.categorical(stream, [1.0 / len(kernel_sizes)] * len(kernel_sizes))
    return torch.tensor(list(kernel_sizes), dtype=torch.int64, device=random.device)[choice]


def _draw_beta(random: RandomSource, stream: str, beta_range: Sequence[float]) -> torch.Tensor:
    # Real-ESRGAN draws beta below or above 1 with equal odds, so both shapes (sharper and flatter than the
    # Gaussian) are equally common whatever the range.
    below = random.uniform_range(f'{stream}.low', beta_range[0], 1.0)
    above = random.uniform_range(f'{stream}.high', 1.0, beta_range[1])
    return torch.where(random.bernoulli(f'{stream}.side', 0.5), below, above)


def draw_blur_kernels(random: RandomSource, stream: str, *, kernel_sizes: Sequence[int],
                      kernel_types: Sequence[str], kernel_probs: Sequence[float], sinc_prob: float,
                      sigma_range: Sequence[float], betag_range: Sequence[float], betap_range: Sequence[float],
                      rotation_range: Sequence[float] = (-math.pi, math.pi), max_size: int = 21) -> BlurKernelDraws:
    """Draw one Real-ESRGAN blur kernel per sample (mixed families, or a sinc with probability ``sinc_prob``).

    Args:
        random: Source of the per-sample draws.
        stream: Prefix of the stream names of the draws.
        kernel_sizes: Odd sizes drawn with equal odds.
        kernel_types: Families, names from :data:`KERNEL_TYPES`.
        kernel_probs: Probability of each family (sums to 1).
        sinc_prob: Probability of a sinc kernel instead.
        sigma_range: Range of the Gaussian standard deviations.
        betag_range: Range of the generalized Gaussian exponent.
        betap_range: Range of the plateau exponent.
        rotation_range: Range of the rotation of anisotropic kernels.
        max_size: Side of the kernels built from the draws.

    Returns:
        The draws.
    """
    sizes = _draw_sizes(random, f'{stream}.size', kernel_sizes)
    family_names = list(kernel_types)
    family = random.categorical(f'{stream}.type', kernel_probs)

    def is_family(names: Sequence[str]) -> torch.Tensor:
        codes = [index for index, name in enumerate(family_names) if name in names]
        return torch.isin(family, torch.tensor(codes, dtype=torch.int64, device=random.device))

    isotropic = is_family(('iso', 'generalized_iso', 'plateau_iso'))
    plateau = is_family(('plateau_iso', 'plateau_aniso'))
    generalized = is_family(('generalized_iso', 'generalized_aniso'))

    sigma_x = random.uniform_range(f'{stream}.sigma_x', *sigma_range)
    sigma_y = torch.where(isotropic, sigma_x, random.uniform_range(f'{stream}.sigma_y', *sigma_range))
    theta = torch.where(isotropic, torch.zeros_like(sigma_x),
                        random.uniform_range(f'{stream}.theta', *rotation_range))
    beta = torch.ones_like(sigma_x)
    beta = torch.where(generalized, _draw_beta(random, f'{stream}.betag', betag_range), beta)
    beta = torch.where(plateau, _draw_beta(random, f'{stream}.betap', betap_range), beta)

    # Real-ESRGAN: small sinc kernels get a cutoff of at least pi/3, large ones of at least pi/5.
    cutoff = torch.where(sizes < 13, random.uniform_range(f'{stream}.omega_small', math.pi / 3, math.pi),
                         random.uniform_range(f'{stream}.omega_large', math.pi / 5, math.pi))
    sinc = random.bernoulli(f'{stream}.sinc', sinc_prob)
    return BlurKernelDraws(sizes, sinc, cutoff, sigma_x, sigma_y, theta, beta, plateau, max_size)


def draw_sinc_kernels(random: RandomSource, stream: str, *, kernel_sizes: Sequence[int],
                      cutoff_range: Sequence[float] = (math.pi / 3, math.pi), max_size: int = 21) -> BlurKernelDraws:
    """Draw the final-stage sinc kernel of each sample: size with equal odds, cutoff uniform in ``cutoff_range``."""
    sizes = _draw_sizes(random, f'{stream}.size', kernel_sizes)
    cutoff = random.uniform_range(f'{stream}.omega', *cutoff_range)
    return BlurKernelDraws(sizes, torch.ones_like(sizes, dtype=torch.bool), cutoff, None, None, None, None, None,
                           max_size)


def blur_kernels_from_draws(draws: BlurKernelDraws) -> torch.Tensor:
    """The kernels of the draws, float32 ``(B, max_size, max_size)``, each summing to 1."""
    sinc = circular_lowpass_kernels(draws.cutoff, draws.sizes, draws.max_size)
    if draws.sigma_x is None:
        return sinc
    kernels = anisotropic_kernels(draws.sigma_x, draws.sigma_y, draws.theta, draws.beta, draws.plateau, draws.sizes,
                                  draws.max_size)
    return torch.where(draws.sinc.view(-1, 1, 1), sinc, kernels)


def sample_blur_kernels(random: RandomSource, stream: str, **kwargs: Any) -> torch.Tensor:
    """Draw and build one Real-ESRGAN blur kernel per sample (keywords of :func:`draw_blur_kernels`).

    Returns:
        float32 ``(B, max_size, max_size)``, each kernel summing to 1.
    """
    return blur_kernels_from_draws(draw_blur_kernels(random, stream, **kwargs))

