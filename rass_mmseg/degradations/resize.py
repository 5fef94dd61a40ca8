"""Resize every image of a ragged batch to its own size with its own interpolation mode, in one pass per axis.

Why not ``F.interpolate`` / kornia's resize: both resize a whole batch to one size. Real-ESRGAN's batched
pipeline therefore draws one scale per batch; here every sample gets its own scale and mode. Resizing is
separable, so each axis is a sum over a few taps ``out[i] = sum_t w[i, t] * in[idx[i, t]]`` with per-sample
indices and weights that follow ``F.interpolate``'s ``align_corners=False`` rules:

* ``bilinear``: two taps at ``src = max((i + 0.5) * in / out - 0.5, 0)``;
* ``bicubic``: four taps around ``src = (i + 0.5) * in / out - 0.5``, Keys kernel with ``A = -0.75``, indices
  clamped to the image;
* ``area``: the window ``[floor(i * in / out), ceil((i + 1) * in / out))`` averaged (``adaptive_avg_pool``).

Taps are accumulated with separate multiplies and adds, never fused (see :mod:`.color`).
"""
from typing import NamedTuple, Optional, Sequence, Tuple

import torch

from .ragged_batch import gather_columns, gather_rows
from .random_source import RandomSource

__all__ = ['RESIZE_MODES', 'ResizeDraws', 'resize_taps', 'resize_ragged', 'draw_resize']

#: Interpolation modes, in the order of the ``resize_mode_prob`` entries.
RESIZE_MODES: Tuple[str, ...] = ('area', 'bilinear', 'bicubic')
_BICUBIC_A = -0.75


