"""The Real-ESRGAN second-order degradation at scale 1, batched, with every draw made per sample.

Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data", ICCVW 2021.
RASS (arXiv 2602.14042) degrades its clean training images with it on the fly and keeps the HQ size
(scale 1): the low-quality image is resized back to the size of the clean one, so labels stay aligned.

Pipeline (each step with its own random draws per sample):
    1. blur (six kernel families or sinc) -> random resize (up / down / keep; area / bilinear / bicubic)
       -> Gaussian or Poisson noise (colour or gray) -> JPEG
    2. blur with probability ``second_blur_prob`` -> random resize -> noise
    3. in random order: [resize back to the input size + sinc filter (prob. ``final_sinc_prob``)] and [JPEG]
    4. round to 8 bit.
"""
import math
from typing import Any, Dict, Optional, Sequence, Tuple

import torch

from .blur import blur_ragged
from .blur_kernels import KERNEL_TYPES, sample_blur_kernels, sample_sinc_kernels
from .jpeg import jpeg_ragged
from .noise import add_random_noise
from .ragged_batch import apply_to_subset
from .random_source import RandomSource
from .resize import RESIZE_MODES, resize_ragged, sample_resize

__all__ = ['SecondOrderDegradation', 'quantize_to_8bit']

_PROB_TOLERANCE = 1e-6


def _check_probability(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f'degradation key {name!r} must be a probability in [0, 1], got {value!r}')
    return float(value)


def _check_distribution(name: str, probs: Sequence[float], length: int, labels: Sequence[str]) -> Tuple[float, ...]:
    probs = tuple(float(prob) for prob in probs)
    if len(probs) != length:
        raise ValueError(f'degradation key {name!r} needs {length} probabilities (for {", ".join(labels)}), '
                         f'got {len(probs)}: {list(probs)}')
    if min(probs) < 0 or abs(sum(probs) - 1.0) > _PROB_TOLERANCE:
        raise ValueError(f'degradation key {name!r} must be non-negative probabilities that sum to 1, '
                         f'got {list(probs)} (sum {sum(probs):.6g})')
    return probs


def _check_range(name: str, value: Sequence[float], low: float = -math.inf, high: float = math.inf,
                 contains: Optional[float] = None) -> Tuple[float, float]:
    if len(value) != 2 or not float(value[0]) <= float(value[1]):
        raise ValueError(f'degradation key {name!r} must be a range [low, high] with low <= high, got {value!r}')
    value = (float(value[0]), float(value[1]))
    if value[0] < low or value[1] > high:
        raise ValueError(f'degradation key {name!r} must lie within [{low}, {high}], got {list(value)}')
    if contains is not None and not value[0] <= contains <= value[1]:
        raise ValueError(f'degradation key {name!r} must contain {contains} (scales below it shrink, above it '
                         f'enlarge), got {list(value)}')
    return value


def _check_kernel_list(name: str, kernel_list: Sequence[str]) -> Tuple[str, ...]:
    unknown = [kernel for kernel in kernel_list if kernel not in KERNEL_TYPES]
    if unknown or not kernel_list:
        raise ValueError(f'degradation key {name!r} has unknown kernel types {unknown}; '
                         f'expected a non-empty list from {list(KERNEL_TYPES)}')
    return tuple(kernel_list)


