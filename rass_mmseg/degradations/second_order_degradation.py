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

The pipeline and every random draw live here; the operations run on a backend class, picked once at construction
from the ``ops`` key (which operations: libjpeg-faithful or BasicSR's) and the ``backend`` key (where: batched
torch code on a ragged-batch canvas, any device, or OpenCV and numpy image by image, CPU only, several times
faster there); :mod:`.backend_registry` lists them. ``'auto'`` takes OpenCV for CPU tensors where the op set has
it and torch otherwise, so what runs on a GPU is a torch backend.
"""
import math
from typing import Any, Dict, Optional, Sequence, Tuple

import torch

from .backend_registry import backend_classes
from .blur_kernels import KERNEL_TYPES, BlurKernelDraws, draw_blur_kernels, draw_sinc_kernels
from .degradation_backend import DegradationBackend
from .noise import add_random_noise
from .random_source import RandomSource
from .resize import RESIZE_MODES, draw_resize

__all__ = ['SecondOrderDegradation', 'MAX_RESIZE_SCALE', 'MAX_NOISE_SIGMA', 'MAX_POISSON_SCALE', 'MAX_BLUR_SIGMA']

_PROB_TOLERANCE = 1e-6

# Upper bounds of the ranges: Real-ESRGAN's largest values widened several times over, so any sensible experiment
# fits, while a typo fails at construction instead of exhausting memory or drowning the image.
#: Resize scale (``resize_range``, ``resize_range2``; Real-ESRGAN: 1.5, 1.2). An image resized by ``s`` has ``s**2``
#: times the pixels, and the batch canvas is sized for the largest scale: 4 is 16 times the pixels (50 MB per
#: 512x512 float image), where ``(0.15, 150)``, a typo for 1.5, needs ~70 GB.
MAX_RESIZE_SCALE = 4.0
#: Gaussian noise sigma in 8-bit units (``noise_range``, ``noise_range2``; Real-ESRGAN: 30, 25). 255 is the whole
#: 8-bit range: beyond it the clipped result is little more than noise.
MAX_NOISE_SIGMA = 255.0
#: Poisson noise scale (``poisson_scale_range``, ``poisson_scale_range2``; Real-ESRGAN: 3, 2.5). The noise's
#: standard deviation is ``scale * sqrt(x / 256) <= scale / 16`` for an image ``x`` in [0, 1]: 16 reaches the
#: whole range.
MAX_POISSON_SCALE = 16.0
#: Blur sigma in pixels (``blur_sigma``, ``blur_sigma2``; Real-ESRGAN: 3, 1.5). Kernels are at most
#: ``kernel_range[1]`` pixels wide (21 by default), over which a Gaussian of a sigma far larger is flat: larger
#: values change nothing.
MAX_BLUR_SIGMA = 100.0


def _check_probability(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f'degradation key {name!r} must be a probability in [0, 1], got {value!r}')
    return float(value)


def _finite_floats(name: str, values: Sequence[float]) -> Tuple[float, ...]:
    """``values`` as floats, or a one-line error naming the key when one is not a finite number."""
    try:
        floats = tuple(float(value) for value in values)
    except (TypeError, ValueError):
        floats = (math.nan, )
    if not all(math.isfinite(value) for value in floats):
        raise ValueError(f'degradation key {name!r} must hold finite numbers, got {values!r}')
    return floats


def _check_distribution(name: str, probs: Sequence[float], length: int, labels: Sequence[str]) -> Tuple[float, ...]:
    probs = _finite_floats(name, probs)
    if len(probs) != length:
        raise ValueError(f'degradation key {name!r} needs {length} probabilities (for {", ".join(labels)}), '
                         f'got {len(probs)}: {list(probs)}')
    if min(probs) < 0 or abs(sum(probs) - 1.0) > _PROB_TOLERANCE:
        raise ValueError(f'degradation key {name!r} must be non-negative probabilities that sum to 1, '
                         f'got {list(probs)} (sum {sum(probs):.6g})')
    return probs


def _check_range(name: str, value: Sequence[float], low: float = -math.inf, high: float = math.inf,
                 contains: Optional[float] = None, why: str = '') -> Tuple[float, float]:
    """``value`` as a finite ``(low, high)`` pair within ``[low, high]``; ``why`` explains the bounds in the error."""
    floats = _finite_floats(name, value)
    if len(floats) != 2 or not floats[0] <= floats[1]:
        raise ValueError(f'degradation key {name!r} must be a range [low, high] with low <= high, got {value!r}')
    if floats[0] < low or floats[1] > high:
        raise ValueError(f'degradation key {name!r} must lie within [{low}, {high}], got {list(floats)}'
                         + (f' ({why})' if why else ''))
    if contains is not None and not floats[0] <= contains <= floats[1]:
        raise ValueError(f'degradation key {name!r} must contain {contains} (scales below it shrink, above it '
                         f'enlarge), got {list(floats)}')
    return floats[0], floats[1]


def _check_kernel_list(name: str, kernel_list: Sequence[str]) -> Tuple[str, ...]:
    unknown = [kernel for kernel in kernel_list if kernel not in KERNEL_TYPES]
    if unknown or not kernel_list:
        raise ValueError(f'degradation key {name!r} has unknown kernel types {unknown}; '
                         f'expected a non-empty list from {list(KERNEL_TYPES)}')
    return tuple(kernel_list)


class SecondOrderDegradation:
    """Real-ESRGAN's second-order degradation of a batch of RGB images in [0, 1], keeping their size.

    The defaults are the values of the public RASS code. Key names follow Real-ESRGAN's options; keys ending in
    ``2`` belong to the second stage. Every value is checked at construction (one line naming the key and the
    allowed range): ranges hold finite numbers, and resize scales, noise and blur sigmas have upper bounds
    (:data:`MAX_RESIZE_SCALE`, :data:`MAX_NOISE_SIGMA`, :data:`MAX_POISSON_SCALE`, :data:`MAX_BLUR_SIGMA`; their
    comments say why).

    Args:
        kernel_range: Smallest and largest odd blur kernel size; sizes in between are drawn with equal odds.
        kernel_list: Kernel families of stage 1 (names from ``KERNEL_TYPES``).
        kernel_prob: Probability of each family of ``kernel_list``.
        sinc_prob: Probability of a sinc kernel instead of ``kernel_list`` in stage 1.
        blur_sigma: Range of the Gaussian sigma (pixels) in stage 1 (at most ``MAX_BLUR_SIGMA``).
        betag_range: Range of the generalized Gaussian exponent in stage 1.
        betap_range: Range of the plateau exponent in stage 1.
        resize_prob: Probabilities of up / down / keep in stage 1.
        resize_range: Range of the stage-1 scale (must contain 1; at most ``MAX_RESIZE_SCALE``).
        gaussian_noise_prob: Probability of Gaussian (else Poisson) noise in stage 1.
        noise_range: Range of the Gaussian sigma in 8-bit units in stage 1 (at most ``MAX_NOISE_SIGMA``).
        poisson_scale_range: Range of the Poisson noise scale in stage 1 (at most ``MAX_POISSON_SCALE``).
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
        backend: Where the operations run: ``'auto'`` (OpenCV for CPU tensors with ``ops='libjpeg'``, torch
            otherwise), ``'torch'`` (batched torch code on any device) or ``'opencv'`` (OpenCV and numpy, CPU
            tensors, ``ops='libjpeg'`` only). The random draws are the same on both; the images agree within float
            rounding, except JPEG, which OpenCV codes with libjpeg (8-bit input, integer quality), so the two give
            equally distributed, not equal, images.
        ops: Which operations: ``'libjpeg'`` (a libjpeg-faithful JPEG, resizes on ``F.interpolate(size=...)``'s
            grid, Poisson noise on 256 levels) or ``'basicsr'`` (BasicSR's, which the public RASS code calls:
            DiffJPEG, the first resize with ``scale_factor=``, Poisson levels from each image's count of distinct
            values; ``'public_rass'`` is another name for it). Same parameters and draws give ~0.4 dB harsher images
            with ``'basicsr'``.
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
                 rotation_range: Sequence[float] = (-math.pi, math.pi),
                 backend: str = 'auto',
                 ops: str = 'libjpeg') -> None:
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
        self.ops, self._backend_classes = backend_classes(ops, backend)
        self.backend = backend
        self.stages = {}
        for suffix, values in (('', (kernel_list, kernel_prob, sinc_prob, blur_sigma, betag_range, betap_range,
                                     resize_prob, resize_range, gaussian_noise_prob, noise_range,
                                     poisson_scale_range, gray_noise_prob, jpeg_range)),
                               ('2', (kernel_list2, kernel_prob2, sinc_prob2, blur_sigma2, betag_range2,
                                      betap_range2, resize_prob2, resize_range2, gaussian_noise_prob2, noise_range2,
                                      poisson_scale_range2, gray_noise_prob2, jpeg_range2))):
            self.stages[suffix] = self._check_stage(suffix, *values)
            for backend_class in self._backend_classes.values():
                backend_class.check_jpeg_range(f'jpeg_range{suffix}', self.stages[suffix]['jpeg_range'])

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
            blur_sigma=_check_range(f'blur_sigma{suffix}', blur_sigma, low=1e-3, high=MAX_BLUR_SIGMA,
                                    why='pixels; Real-ESRGAN uses at most 3'),
            betag_range=_check_range(f'betag_range{suffix}', betag_range, low=1e-3, contains=1.0),
            betap_range=_check_range(f'betap_range{suffix}', betap_range, low=1e-3, contains=1.0),
            resize_prob=_check_distribution(f'resize_prob{suffix}', resize_prob, 3, ('up', 'down', 'keep')),
            resize_range=_check_range(f'resize_range{suffix}', resize_range, low=1e-3, high=MAX_RESIZE_SCALE,
                                      contains=1.0, why='a scale s holds s**2 times the pixels; Real-ESRGAN uses '
                                      'at most 1.5'),
            gaussian_noise_prob=_check_probability(f'gaussian_noise_prob{suffix}', gaussian_noise_prob),
            noise_range=_check_range(f'noise_range{suffix}', noise_range, low=0.0, high=MAX_NOISE_SIGMA,
                                     why='sigma in 8-bit units; Real-ESRGAN uses at most 30'),
            poisson_scale_range=_check_range(f'poisson_scale_range{suffix}', poisson_scale_range, low=0.0,
                                             high=MAX_POISSON_SCALE, why='Real-ESRGAN uses at most 3'),
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
                      resize_mode_prob=list(self.resize_mode_prob), rotation_range=list(self.rotation_range),
                      backend=self.backend, ops=self.ops)
        return params

    def backend_for(self, device: torch.device) -> DegradationBackend:
        """The backend that degrades batches on ``device`` (``'auto'``: OpenCV on the CPU where the op set has it,
        torch elsewhere)."""
        name = self.backend
        on_cpu = torch.device(device).type == 'cpu'
        if name == 'auto':
            name = 'opencv' if on_cpu and 'opencv' in self._backend_classes else 'torch'
        if name == 'opencv' and not on_cpu:
            raise ValueError(f"degradation backend 'opencv' runs on CPU tensors, got a batch on {device}; "
                             "use backend='auto' or 'torch'")
        return self._backend_classes[name]()

    def _blur_kernels(self, random: RandomSource, stream: str, stage: Dict[str, Any]) -> BlurKernelDraws:
        return draw_blur_kernels(random, stream, kernel_sizes=self.kernel_sizes, kernel_types=stage['kernel_list'],
                                 kernel_probs=stage['kernel_prob'], sinc_prob=stage['sinc_prob'],
                                 sigma_range=stage['blur_sigma'], betag_range=stage['betag_range'],
                                 betap_range=stage['betap_range'], rotation_range=self.rotation_range,
                                 max_size=self.kernel_range[1])

    def _resize(self, batch: Any, sizes: torch.Tensor, random: RandomSource, stream: str, base_sizes: torch.Tensor,
                stage: Dict[str, Any], backend: DegradationBackend,
                scale_factor: bool = False) -> Tuple[Any, torch.Tensor]:
        """Draw and apply a random resize; ``scale_factor``: sample on ``F.interpolate(scale_factor=...)``'s grid
        (BasicSR's first resize) instead of ``size=``'s."""
        draws = draw_resize(random, stream, base_sizes, stage['resize_prob'], stage['resize_range'],
                            self.resize_mode_prob)
        # In Python: a torch reduction, even over a (B, 2) tensor, may wake torch's CPU threads.
        largest = [max(column) for column in zip(*draws.out_sizes.tolist())]
        if random.is_batch_invariant:
            # Canvas from the size and the config only, so no shape depends on the other images of the batch.
            height, width = base_sizes[0].tolist()
            bound = [math.floor(height * stage['resize_range'][1]), math.floor(width * stage['resize_range'][1])]
            largest = [max(size, limit) for size, limit in zip(largest, bound)]
        return backend.resize(batch, sizes, draws.out_sizes, draws.modes, tuple(largest),
                              draws.scales if scale_factor else None), draws.out_sizes

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
            images = images.to(torch.float32)
            return self._degrade_float32(images, random, self.backend_for(images.device))

    def _degrade_float32(self, images: torch.Tensor, random: RandomSource,
                         backend: DegradationBackend) -> torch.Tensor:
        """The pipeline of :meth:`__call__` on a validated float32 batch, autocast off."""
        first, second = self.stages[''], self.stages['2']
        batch_size, _, height, width = images.shape
        base_sizes = torch.tensor([[height, width]], device=images.device).expand(batch_size, 2)
        batch = backend.load(images)

        # Stage 1: blur, resize, noise, JPEG.
        batch = backend.blur(batch, base_sizes, self._blur_kernels(random, 'first.blur', first))
        batch, sizes = self._resize(batch, base_sizes, random, 'first.resize', base_sizes, first, backend,
                                    scale_factor=backend.scale_factor_first_resize)
        batch = add_random_noise(batch, random, 'first.noise', backend=backend, sizes=sizes,
                                 **self._noise_args(first))
        batch = backend.jpeg(batch, sizes, random.uniform_range('first.jpeg', *first['jpeg_range']))

        # Stage 2: blur (sometimes), resize relative to the input size, noise.
        kernels = self._blur_kernels(random, 'second.blur', second)
        batch = backend.apply_to_subset(batch, random.bernoulli('second.blur.apply', self.second_blur_prob),
                                        lambda subset, index: backend.blur(subset, sizes[index], kernels.select(index)))
        batch, sizes = self._resize(batch, sizes, random, 'second.resize', base_sizes, second, backend)
        batch = add_random_noise(batch, random, 'second.noise', backend=backend, sizes=sizes,
                                 **self._noise_args(second))

        # Final: [resize back + sinc] and [JPEG] in random order.
        quality = random.uniform_range('final.jpeg', *second['jpeg_range'])
        jpeg_first = random.bernoulli('final.jpeg_first', self.final_jpeg_first_prob)
        batch = backend.apply_to_subset(batch, jpeg_first,
                                        lambda subset, index: backend.jpeg(subset, sizes[index], quality[index]))
        modes = random.categorical('final.resize.mode', self.resize_mode_prob)
        batch = backend.resize(batch, sizes, base_sizes, modes, (height, width))
        sinc = draw_sinc_kernels(random, 'final.sinc', kernel_sizes=self.kernel_sizes, max_size=self.kernel_range[1])
        batch = backend.apply_to_subset(batch, random.bernoulli('final.sinc.apply', self.final_sinc_prob),
                                        lambda subset, index: backend.blur(subset, base_sizes[index],
                                                                           sinc.select(index)))
        batch = backend.apply_to_subset(batch, ~jpeg_first,
                                        lambda subset, index: backend.jpeg(subset, base_sizes[index],
                                                                           quality[index]))
        return backend.unload(batch, images)

    @staticmethod
    def _noise_args(stage: Dict[str, Any]) -> Dict[str, Any]:
        return dict(gaussian_noise_prob=stage['gaussian_noise_prob'], noise_range=stage['noise_range'],
                    poisson_scale_range=stage['poisson_scale_range'], gray_noise_prob=stage['gray_noise_prob'])

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.to_dict()})'
