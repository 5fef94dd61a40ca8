"""Blur every image of a ragged batch with its own kernel, in one grouped convolution."""
import torch
from kornia.filters import filter2d

from .ragged_batch import pad_ragged

__all__ = ['blur_ragged']


def blur_ragged(images: torch.Tensor, sizes: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Correlate each image with its kernel, reflecting at the image's own border (Real-ESRGAN's ``filter2D``).

    Each image is reflect-padded around its own region (:func:`pad_ragged`), then kornia's ``filter2d`` with a
    ``(B, k, k)`` kernel runs one grouped convolution for the batch (``padding='valid'``, since the padding is
    already done per sample).

    Args:
        images: ``(B, C, H, W)`` ragged-batch canvas.
        sizes: ``(B, 2)`` long image sizes.
        kernels: ``(B, k, k)`` kernels, ``k`` odd.

    Returns:
        ``(B, C, H, W)`` blurred canvas.
    """
    half = kernels.shape[-1] // 2
    height, width = images.shape[-2:]
    padded = pad_ragged(images, sizes, half, (height + 2 * half, width + 2 * half), mode='reflect')
    return filter2d(padded, kernels.to(images.dtype), padding='valid')
