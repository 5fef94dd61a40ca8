"""JPEG as BasicSR's ``DiffJPEG(differentiable=False)`` computes it: the codec of the public RASS code.

The public RASS code (like Real-ESRGAN) compresses with BasicSR's DiffJPEG, which differs from libjpeg (and from
:mod:`.jpeg`) in these rules, each reproduced here:

* the image is padded with **zeros** at the bottom and right to a multiple of 16 (libjpeg repeats the edge);
* YCbCr (JFIF matrix, chroma + 128) is computed at full resolution from ``255 x``, then Cb and Cr are
  **2 x 2-averaged** (``avg_pool2d``: ``((a00 + a01) + a10) + a11`` over 4);
* each 8 x 8 block minus 128 goes through the orthonormal DCT-II, and coefficient ``(u, v)`` (``u`` vertical) is
  quantised with entry ``(v, u)`` of the Annex K table: the tables are **transposed**;
* the tables are scaled by ``factor = (5000 / q if q < 50 else 200 - 2 q) / 100`` in float32, **without**
  libjpeg's integer rounding and clipping to [1, 255], and the quotients are rounded with ``torch.round``;
* after the inverse DCT (+ 128), chroma is upsampled by **repeating** each sample 2 x 2 (libjpeg interpolates),
  converted back with the JFIF inverse matrix, clipped to [0, 255] and divided by 255 (not rounded to 8 bit).

Colour matrices are applied with exactly rounded multiplies and adds (:mod:`.color`) and the DCT as one
``bmm`` per sample, so each image's bits do not depend on the batch (DiffJPEG's ``tensordot`` goes through BLAS,
whose summation order may); the results agree with DiffJPEG's arithmetic up to float32 rounding.
"""
from typing import Tuple

import torch
import torch.nn.functional as F

from .color import JFIF_CHROMA, LUMA_WEIGHTS, mix_channels
from .jpeg import CHROMA_QUANTIZATION_TABLE, LUMA_QUANTIZATION_TABLE, code_planes, dct_basis

__all__ = ['DIFFJPEG_INVERSE_MATRIX', 'diffjpeg_factors', 'diffjpeg_tables', 'diffjpeg_ragged']

_MACROBLOCK = 16
#: JFIF YCbCr -> RGB rows on ``(Y, Cb - 128, Cr - 128)`` as DiffJPEG writes them.
DIFFJPEG_INVERSE_MATRIX = ((1.0, 0.0, 1.402), (1.0, -0.344136, -0.714136), (1.0, 1.772, 0.0))


def diffjpeg_factors(quality: torch.Tensor) -> torch.Tensor:
    """DiffJPEG's table scale per sample, float32: ``5000 / q / 100`` below quality 50, ``(200 - 2 q) / 100``
    from 50 on (quality 100 gives 0, a division by zero in the codec).

    Args:
        quality: ``(B,)`` qualities.

    Returns:
        float32 ``(B,)``.
    """
    quality = quality.to(torch.float32)
    return torch.where(quality < 50, 5000.0 / quality, 200.0 - quality * 2) / 100.0


def diffjpeg_tables(quality: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """DiffJPEG's quantisation steps: the transposed Annex K tables times :func:`diffjpeg_factors`.

    Args:
        quality: ``(B,)`` qualities below 100.

    Returns:
        ``(luma, chroma)`` float32 ``(B, 64)``, row-major over ``(u, v)`` with ``u`` the vertical frequency.
    """
    factor = diffjpeg_factors(quality).view(-1, 1)

    def scaled(table: Tuple[int, ...]) -> torch.Tensor:
        transposed = torch.tensor(table, dtype=torch.float32, device=quality.device).view(8, 8).t()
        return transposed.reshape(1, 64) * factor

    return scaled(LUMA_QUANTIZATION_TABLE), scaled(CHROMA_QUANTIZATION_TABLE)


def _zero_outside(images: torch.Tensor, sizes: torch.Tensor, canvas: Tuple[int, int]) -> torch.Tensor:
    """The canvas grown to ``canvas`` with every pixel outside an image's own region set to 0."""
    height, width = images.shape[-2:]
    padded = F.pad(images, (0, canvas[1] - width, 0, canvas[0] - height))
    rows = torch.arange(canvas[0], device=images.device).view(1, 1, -1, 1)
    columns = torch.arange(canvas[1], device=images.device).view(1, 1, 1, -1)
    inside = (rows < sizes[:, 0].view(-1, 1, 1, 1)) & (columns < sizes[:, 1].view(-1, 1, 1, 1))
    return torch.where(inside, padded, torch.zeros((), device=images.device, dtype=images.dtype))


def _average_2x2(planes: torch.Tensor) -> torch.Tensor:
    """``avg_pool2d(kernel 2, stride 2)`` in its summation order: ``((a00 + a01) + a10) + a11``, over 4."""
    total = planes[..., 0::2, 0::2] + planes[..., 0::2, 1::2]
    return total.add_(planes[..., 1::2, 0::2]).add_(planes[..., 1::2, 1::2]).div_(4.0)


def diffjpeg_ragged(images: torch.Tensor, sizes: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """DiffJPEG-compress and decode each image of a ragged batch with its own quality.

    Args:
        images: ``(B, 3, H, W)`` RGB ragged-batch canvas, clipped to [0, 1] before coding.
        sizes: ``(B, 2)`` long image sizes.
        quality: ``(B,)`` qualities below 100.

    Returns:
        ``(B, 3, H, W)`` decoded RGB in [0, 1] (not rounded to 8 bit).
    """
    height, width = images.shape[-2:]
    canvas = (-(-height // _MACROBLOCK) * _MACROBLOCK, -(-width // _MACROBLOCK) * _MACROBLOCK)
    rgb = _zero_outside(images.clamp(0.0, 1.0), sizes, canvas).mul_(255.0)
    luma = mix_channels((LUMA_WEIGHTS, ), rgb).sub_(128.0)
    chroma = _average_2x2(mix_channels(JFIF_CHROMA, rgb).add_(128.0)).sub_(128.0)
    luma_table, chroma_table = diffjpeg_tables(quality)
    basis = dct_basis(images.device)
    luma = code_planes(luma, luma_table, basis).add_(128.0)
    chroma = code_planes(chroma, chroma_table, basis).add_(128.0)
    chroma = chroma.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1).sub_(128.0)
    rgb = mix_channels(DIFFJPEG_INVERSE_MATRIX, torch.cat((luma, chroma), dim=1))
    return rgb.clamp_(0.0, 255.0).div_(255.0)[..., :height, :width]