def quantize_to_8bit(images: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to multiples of 1/255 (``+ 0.0`` turns a -0.0 into 0.0, for identical bits)."""
    return images.clamp(0.0, 1.0).mul_(255.0).round_().div_(255.0).add_(0.0)


class SecondOrderDegradation:
    """Real-ESRGAN's second-order degradation of a batch of RGB images in [0, 1], keeping their size.

    The defaults are the values of the public RASS code. Key names follow Real-ESRGAN's options; keys ending in
    ``2`` belong to the second stage.

    Args:
        kernel_range: Smallest and largest odd blur kernel size; sizes in between are drawn with equal odds.
        kernel_list: Kernel families of stage 1 (names from ``KERNEL_TYPES``).
        kernel_prob: Probability of each family of ``kernel_list``.
        sinc_prob: Probability of a sinc kernel instead of ``kernel_list`` in stage 1.
        blur_sigma: Range of the Gaussian sigma (pixels) in stage 1.
        betag_range: Range of the generalized Gaussian exponent in stage 1.
        betap_range: Range of the plateau exponent in stage 1.
        resize_prob: Probabilities of up / down / keep in stage 1.
        resize_range: Range of the stage-1 scale (must contain 1).
        gaussian_noise_prob: Probability of Gaussian (else Poisson) noise in stage 1.
        noise_range: Range of the Gaussian sigma in 8-bit units in stage 1.
        poisson_scale_range: Range of the Poisson noise scale in stage 1.
        gray_noise_prob: Probability of gray noise in stage 1.
        jpeg_range: Range of the JPEG quality in stage 1.
        second_blur_prob: Probability of the stage-2 blur.
        kernel_list2: Kernel families of stage 2.
        kernel_prob2: Probability of each family of ``kernel_list2``.
        sinc_prob2: Probability of a sinc kernel in stage 2.
        blur_sigma2: Range of the Gaussian sigma in stage 2.
        betag_range2: Range of the generalized Gaussian exponent in stage 2.
        betap_range2: Range of the plateau exponent in stage 2.
        resize_prob2: Probabilities of up / down / keep in stage 2 (scale relative to the input size).
        resize_range2: Range of the stage-2 scale (must contain 1).
        gaussian_noise_prob2: Probability of Gaussian noise in stage 2.
        noise_range2: Range of the Gaussian sigma in 8-bit units in stage 2.
        poisson_scale_range2: Range of the Poisson noise scale in stage 2.
        gray_noise_prob2: Probability of gray noise in stage 2.
        jpeg_range2: Range of the final JPEG quality.
        final_sinc_prob: Probability of the final sinc filter.
        final_jpeg_first_prob: Probability that the final JPEG comes before the resize back and the sinc filter.
        resize_mode_prob: Probabilities of the interpolation modes area / bilinear / bicubic of every resize.
        rotation_range: Range of the rotation (radians) of anisotropic kernels.
    """

    def __init__(self,
                 kernel_range: Sequence[int] = (7, 21),
                 kernel_list: Sequence[str] = KERNEL_TYPES,
                 kernel_prob: Sequence[float] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
                 sinc_prob: float = 0.1,
                 blur_sigma: Sequence[float] = (0.2, 3.0),
                 betag_range: Sequence[float] = (0.5, 4.0),
                 betap_range: Sequence[float] = (1.0, 2.0),
                 resize_prob: Sequence[float] = (0.2, 0.7, 0.1),
                 resize_range: Sequence[float] = (0.15, 1.5),
                 gaussian_noise_prob: float = 0.5,
                 noise_range: Sequence[float] = (1.0, 30.0),
                 poisson_scale_range: Sequence[float] = (0.05, 3.0),
                 gray_noise_prob: float = 0.4,
                 jpeg_range: Sequence[float] = (30.0, 95.0),
                 second_blur_prob: float = 0.8,
                 kernel_list2: Sequence[str] = KERNEL_TYPES,
                 kernel_prob2: Sequence[float] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
                 sinc_prob2: float = 0.1,
                 blur_sigma2: Sequence[float] = (0.2, 1.5),
                 betag_range2: Sequence[float] = (0.5, 4.0),
                 betap_range2: Sequence[float] = (1.0, 2.0),
                 resize_prob2: Sequence[float] = (0.3, 0.4, 0.3),
                 resize_range2: Sequence[float] = (0.3, 1.2),
                 gaussian_noise_prob2: float = 0.5,
                 noise_range2: Sequence[float] = (1.0, 25.0),
                 poisson_scale_range2: Sequence[float] = (0.05, 2.5),
                 gray_noise_prob2: float = 0.4,
                 jpeg_range2: Sequence[float] = (30.0, 95.0),
                 final_sinc_prob: float = 0.8,
                 final_jpeg_first_prob: float = 0.5,
                 resize_mode_prob: Sequence[float] = (1 / 3, 1 / 3, 1 / 3),
                 rotation_range: Sequence[float] = (-math.pi, math.pi)) -> None:
        low, high = (int(size) for size in kernel_range) if len(kernel_range) == 2 else (0, 0)
        if low < 1 or low % 2 == 0 or high % 2 == 0 or low > high:
            raise ValueError(f"degradation key 'kernel_range' must be [smallest, largest] odd kernel sizes, "
                             f'got {list(kernel_range)}')
        self.kernel_range = (low, high)
        self.kernel_sizes = tuple(range(low, high + 1, 2))
        self.rotation_range = _check_range('rotation_range', rotation_range)
        self.resize_mode_prob = _check_distribution('resize_mode_prob', resize_mode_prob, len(RESIZE_MODES),
                                                    RESIZE_MODES)
        self.final_sinc_prob = _check_probability('final_sinc_prob', final_sinc_prob)
        self.final_jpeg_first_prob = _check_probability('final_jpeg_first_prob', final_jpeg_first_prob)
        self.second_blur_prob = _check_probability('second_blur_prob', second_blur_prob)
        self.stages = {}
        for suffix, values in (('', (kernel_list, kernel_prob, sinc_prob, blur_sigma, betag_range, betap_range,
                                     resize_prob, resize_range, gaussian_noise_prob, noise_range,
                                     poisson_scale_range, gray_noise_prob, jpeg_range)),
                               ('2', (kernel_list2, kernel_prob2, sinc_prob2, blur_sigma2, betag_range2,
                                      betap_range2, resize_prob2, resize_range2, gaussian_noise_prob2, noise_range2,
                                      poisson_scale_range2, gray_noise_prob2, jpeg_range2))):
            self.stages[suffix] = self._check_stage(suffix, *values)

    @staticmethod
    def _check_stage(suffix: str, kernel_list: Sequence[str], kernel_prob: Sequence[float], sinc_prob: float,
                     blur_sigma: Sequence[float], betag_range: Sequence[float], betap_range: Sequence[float],
                     resize_prob: Sequence[float], resize_range: Sequence[float], gaussian_noise_prob: float,
                     noise_range: Sequence[float], poisson_scale_range: Sequence[float], gray_noise_prob: float,
                     jpeg_range: Sequence[float]) -> Dict[str, Any]:
        kernel_list = _check_kernel_list(f'kernel_list{suffix}', kernel_list)
        return dict(
            kernel_list=kernel_list,
            kernel_prob=_check_distribution(f'kernel_prob{suffix}', kernel_prob, len(kernel_list), kernel_list),
            sinc_prob=_check_probability(f'sinc_prob{suffix}', sinc_prob),
            blur_sigma=_check_range(f'blur_sigma{suffix}', blur_sigma, low=1e-3),
            betag_range=_check_range(f'betag_range{suffix}', betag_range, low=1e-3, contains=1.0),
            betap_range=_check_range(f'betap_range{suffix}', betap_range, low=1e-3, contains=1.0),
            resize_prob=_check_distribution(f'resize_prob{suffix}', resize_prob, 3, ('up', 'down', 'keep')),
            resize_range=_check_range(f'resize_range{suffix}', resize_range, low=1e-3, contains=1.0),
            gaussian_noise_prob=_check_probability(f'gaussian_noise_prob{suffix}', gaussian_noise_prob),
            noise_range=_check_range(f'noise_range{suffix}', noise_range, low=0.0),
            poisson_scale_range=_check_range(f'poisson_scale_range{suffix}', poisson_scale_range, low=0.0),
            gray_noise_prob=_check_probability(f'gray_noise_prob{suffix}', gray_noise_prob),
            jpeg_range=_check_range(f'jpeg_range{suffix}', jpeg_range, low=1.0, high=100.0))

    def to_dict(self) -> Dict[str, Any]:
        """All parameters under their config key names (JSON-friendly lists)."""
        params: Dict[str, Any] = dict(kernel_range=list(self.kernel_range))
        for suffix, stage in self.stages.items():
            params.update({f'{key}{suffix}': list(value) if isinstance(value, tuple) else value
                           for key, value in stage.items()})
        params.update(second_blur_prob=self.second_blur_prob, final_sinc_prob=self.final_sinc_prob,
                      final_jpeg_first_prob=self.final_jpeg_first_prob,
                      resize_mode_prob=list(self.resize_mode_prob), rotation_range=list(self.rotation_range))
        return params

    def _blur_kernels(self, random: RandomSource, stream: str, stage: Dict[str, Any]) -> torch.Tensor:
        return sample_blur_kernels(random, stream, kernel_sizes=self.kernel_sizes, kernel_types=stage['kernel_list'],
                                   kernel_probs=stage['kernel_prob'], sinc_prob=stage['sinc_prob'],
                                   sigma_range=stage['blur_sigma'], betag_range=stage['betag_range'],
                                   betap_range=stage['betap_range'], rotation_range=self.rotation_range,
                                   max_size=self.kernel_range[1])

    def _resize(self, images: torch.Tensor, sizes: torch.Tensor, random: RandomSource, stream: str,
                base_sizes: torch.Tensor, stage: Dict[str, Any]) -> Tuple[torch.Tensor, torch.Tensor]:
        out_sizes, modes = sample_resize(random, stream, base_sizes, stage['resize_prob'], stage['resize_range'],
                                         self.resize_mode_prob)
        largest = out_sizes.max(dim=0).values.tolist()
        if random.is_batch_invariant:
            # Canvas from the size and the config only, so no shape depends on the other images of the batch.
            height, width = base_sizes[0].tolist()
            bound = [math.floor(height * stage['resize_range'][1]), math.floor(width * stage['resize_range'][1])]
            largest = [max(size, limit) for size, limit in zip(largest, bound)]
        return resize_ragged(images, sizes, out_sizes, modes, tuple(largest)), out_sizes

    def __call__(self, images: torch.Tensor, random: RandomSource) -> torch.Tensor:
        """Degrade a batch.

        Args:
            images: ``(B, 3, H, W)`` float RGB in [0, 1].
            random: Per-sample random numbers for this batch (``random.batch_size == B``).

        Returns:
            ``(B, 3, H, W)`` float32 RGB in [0, 1], multiples of 1/255.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f'the degradation expects RGB batches (B, 3, H, W), got shape {tuple(images.shape)}')
        if random.batch_size != images.shape[0]:
            raise ValueError(f'random source is for {random.batch_size} samples, the batch has {images.shape[0]}')
        # AMP training runs the data preprocessor inside autocast, which would turn the blur and resize
        # convolutions into bf16/fp16 and mix dtypes in the ragged updates: the pipeline is float32 throughout.
        with torch.autocast(device_type=images.device.type, enabled=False):
            return self._degrade_float32(images.to(torch.float32), random)

    def _degrade_float32(self, degraded: torch.Tensor, random: RandomSource) -> torch.Tensor:
        """The pipeline of :meth:`__call__` on a validated float32 batch, autocast off."""
        first, second = self.stages[''], self.stages['2']
        batch, _, height, width = degraded.shape
        base_sizes = torch.tensor([[height, width]], device=degraded.device).expand(batch, 2)

        # Stage 1: blur, resize, noise, JPEG.
        degraded = blur_ragged(degraded, base_sizes, self._blur_kernels(random, 'first.blur', first))
        degraded, sizes = self._resize(degraded, base_sizes, random, 'first.resize', base_sizes, first)
        degraded = add_random_noise(degraded, random, 'first.noise', **self._noise_args(first))
        degraded = jpeg_ragged(degraded, sizes, random.uniform_range('first.jpeg', *first['jpeg_range']))

        # Stage 2: blur (sometimes), resize relative to the input size, noise.
        kernels = self._blur_kernels(random, 'second.blur', second)
        degraded = apply_to_subset(degraded, random.bernoulli('second.blur.apply', self.second_blur_prob),
                                   lambda subset, index: blur_ragged(subset, sizes[index], kernels[index]))
        degraded, sizes = self._resize(degraded, sizes, random, 'second.resize', base_sizes, second)
        degraded = add_random_noise(degraded, random, 'second.noise', **self._noise_args(second))

        # Final: [resize back + sinc] and [JPEG] in random order.
        quality = random.uniform_range('final.jpeg', *second['jpeg_range'])
        jpeg_first = random.bernoulli('final.jpeg_first', self.final_jpeg_first_prob)
        degraded = apply_to_subset(degraded, jpeg_first,
                                   lambda subset, index: jpeg_ragged(subset, sizes[index], quality[index]))
        modes = random.categorical('final.resize.mode', self.resize_mode_prob)
        degraded = resize_ragged(degraded, sizes, base_sizes, modes, (height, width))
        sinc = sample_sinc_kernels(random, 'final.sinc', kernel_sizes=self.kernel_sizes,
                                   max_size=self.kernel_range[1])
        degraded = apply_to_subset(degraded, random.bernoulli('final.sinc.apply', self.final_sinc_prob),
                                   lambda subset, index: blur_ragged(subset, base_sizes[index], sinc[index]))
        degraded = apply_to_subset(degraded, ~jpeg_first,
                                   lambda subset, index: jpeg_ragged(subset, base_sizes[index], quality[index]))
        return quantize_to_8bit(degraded)

    @staticmethod
    def _noise_args(stage: Dict[str, Any]) -> Dict[str, Any]:
        return dict(gaussian_noise_prob=stage['gaussian_noise_prob'], noise_range=stage['noise_range'],
                    poisson_scale_range=stage['poisson_scale_range'], gray_noise_prob=stage['gray_noise_prob'])

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.to_dict()})'
