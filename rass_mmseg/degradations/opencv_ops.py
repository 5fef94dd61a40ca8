"""The degradation's per-image operations with OpenCV and numpy, for the CPU path (:class:`OpenCVBackend`).

Each function takes one ``(h, w, 3)`` float32 RGB image (C-contiguous) and returns a new one. They follow the
torch operations of this package rule for rule, so that the same random draws give the same images up to
floating-point rounding (JPEG aside, see :func:`jpeg_image`):

* blur: ``cv2.filter2D`` or ``cv2.sepFilter2D`` (correlations, as ``F.conv2d``) with ``BORDER_REFLECT_101``,
  which is torch's ``'reflect'`` padding, on the kernel cropped to its support (see :func:`blur_image`);
* resize: ``cv2.resize`` for ``bilinear`` / ``bicubic`` (OpenCV and torch share the half-pixel mapping, the Keys
  kernel with ``A = -0.75`` and edge clamping); ``area`` follows torch's ``adaptive_avg_pool`` windows
  ``[floor(i * in / out), ceil((i + 1) * in / out))`` (numpy row gathers, ``cv2.remap`` when upscaling),
  because OpenCV's ``INTER_AREA`` weights fractional overlaps instead and upsamples differently;
* noise: numpy element-wise operations in the order of :mod:`.noise` (identical bits for identical inputs);
* JPEG: libjpeg(-turbo) through ``cv2.imencode`` / ``cv2.imdecode``, a real codec: 8-bit input and output,
  integer quality.
"""
import math
from typing import Tuple

import cv2
import numpy as np
from scipy.special import j1

from .blur_kernels import BlurKernelDraws
from .color import LUMA_WEIGHTS

__all__ = [
    'blur_kernels_numpy', 'crop_kernel', 'blur_image', 'area_resize', 'resize_image', 'luma_image', 'jpeg_image',
    'to_8bit'
]

_FLOAT = np.float32
#: Absolute kernel mass that blur_image may leave out when it crops a kernel (see there).
_NEGLIGIBLE_MASS = 1e-7
#: Frobenius distance within which blur_image replaces a kernel by a sum of separable kernels.
_SEPARABLE_TOLERANCE = 1e-8
#: cv2 interpolation flags of the modes cv2 computes as torch does (``area``: :func:`area_resize`).
_CV2_MODES = {'bilinear': cv2.INTER_LINEAR, 'bicubic': cv2.INTER_CUBIC}
#: Decode straight to RGB where OpenCV can (4.10 and later).
_IMREAD_COLOR_RGB = getattr(cv2, 'IMREAD_COLOR_RGB', None)


