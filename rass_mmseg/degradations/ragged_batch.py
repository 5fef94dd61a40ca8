"""Images of different sizes in one tensor: a *ragged batch*.

After a random resize every sample has its own size. The batch keeps them in one ``(B, C, H, W)`` canvas, each
image in the top-left corner, with its size ``(h, w)`` in a ``(B, 2)`` long tensor. Operations read the canvas
only through per-sample index maps, so an image's result never depends on what lies outside its own region (and
so on the canvas size or on the other images). Pixels outside an image's region hold arbitrary finite values.
:func:`apply_to_subset` runs an operation on some samples of a batch only (e.g. the 80 % that get a blur).
"""
from typing import Callable, Tuple

import torch
import torch.nn.functional as F

__all__ = ['mirror_indices', 'clamp_indices', 'gather_rows', 'gather_columns', 'pad_ragged', 'apply_to_subset']


def mirror_indices(positions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reflect positions into ``[0, length)`` without repeating the edge (``F.pad(mode='reflect')`` rule).

    Positions further out than one length keep reflecting, so any length >= 1 is valid.

    Args:
        positions: ``(L,)`` long positions, possibly negative or beyond the length.
        lengths: ``(B,)`` long lengths.

    Returns:
        ``(B, L)`` long indices.
    """
    lengths = lengths.view(-1, 1)
    period = torch.clamp(2 * (lengths - 1), min=1)
    folded = torch.remainder(positions.view(1, -1), period)
    folded = torch.where(folded < lengths, folded, period - folded)
    return torch.where(lengths > 1, folded, torch.zeros_like(folded))


def clamp_indices(positions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Clamp positions into ``[0, length)`` (edge replication). Shapes as :func:`mirror_indices`."""
    return torch.minimum(positions.view(1, -1).clamp(min=0), lengths.view(-1, 1) - 1)


def gather_rows(images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Per-sample row gather: ``out[b, c, i] = images[b, c, rows[b, i]]``.

    Args:
        images: ``(B, C, H, W)``.
        rows: ``(B, L)`` long indices into ``[0, H)``.

    Returns:
        ``(B, C, L, W)``.
    """
    batch, channels, height, width = images.shape
    plane = torch.arange(batch * channels, device=images.device).view(batch, channels, 1) * height
    flat_rows = (plane + rows.view(batch, 1, -1)).reshape(-1)
    gathered = images.reshape(batch * channels * height, width).index_select(0, flat_rows)
    return gathered.view(batch, channels, rows.shape[1], width)


def gather_columns(images: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Per-sample column gather: ``out[b, c, :, j] = images[b, c, :, columns[b, j]]``.

    Args:
        images: ``(B, C, H, W)``.
        columns: ``(B, L)`` long indices into ``[0, W)``.

    Returns:
        ``(B, C, H, L)``.
    """
    batch, channels, height, _ = images.shape
    index = columns.view(batch, 1, 1, -1).expand(batch, channels, height, columns.shape[1])
    return torch.gather(images, 3, index)


def pad_ragged(images: torch.Tensor, sizes: torch.Tensor, padding: int, canvas: Tuple[int, int],
               mode: str) -> torch.Tensor:
    """Pad each image of a ragged batch around its own region.

    Args:
        images: ``(B, C, H, W)`` canvas.
        sizes: ``(B, 2)`` long image sizes ``(h, w)``.
        padding: Pixels added before the image on the top and left; the output starts ``padding`` pixels before
            each image's first row and column.
        canvas: ``(height, width)`` of the output.
        mode: ``'reflect'`` (mirror without repeating the edge) or ``'replicate'`` (repeat the edge).

    Returns:
        ``(B, C, canvas[0], canvas[1])``: sample ``b`` holds its image padded by ``padding`` on the top and left
        and by ``mode`` on the bottom and right up to the canvas.
    """
    if mode not in ('reflect', 'replicate'):
        raise ValueError(f"pad_ragged mode must be 'reflect' or 'replicate', got {mode!r}")
    height, width = images.shape[-2:]
    uniform = bool((sizes[:, 0] == height).all()) and bool((sizes[:, 1] == width).all())
    pad_bottom, pad_right = canvas[0] - padding - height, canvas[1] - padding - width
    if uniform and min(pad_bottom, pad_right) >= 0 and (mode == 'replicate' or padding < min(height, width)
                                                        and max(pad_bottom, pad_right) < min(height, width)):
        # Every image fills the canvas: torch's own padding gives the same values faster.
        return F.pad(images, (padding, pad_right, padding, pad_bottom), mode=mode)
    indices = mirror_indices if mode == 'reflect' else clamp_indices
    device = images.device
    rows = indices(torch.arange(canvas[0], device=device) - padding, sizes[:, 0])
    columns = indices(torch.arange(canvas[1], device=device) - padding, sizes[:, 1])
    return gather_columns(gather_rows(images, rows), columns)


def apply_to_subset(images: torch.Tensor, selected: torch.Tensor,
                    operation: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Run ``operation(images[index], index)`` on the selected samples only and put the results back.

    Args:
        images: ``(B, ...)`` batch.
        selected: ``(B,)`` bool.
        operation: Called with the selected samples and their long indices in the batch.

    Returns:
        The batch with the selected samples replaced.
    """
    index = torch.nonzero(selected).flatten()
    if index.numel() == 0:
        return images
    if index.numel() == images.shape[0]:
        return operation(images, index)
    return images.index_copy(0, index, operation(images.index_select(0, index), index))
