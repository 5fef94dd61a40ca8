"""The operations of the public RASS code, i.e. BasicSR's (``ops='basicsr'``, alias ``'public_rass'``), in torch.

The public RASS code degrades with BasicSR's functions, which differ from the libjpeg-faithful operations of
:class:`.TorchBackend` in three places, each replaced here:

* JPEG is BasicSR's DiffJPEG (:mod:`.diffjpeg`), which has no quality 100 (its table factor is 0 there);
* each resize is ``F.interpolate`` itself, image by image (:func:`interpolate_each`), stage 1's with
  ``scale_factor=`` as the public code calls it;
* Poisson noise takes its levels from each image's count of distinct values
  (:func:`.noise.add_distinct_poisson_noise`).

Same parameters and draws give images about 0.4 dB harsher than the libjpeg-faithful operations.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .diffjpeg import diffjpeg_ragged
from .noise import add_distinct_poisson_noise
from .random_source import RandomSource
from .resize import RESIZE_MODES
from .torch_backend import TorchBackend

__all__ = ['BasicSRTorchBackend', 'interpolate_each']


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


class BasicSRTorchBackend(TorchBackend):
    """:class:`.TorchBackend` with BasicSR's JPEG, resizes and Poisson noise (see the module docstring)."""

    ops = 'basicsr'
    scale_factor_first_resize = True

    @classmethod
    def check_jpeg_range(cls, key: str, jpeg_range: Sequence[float]) -> None:
        if jpeg_range[1] >= 100.0:
            raise ValueError(f"degradation key {key!r} must stay below 100 with ops={cls.ops!r} (DiffJPEG's table "
                             f'factor is 0 at quality 100), got {list(jpeg_range)}')

    def resize(self, batch: torch.Tensor, sizes: torch.Tensor, out_sizes: torch.Tensor, modes: torch.Tensor,
               canvas: Tuple[int, int], scales: Optional[torch.Tensor] = None) -> torch.Tensor:
        return interpolate_each(batch, sizes, out_sizes, modes, canvas, scales)

    def poisson_noise(self, batch: torch.Tensor, random: RandomSource, stream: str, scale: torch.Tensor,
                      gray: torch.Tensor, sizes: Optional[torch.Tensor] = None) -> torch.Tensor:
        return add_distinct_poisson_noise(batch, random, stream, scale, gray, sizes)

    def jpeg(self, batch: torch.Tensor, sizes: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        return diffjpeg_ragged(batch, sizes, quality)
