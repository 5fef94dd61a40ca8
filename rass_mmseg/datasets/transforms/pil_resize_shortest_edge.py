"""detectron2's test-time ``ResizeShortestEdge``: detectron2's output size, resized by PIL (antialiased).

The public RASS code tests with detectron2's default test mapper, i.e. ``ResizeShortestEdge(MIN_SIZE_TEST=512,
MAX_SIZE_TEST=2048)``. It computes the output size in floating point (short side to ``short_edge_length``, then
the long side scaled down to ``max_size`` if it exceeds it, each side rounded half up) and resizes a uint8 image with
``PIL.Image.resize(..., BILINEAR)``, which low-pass filters when it shrinks. mmseg's ``Resize`` (OpenCV bilinear)
does not filter: on ADE20K images the two differ by up to 29 grey levels in most pixels. :class:`PILResizeShortestEdge`
does what detectron2 does, for test pipelines that should see the public code's pixels.
"""
from typing import Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS
from PIL import Image

__all__ = ['PILResizeShortestEdge', 'shortest_edge_output_shape']

_INTERPOLATIONS = {'nearest': Image.NEAREST, 'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC}


def shortest_edge_output_shape(height: int, width: int, short_edge_length: int, max_size: int) -> Tuple[int, int]:
    """(new height, new width) as detectron2's ``ResizeShortestEdge.get_output_shape`` computes it.

    Args:
        height: Input height.
        width: Input width.
        short_edge_length: Target length of the short side.
        max_size: Largest allowed long side; the whole image is scaled down further when it is exceeded.
    """
    size = float(short_edge_length)
    scale = size / min(height, width)
    new_h, new_w = (size, scale * width) if height < width else (scale * height, size)
    if max(new_h, new_w) > max_size:
        scale = max_size * 1.0 / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def _pil_resize(array: np.ndarray, size: Tuple[int, int], resample: int) -> np.ndarray:
    """Resize a uint8 (H, W) or (H, W, C) array with PIL to ``size`` = (height, width), as detectron2 does."""
    single = array.ndim == 3 and array.shape[2] == 1
    image = Image.fromarray(array[:, :, 0] if single else array)
    resized = np.asarray(image.resize((size[1], size[0]), resample))
    return resized[:, :, None] if single else resized


@TRANSFORMS.register_module()
class PILResizeShortestEdge(BaseTransform):
    """Resize the short side to ``short_edge_length`` (long side at most ``max_size``) with PIL, as detectron2.

    Required keys: ``img`` (uint8, (H, W) or (H, W, C), any channel order), optionally the maps named in
    ``seg_fields`` (uint8). Modified keys: ``img``, ``img_shape``, the ``seg_fields`` maps (PIL nearest). Added
    keys: ``scale`` ((w, h) of the output), ``scale_factor`` ((w_scale, h_scale), as mmseg's ``Resize``),
    ``keep_ratio`` (True).

    Args:
        short_edge_length: Target short side (detectron2's ``INPUT.MIN_SIZE_TEST``; 512 for ADE20K).
        max_size: Largest long side (``INPUT.MAX_SIZE_TEST``; 2048 for ADE20K).
        interpolation: PIL filter for the image: ``'bilinear'`` (detectron2's), ``'bicubic'`` or ``'nearest'``.
    """

    def __init__(self, short_edge_length: int = 512, max_size: int = 2048, interpolation: str = 'bilinear') -> None:
        for key, value in (('short_edge_length', short_edge_length), ('max_size', max_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'PILResizeShortestEdge {key} must be a positive int, got {value!r}')
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(f'PILResizeShortestEdge interpolation must be one of {sorted(_INTERPOLATIONS)}, got '
                             f'{interpolation!r}')
        self.short_edge_length = short_edge_length
        self.max_size = max_size
        self.interpolation = interpolation

    def transform(self, results: dict) -> dict:
        """Resize ``results['img']`` (and its segmentation maps) to detectron2's test size."""
        img = results['img']
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim not in (2, 3):
            got = f'{img.dtype} array of shape {img.shape}' if isinstance(img, np.ndarray) else type(img).__name__
            raise ValueError(f'PILResizeShortestEdge: {results.get("img_path", "the image")} must be a uint8 (H, W) or '
                             f'(H, W, C) array (LoadImageFromFile without to_float32), got a {got}')
        height, width = img.shape[:2]
        new_h, new_w = shortest_edge_output_shape(height, width, self.short_edge_length, self.max_size)
        results['img'] = _pil_resize(img, (new_h, new_w), _INTERPOLATIONS[self.interpolation])
        for key in results.get('seg_fields', []):
            seg_map = results[key]
            if seg_map.dtype != np.uint8:
                raise ValueError(f'PILResizeShortestEdge: {key} must be a uint8 map (PIL resizes 8-bit maps), got '
                                 f'{seg_map.dtype}')
            results[key] = _pil_resize(seg_map, (new_h, new_w), Image.NEAREST)
        results['img_shape'] = (new_h, new_w)
        results['scale'] = (new_w, new_h)
        results['scale_factor'] = (new_w / width, new_h / height)
        results['keep_ratio'] = True
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(short_edge_length={self.short_edge_length}, max_size={self.max_size}, '
                f'interpolation={self.interpolation!r})')