def _bilinear_taps(source: torch.Tensor, in_len: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    source = source.clamp(min=0)
    first = torch.minimum(source.floor().long(), in_len - 1)
    fraction = (source - first.to(source.dtype)).clamp(0, 1)
    second = torch.minimum(first + 1, in_len - 1)
    return torch.stack((first, second), -1), torch.stack((1 - fraction, fraction), -1)


def _bicubic_taps(source: torch.Tensor, in_len: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    first = source.floor()
    t = source - first
    a = _BICUBIC_A

    def near(x: torch.Tensor) -> torch.Tensor:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: torch.Tensor) -> torch.Tensor:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weights = torch.stack((far(t + 1), near(t), near(1 - t), far(2 - t)), -1)
    offsets = torch.arange(-1, 3, device=source.device)
    indices = torch.minimum((first.long().unsqueeze(-1) + offsets).clamp(min=0), in_len.unsqueeze(-1) - 1)
    return indices, weights


def _area_taps(positions: torch.Tensor, in_len: torch.Tensor,
               out_len: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    start = torch.div(positions * in_len, out_len, rounding_mode='floor')
    end = torch.div((positions + 1) * in_len + out_len - 1, out_len, rounding_mode='floor')
    window = (end - start).clamp(min=1)
    num_taps = int(window.max())
    offsets = torch.arange(num_taps, device=positions.device)
    indices = torch.minimum(start.unsqueeze(-1) + offsets, in_len.unsqueeze(-1) - 1)
    inside = offsets < window.unsqueeze(-1)
    weights = torch.where(inside, 1.0 / window.unsqueeze(-1).to(torch.float32), torch.zeros((), device=start.device))
    return indices, weights


def _pad_taps(indices: torch.Tensor, weights: torch.Tensor, num_taps: int) -> Tuple[torch.Tensor, torch.Tensor]:
    missing = num_taps - indices.shape[-1]
    if missing == 0:
        return indices, weights
    # Extra taps come last with weight 0: adding them leaves every sum unchanged.
    indices = torch.cat((indices, indices[..., :1].expand(*indices.shape[:-1], missing)), -1)
    return indices, torch.cat((weights, weights.new_zeros(*weights.shape[:-1], missing)), -1)


def resize_taps(in_len: torch.Tensor, out_len: torch.Tensor, canvas: int, modes: torch.Tensor,
                scales: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-sample taps of a 1-D resize from ``in_len`` to ``out_len`` samples.

    Args:
        in_len: ``(B,)`` long input lengths.
        out_len: ``(B,)`` long output lengths.
        canvas: Number of output positions computed (at least ``out_len.max()``; extra positions are filler).
        modes: ``(B,)`` long indices into :data:`RESIZE_MODES`.
        scales: ``(B,)`` float64 scale factors: ``bilinear`` and ``bicubic`` then sample at
            ``(i + 0.5) * float32(1 / scale) - 0.5`` as ``F.interpolate(scale_factor=scale)`` does, instead of
            ``(i + 0.5) * in / out - 0.5`` (``F.interpolate(size=out)``); ``area`` depends on the sizes only.

    Returns:
        ``(indices, weights)``: long and float32 tensors ``(B, canvas, T)``.
    """
    in_len, out_len = in_len.view(-1, 1), out_len.view(-1, 1)
    positions = torch.arange(canvas, device=in_len.device).view(1, -1)
    if scales is None:
        ratio = in_len.to(torch.float32) / out_len.to(torch.float32)
    else:  # torch's compute_scales_value: static_cast<float>(1.0 / scale)
        ratio = (1.0 / scales.to(torch.float64)).to(torch.float32).view(-1, 1)
    source = (positions.to(torch.float32) + 0.5) * ratio - 0.5
    taps = [
        _area_taps(positions, in_len, out_len),
        _bilinear_taps(source, in_len),
        _bicubic_taps(source, in_len),
    ]
    num_taps = max(indices.shape[-1] for indices, _ in taps)
    taps = [_pad_taps(indices, weights, num_taps) for indices, weights in taps]
    selected_indices, selected_weights = taps[0]
    for code, (indices, weights) in enumerate(taps[1:], start=1):
        chosen = (modes == code).view(-1, 1, 1)
        selected_indices = torch.where(chosen, indices, selected_indices)
        selected_weights = torch.where(chosen, weights, selected_weights)
    return selected_indices, selected_weights


def resize_ragged(images: torch.Tensor, sizes: torch.Tensor, out_sizes: torch.Tensor, modes: torch.Tensor,
                  canvas: Tuple[int, int], scales: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Resize each image of a ragged batch to its own size with its own mode (rows first, then columns).

    Args:
        images: ``(B, C, H, W)`` ragged-batch canvas.
        sizes: ``(B, 2)`` long current image sizes.
        out_sizes: ``(B, 2)`` long target sizes.
        modes: ``(B,)`` long indices into :data:`RESIZE_MODES`.
        canvas: ``(height, width)`` of the output canvas, at least the largest target size.
        scales: ``(B,)`` float64 scale factors for ``F.interpolate(scale_factor=...)``'s sampling grid (see
            :func:`resize_taps`), else ``None``.

    Returns:
        ``(B, C, canvas[0], canvas[1])`` ragged-batch canvas holding the resized images.
    """
    row_indices, row_weights = resize_taps(sizes[:, 0], out_sizes[:, 0], canvas[0], modes, scales)
    resized = None
    for tap in range(row_indices.shape[-1]):
        term = gather_rows(images, row_indices[..., tap])
        weight = row_weights[:, None, :, tap, None].to(images.dtype)
        resized = term * weight if resized is None else resized.add_(term * weight)
    column_indices, column_weights = resize_taps(sizes[:, 1], out_sizes[:, 1], canvas[1], modes, scales)
    output = None
    for tap in range(column_indices.shape[-1]):
        term = gather_columns(resized, column_indices[..., tap])
        weight = column_weights[:, None, None, :, tap].to(images.dtype)
        output = term * weight if output is None else output.add_(term * weight)
    return output


class ResizeDraws(NamedTuple):
    """One random resize per sample: ``out_sizes`` ``(B, 2)`` long, ``modes`` ``(B,)`` long indices into
    :data:`RESIZE_MODES`, ``scales`` ``(B,)`` float64 (``out_sizes = max(floor(base * scale), 1)``)."""

    out_sizes: torch.Tensor
    modes: torch.Tensor
    scales: torch.Tensor


def draw_resize(random: RandomSource, stream: str, base_sizes: torch.Tensor, updown_probs: Sequence[float],
                scale_range: Sequence[float], mode_probs: Sequence[float]) -> ResizeDraws:
    """Draw Real-ESRGAN's random resize of each sample: up, down or keep, then a scale and a mode.

    Args:
        random: Source of the per-sample draws.
        stream: Prefix of the stream names.
        base_sizes: ``(B, 2)`` long sizes the scale applies to.
        updown_probs: Probabilities of up / down / keep.
        scale_range: ``(low, high)``; up draws from ``[1, high]``, down from ``[low, 1]``.
        mode_probs: Probabilities of the modes of :data:`RESIZE_MODES`.

    Returns:
        The draws; sizes are ``floor(base * scale)``, at least 1.
    """
    direction = random.categorical(f'{stream}.direction', updown_probs)
    up = random.uniform_range(f'{stream}.up', 1.0, scale_range[1])
    down = random.uniform_range(f'{stream}.down', scale_range[0], 1.0)
    scale = torch.where(direction == 0, up, torch.where(direction == 1, down, torch.ones_like(up))).to(torch.float64)
    out_sizes = (base_sizes.to(torch.float64) * scale.view(-1, 1)).floor().long().clamp(min=1)
    return ResizeDraws(out_sizes, random.categorical(f'{stream}.mode', mode_probs), scale)

