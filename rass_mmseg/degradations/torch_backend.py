"""The degradation's operations as batched torch code on a ragged-batch canvas (any device; the GPU path).

Two sets of operations (the ``ops`` key of :class:`SecondOrderDegradation`):

* ``'libjpeg'``: a libjpeg-faithful JPEG (:mod:`.jpeg`), every resize on ``F.interpolate(size=...)``'s grid,
  Poisson noise on 256 levels;
* ``'public_rass'``: the operations of the public RASS code (BasicSR's): DiffJPEG (:mod:`.diffjpeg`), each resize
  by ``F.interpolate`` itself, image by image (the first stage's with ``scale_factor=``, as the public code
  calls it), Poisson levels from each image's count of distinct values (:func:`.noise.add_distinct_poisson_noise`).
"""
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F

from .blur import blur_ragged
from .blur_kernels import BlurKernelDraws, blur_kernels_from_draws
from .degradation_backend import DegradationBackend
from .diffjpeg import diffjpeg_ragged
from .jpeg import jpeg_ragged
from .noise import add_distinct_poisson_noise, add_gaussian_noise, add_poisson_noise
from .ragged_batch import apply_to_subset
from .random_source import RandomSource
from .resize import RESIZE_MODES, resize_ragged

__all__ = ['OPS', 'TorchBackend', 'quantize_to_8bit']

#: Values of the ``ops`` key: the libjpeg-faithful operations and those of the public RASS code.
OPS: Tuple[str, ...] = ('libjpeg', 'public_rass')


def quantize_to_8bit(images: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to multiples of 1/255 (``+ 0.0`` turns a -0.0 into 0.0, for identical bits)."""
    return images.clamp(0.0, 1.0).mul_(255.0).round_().div_(255.0).add_(0.0)


def interpolate_each(images: torch.Tensor, sizes: torch.Tensor, out_sizes: torch.Tensor, modes: torch.Tensor,
                     canvas: Tuple[int, int], scales: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Resize each image of a ragged batch with ``F.interpolate`` itself, one call per image: with
    ``scale_factor=scale`` where ``scales`` are given, else with ``size=``.

    Args:
        images: ``(B, C, H, W)`` ragged-batch canvas.
        sizes: ``(B, 2)`` current sizes.
        out_sizes: ``(B, 2)`` target sizes (``floor(size * scale)`` where ``scales`` are given).
        modes: ``(B,)`` indices into :data:`RESIZE_MODES`.
        canvas: ``(height, width)`` of the output canvas.
        scales: ``(B,)`` float64 scale factors, or ``None``.

    Returns:
        ``(B, C, canvas[0], canvas[1])``; outside each image's region the canvas is 0.
    """
    output = images.new_zeros((images.shape[0], images.shape[1], *canvas))
    for index, ((height, width), (out_height, out_width), mode) in enumerate(
            zip(sizes.tolist(), out_sizes.tolist(), modes.tolist())):
        image = images[index:index + 1, :, :height, :width]
        options = {} if RESIZE_MODES[mode] == 'area' else dict(align_corners=False)
        scale = None if scales is None else float(scales[index])
        if scale is not None and min(out_height, out_width) >= 1 and (out_height, out_width) == (
                int(height * scale), int(width * scale)):
            resized = F.interpolate(image, scale_factor=scale, mode=RESIZE_MODES[mode], **options)
        else:
            resized = F.interpolate(image, size=(out_height, out_width), mode=RESIZE_MODES[mode], **options)
        output[index, :, :out_height, :out_width] = resized[0]
    return output


class TorchBackend(DegradationBackend):
    """Every operation batched over a ``(B, 3, H, W)`` ragged-batch canvas (see :mod:`.ragged_batch`), each
    image's result independent of the rest of the batch.

    Args:
        ops: ``'libjpeg'`` or ``'public_rass'`` (see the module docstring).
    """

    name = 'torch'

    def __init__(self, ops: str = 'libjpeg') -> None:
        if ops not in OPS:
            raise ValueError(f"degradation key 'ops' must be one of {list(OPS)}, got {ops!r}")
        self.ops = ops

    def load(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def unload(self, batch: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return quantize_to_8bit(batch)

    def blur(self, batch: torch.Tensor, sizes: torch.Tensor, kernels: BlurKernelDraws) -> torch.Tensor:
        return blur_ragged(batch, sizes, blur_kernels_from_draws(kernels))

    def resize(self, batch: torch.Tensor, sizes: torch.Tensor, out_sizes: torch.Tensor, modes: torch.Tensor,
               canvas: Tuple[int, int], scales: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.ops == 'public_rass':
            return interpolate_each(batch, sizes, out_sizes, modes, canvas, scales)
        return resize_ragged(batch, sizes, out_sizes, modes, canvas, scales)

    def gaussian_noise(self, batch: torch.Tensor, random: RandomSource, stream: str, sigma: torch.Tensor,
                       gray: torch.Tensor) -> torch.Tensor:
        return add_gaussian_noise(batch, random, stream, sigma, gray)

    def poisson_noise(self, batch: torch.Tensor, random: RandomSource, stream: str, scale: torch.Tensor,
                      gray: torch.Tensor, sizes: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.ops == 'public_rass':
            return add_distinct_poisson_noise(batch, random, stream, scale, gray, sizes)
        return add_poisson_noise(batch, random, stream, scale, gray)

    def clamp(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.clamp(0.0, 1.0)

    def jpeg(self, batch: torch.Tensor, sizes: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        if self.ops == 'public_rass':
            return diffjpeg_ragged(batch, sizes, quality)
        return jpeg_ragged(batch, sizes, quality)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(ops={self.ops!r})'

    def apply_to_subset(self, batch: torch.Tensor, selected: torch.Tensor,
                        operation: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return apply_to_subset(batch, selected, operation)
