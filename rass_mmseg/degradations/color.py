"""Linear colour transforms (luma, JFIF YCbCr) written with plain element-wise multiplies and adds.

Why not kornia's ``rgb_to_grayscale`` / ``rgb_to_ycbcr``: they accumulate with ``torch.addcmul``, a fused
multiply-add. On the CPU torch runs a fused multiply-add in the vectorised part of a loop and a separate
multiply and add in its scalar remainder, so the last bits of a pixel depend on where the loop splits the tensor,
that is on the batch size and the number of threads. A multiply and an add are each exactly rounded on both
paths, so the result here only depends on the pixel. (kornia's transforms also cost more passes over the image.)
"""
from typing import Sequence

import torch

__all__ = ['LUMA_WEIGHTS', 'JFIF_CHROMA', 'JFIF_INVERSE_CHROMA', 'mix_channels', 'rgb_to_luma']

#: ITU-R BT.601 luma weights of R, G, B (also JFIF's Y and Real-ESRGAN's gray noise).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
#: JFIF (ITU-T T.871) Cb and Cr rows from R, G, B, without their +128 offset (it cancels JPEG's level shift).
JFIF_CHROMA = ((-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
#: The chroma part of R, G, B from (Cb, Cr) in JFIF's inverse transform (each also adds Y).
JFIF_INVERSE_CHROMA = ((0.0, 1.402), (-0.344136, -0.714136), (1.772, 0.0))


def mix_channels(matrix: Sequence[Sequence[float]], planes: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``out[:, k] = scale * sum_c matrix[k][c] * planes[:, c]``, one exactly rounded operation at a time.

    Args:
        matrix: ``K`` rows of ``C`` coefficients.
        planes: ``(B, C, H, W)``.
        scale: Factor folded into the coefficients.

    Returns:
        ``(B, K, H, W)``.
    """
    outputs = []
    for row in matrix:
        mixed = None
        for channel, coefficient in enumerate(row):
            if coefficient == 0.0:
                continue
            term = planes[:, channel] * (coefficient * scale)
            mixed = term if mixed is None else mixed.add_(term)
        outputs.append(mixed)
    return torch.stack(outputs, dim=1)


def rgb_to_luma(images: torch.Tensor) -> torch.Tensor:
    """BT.601 luma ``(B, 1, H, W)`` of RGB images ``(B, 3, H, W)``."""
    return mix_channels((LUMA_WEIGHTS, ), images)