def blur_kernels_numpy(draws: BlurKernelDraws) -> np.ndarray:
    """The kernels of the draws built in float64 with numpy, as :func:`.blur_kernels.blur_kernels_from_draws`
    builds them with torch (same formulas; float64 keeps the two within float32 rounding of each other).

    On a CPU, torch runs its transcendental functions (``exp``, ``pow``, ``sqrt``, Bessel) in parallel from a few
    dozen elements on, and waking its threads costs more than the arithmetic; numpy runs them in the caller's
    thread.

    Args:
        draws: The draws (CPU tensors).

    Returns:
        float64 ``(B, max_size, max_size)``, each kernel summing to 1 (the torch kernels are these rounded to
        float32).
    """
    size = draws.max_size
    axis = np.arange(size, dtype=np.float64) - size // 2
    y, x = np.meshgrid(axis, axis, indexing='ij')
    radius = (draws.sizes.numpy() // 2).astype(np.float64).reshape(-1, 1, 1)
    support = (np.abs(x) <= radius) & (np.abs(y) <= radius)

    distance = np.sqrt(x**2 + y**2)
    cutoff = draws.cutoff.numpy().astype(np.float64).reshape(-1, 1, 1)
    safe = np.where(distance > 0, distance, 1.0)
    kernels = np.where(distance > 0, cutoff * j1(cutoff * safe) / (2 * math.pi * safe), cutoff**2 / (4 * math.pi))
    if draws.sigma_x is not None:
        theta = draws.theta.numpy().astype(np.float64).reshape(-1, 1, 1)
        cos, sin = np.cos(theta), np.sin(theta)
        along = cos * x + sin * y
        across = cos * y - sin * x
        quadratic = ((along / draws.sigma_x.numpy().astype(np.float64).reshape(-1, 1, 1))**2 +
                     (across / draws.sigma_y.numpy().astype(np.float64).reshape(-1, 1, 1))**2)
        powered = quadratic**draws.beta.numpy().astype(np.float64).reshape(-1, 1, 1)
        family = np.where(draws.plateau.numpy().reshape(-1, 1, 1), 1.0 / (powered + 1.0), np.exp(-0.5 * powered))
        kernels = np.where(draws.sinc.numpy().reshape(-1, 1, 1), kernels, family)
    kernels = kernels * support
    return kernels / kernels.sum(axis=(1, 2), keepdims=True)


def crop_kernel(kernel: np.ndarray, negligible: float = 0.0) -> np.ndarray:
    """The smallest centred odd square of ``kernel`` outside which the absolute mass is at most ``negligible``.

    Args:
        kernel: ``(k, k)`` kernel, ``k`` odd.
        negligible: Absolute mass that may be left out (0: only exact zeros).

    Returns:
        ``(k', k')`` view of the kernel, ``k'`` odd.
    """
    centre = kernel.shape[0] // 2
    magnitude = np.abs(kernel)
    # Absolute mass inside the centred square of half-width h, for every h.
    ring = np.maximum(np.abs(np.arange(kernel.shape[0]) - centre)[:, None],
                      np.abs(np.arange(kernel.shape[0]) - centre)[None, :])
    inside = np.cumsum(np.bincount(ring.ravel(), weights=magnitude.ravel(), minlength=centre + 1))
    outside = inside[-1] - inside
    half = int(np.argmax(outside <= negligible))
    return kernel[centre - half:centre + half + 1, centre - half:centre + half + 1]


def _separable_terms(kernel: np.ndarray, tolerance: float) -> Tuple[np.ndarray, np.ndarray]:
    """Columns and rows of the shortest sum of rank-1 kernels (SVD) within ``tolerance`` (Frobenius) of it."""
    columns, values, rows = np.linalg.svd(kernel)
    tail = np.sqrt(np.cumsum((values**2)[::-1]))[::-1]  # tail[r]: Frobenius norm of what terms r.. add
    rank = int(np.argmax(np.append(tail, 0.0) <= tolerance))
    scale = np.sqrt(values[:max(rank, 1)])
    return columns[:, :max(rank, 1)] * scale, rows[:max(rank, 1)] * scale[:, None]


def _filter_cost(size: int, rank: int) -> Tuple[float, float]:
    """Rough costs (ms for 512 x 512 x 3 on one core) of ``filter2D`` and of ``rank`` ``sepFilter2D`` calls.

    ``filter2D`` convolves directly below 13 x 13 (time ~ k**2) and switches to a DFT from 13 x 13 on, which
    costs about as much as a direct 21 x 21 whatever k; a ``sepFilter2D`` costs ~ k, plus an add per extra term.
    """
    direct = 0.028 * size**2 if size < 13 else 20.0
    return direct, rank * (0.3 + 0.09 * size) + (rank - 1) * 0.15


def blur_image(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate an image with a kernel, reflecting at the border without repeating the edge.

    The kernel is cropped to the centred square outside which its absolute mass is below 1e-7 (1e-7 of a
    kernel that sums to 1 changes a pixel by at most 1e-7 of the image range, float32's rounding), then run as
    the shortest sum of separable (rank-1) kernels within 1e-8 Frobenius when that is cheaper than
    ``filter2D``: an isotropic Gaussian is one ``sepFilter2D``, and ``filter2D``'s DFT path for kernels from
    13 x 13 on costs as much as ~8 separable passes.

    Args:
        image: ``(h, w, 3)`` float32.
        kernel: ``(k, k)`` kernel (float64 or float32), ``k`` odd.

    Returns:
        ``(h, w, 3)`` float32.
    """
    kernel = crop_kernel(np.asarray(kernel, dtype=np.float64), _NEGLIGIBLE_MASS)
    size = kernel.shape[0]
    if size == 1:
        return image * _FLOAT(kernel[0, 0])
    columns, rows = _separable_terms(kernel, _SEPARABLE_TOLERANCE)
    direct, separable = _filter_cost(size, columns.shape[1])
    if direct <= separable:
        return cv2.filter2D(image, -1, kernel.astype(_FLOAT), borderType=cv2.BORDER_REFLECT_101)
    output = None
    for column, row in zip(columns.T.astype(_FLOAT), rows.astype(_FLOAT)):
        term = cv2.sepFilter2D(image, -1, row, column, borderType=cv2.BORDER_REFLECT_101)
        output = term if output is None else cv2.add(output, term, dst=output)
    return output


def _area_windows(in_len: int, out_len: int) -> Tuple[np.ndarray, np.ndarray]:
    """Torch's ``adaptive_avg_pool`` windows ``[floor(i * in / out), ceil((i + 1) * in / out))``: starts and
    lengths, int64 ``(out_len,)``."""
    positions = np.arange(out_len, dtype=np.int64)
    start = positions * in_len // out_len
    end = -((-(positions + 1) * in_len) // out_len)
    return start, end - start


def _area_rows(image: np.ndarray, out_len: int) -> np.ndarray:
    """Area-resize the rows (axis 0) of an ``(h, w, c)`` image: output row ``i`` is the mean of its window's rows
    (row gathers of contiguous memory, one per tap)."""
    in_len = image.shape[0]
    if in_len == out_len:
        return image
    start, window = _area_windows(in_len, out_len)
    weights = (1.0 / window.astype(_FLOAT)).astype(_FLOAT)
    output = None
    for tap in range(int(window.max())):
        term = image[np.minimum(start + tap, in_len - 1)]
        term *= np.where(tap < window, weights, _FLOAT(0.0))[:, None, None]
        output = term if output is None else np.add(output, term, out=output)
    return output


def _area_upscale(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area upscaling (no axis shrinks): every window holds one or two inputs, so the output is a bilinear sample
    at the window's centre with weights 0, 1/2 or 1, which ``cv2.remap`` computes exactly (its 1/32 weight grid
    holds them)."""

    def centres(in_len: int, out_len: int) -> np.ndarray:
        start, window = _area_windows(in_len, out_len)
        return (start + np.where(window == 2, 0.5, 0.0)).astype(_FLOAT)

    rows, columns = centres(image.shape[0], height), centres(image.shape[1], width)
    map_x = np.ascontiguousarray(np.broadcast_to(columns[None, :], (height, width)))
    map_y = np.ascontiguousarray(np.broadcast_to(rows[:, None], (height, width)))
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Torch's ``area`` resize (``adaptive_avg_pool``): output ``(i, j)`` is the mean of the inputs in the rows
    ``[floor(i * h / height), ceil((i + 1) * h / height))`` and the columns likewise.

    Args:
        image: ``(h, w, 3)`` float32.
        height: Output height.
        width: Output width.

    Returns:
        ``(height, width, 3)`` float32, C-contiguous.
    """
    if height >= image.shape[0] and width >= image.shape[1]:
        return _area_upscale(image, height, width)
    # Rows, then the columns as the rows of the transposed image (cv2.transpose keeps the channels together).
    return np.ascontiguousarray(cv2.transpose(_area_rows(np.ascontiguousarray(cv2.transpose(_area_rows(image,
                                                                                                       height))),
                                                         width)))


def resize_image(image: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    """Resize to ``(height, width)`` as ``F.interpolate(size=..., mode=mode, align_corners=False)`` does.

    Args:
        image: ``(h, w, 3)`` float32.
        height: Output height.
        width: Output width.
        mode: ``'area'``, ``'bilinear'`` or ``'bicubic'``.

    Returns:
        ``(height, width, 3)`` float32, C-contiguous.
    """
    if image.shape[:2] == (height, width):
        return image.copy()
    if mode == 'area':
        return area_resize(image, height, width)
    return cv2.resize(image, (width, height), interpolation=_CV2_MODES[mode])


def luma_image(image: np.ndarray) -> np.ndarray:
    """BT.601 luma ``(h, w)`` of an RGB image, one exactly rounded multiply or add at a time (as
    :func:`.color.rgb_to_luma`, so the bits agree)."""
    luma = image[..., 0] * _FLOAT(LUMA_WEIGHTS[0])
    luma += image[..., 1] * _FLOAT(LUMA_WEIGHTS[1])
    luma += image[..., 2] * _FLOAT(LUMA_WEIGHTS[2])
    return luma


def jpeg_image(image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG-encode and decode with OpenCV's libjpeg-turbo (4:2:0, its default settings).

    The image is clipped to [0, 1] and rounded to 8 bit before coding (an encoder's input), and the decoded
    8-bit image is returned as float32 in [0, 1].

    Args:
        image: ``(h, w, 3)`` float32 RGB.
        quality: Integer JPEG quality in [1, 100].

    Returns:
        ``(h, w, 3)`` float32 RGB, multiples of 1/255.
    """
    levels = to_8bit(image)
    ok, encoded = cv2.imencode('.jpg', cv2.cvtColor(levels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f'OpenCV could not JPEG-encode an image of shape {image.shape}')
    if _IMREAD_COLOR_RGB is None:  # OpenCV before 4.10
        decoded = cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    else:
        decoded = cv2.imdecode(encoded, _IMREAD_COLOR_RGB)
    decoded = decoded.astype(_FLOAT)
    decoded /= _FLOAT(255.0)
    return decoded


def to_8bit(image: np.ndarray) -> np.ndarray:
    """``round(255 * clip(x, 0, 1))`` as uint8, rounding half to even as ``torch.round`` does.

    Args:
        image: float32 array with 1 to 4 channels in its last axis (or 2-D).

    Returns:
        uint8 array of the same shape.
    """
    # convertScaleAbs is saturate(cvRound(|255 x|)) with the product in float32; x >= 0 once clipped.
    return cv2.convertScaleAbs(np.clip(image, 0.0, 1.0), alpha=255.0).reshape(image.shape)
