"""The libjpeg-faithful operations (``ops='libjpeg'``) as batched torch code on a ragged-batch canvas (any device;
the GPU path): a libjpeg-faithful JPEG (:mod:`.jpeg`), every resize on ``F.interpolate(size=...)``'s grid
(:mod:`.resize`), Poisson noise on 256 levels. :class:`.BasicSRTorchBackend` swaps in BasicSR's operations.
"""
from typing import Callable, Optional, Tuple

import torch

from .blur import blur_ragged
from .blur_kernels import BlurKernelDraws, blur_kernels_from_draws
from .degradation_backend import DegradationBackend
from .jpeg import jpeg_ragged
from .noise import add_gaussian_noise, add_poisson_noise
from .ragged_batch import apply_to_subset
from .random_source import RandomSource
from .resize import resize_ragged

__all__ = ['TorchBackend', 'quantize_to_8bit']


def quantize_to_8bit(images: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to multiples of 1/255 (``+ 0.0`` turns a -0.0 into 0.0, for identical bits)."""
    return images.clamp(0.0, 1.0).mul_(255.0).round_().div_(255.0).add_(0.0)


class TorchBackend(DegradationBackend):
    """The libjpeg-faithful operations batched over a ``(B, 3, H, W)`` ragged-batch canvas (see
    :mod:`.ragged_batch`), each image's result independent of the rest of the batch."""

    name = 'torch'
    ops = 'libjpeg'

    def load(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def unload(self, batch: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return quantize_to_8bit(batch)

    def blur(self, batch: torch.Tensor, sizes: torch.Tensor, kernels: BlurKernelDraws) -> torch.Tensor:
        return blur_ragged(batch, sizes, blur_kernels_from_draws(kernels))

    def resize(self, batch: torch.Tensor, sizes: torch.Tensor, out_sizes: torch.Tensor, modes: torch.Tensor,
               canvas: Tuple[int, int], scales: Optional[torch.Tensor] = None) -> torch.Tensor:
        return resize_ragged(batch, sizes, out_sizes, modes, canvas, scales)

    def gaussian_noise(self, batch: torch.Tensor, random: RandomSource, stream: str, sigma: torch.Tensor,
                       gray: torch.Tensor) -> torch.Tensor:
        return add_gaussian_noise(batch, random, stream, sigma, gray)

    def poisson_noise(self, batch: torch.Tensor, random: RandomSource, stream: str, scale: torch.Tensor,
                      gray: torch.Tensor, sizes: Optional[torch.Tensor] = None) -> torch.Tensor:
        return add_poisson_noise(batch, random, stream, scale, gray)

    def clamp(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.clamp(0.0, 1.0)

    def jpeg(self, batch: torch.Tensor, sizes: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        return jpeg_ragged(batch, sizes, quality)

    def apply_to_subset(self, batch: torch.Tensor, selected: torch.Tensor,
                        operation: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return apply_to_subset(batch, selected, operation)
