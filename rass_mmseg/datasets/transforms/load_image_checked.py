"""mmseg's ``LoadImageFromFile`` with one-line errors for unreadable files and correct 16-bit images on every backend.

What mmcv 2.1.0's ``LoadImageFromFile`` (``color_type='color'``) does with odd files, measured in
``tests/test_reliability/test_bad_images.py``:

- grayscale, 1-bit, palette (with transparency), RGBA, gray+alpha, CMYK JPEG: correct 3-channel uint8 BGR with
  both backends (cv2 drops alpha as PIL's ``convert('RGB')`` does; pillow composites gray+alpha on grey);
- 16-bit grayscale / RGB / RGBA PNG: cv2 (mmseg's default) scales correctly (``v >> 8``); the pillow backend
  saturates 16-bit grayscale to an all-255 image;
- a text file named .png, a truncated PNG or JPEG: cv2 gives ``AssertionError: failed to load image: <path>``
  (an assert, gone under ``python -O``); pillow raises ``UnidentifiedImageError``/``OSError`` without the path;
- an empty file: ``cv2.error (-215:Assertion failed) !buf.empty()`` without the path;
- a small file whose header declares a huge image (a decompression bomb: a 389 KB PNG of 20000x20000 pixels) is
  decoded in full by cv2 (1.1 GiB); when the memory runs out, cv2 raises ``cv2.error (-4:Insufficient memory)``.

:class:`LoadImageFromFileChecked` loads exactly as its parent when the file decodes, raises a one-line ``OSError``
naming the file and what was expected when it does not, refuses a file whose header declares more than
``max_pixels`` before decoding it (see :mod:`rass_mmseg.datasets.image_header`), reports a decode that runs out of
memory as such, and scales 16-bit images to 8 bits with the pillow backend as cv2 does.
"""
from typing import Optional

import cv2
import mmcv
import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmseg.registry import TRANSFORMS

from ..image_header import DEFAULT_MAX_PIXELS, check_pixel_limit, describe_declared_size

__all__ = ['LoadImageFromFileChecked']

#: File signatures of the formats cv2 and Pillow read, to tell "corrupt image" from "not an image" in errors.
_SIGNATURES = {
    b'\x89PNG\r\n\x1a\n': 'PNG',
    b'\xff\xd8\xff': 'JPEG',
    b'BM': 'BMP',
    b'II*\x00': 'TIFF',
    b'MM\x00*': 'TIFF',
    b'GIF8': 'GIF',
    b'RIFF': 'WebP',
}
_SIXTEEN_BIT_MODES = ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I')


def _is_out_of_memory(error: Exception) -> bool:
    """Whether a decoder's error says the memory ran out (Python's ``MemoryError``, OpenCV's ``StsNoMem``)."""
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, cv2.error) and getattr(error, 'code', None) == cv2.Error.StsNoMem


def _format_of(content: bytes) -> Optional[str]:
    for signature, name in _SIGNATURES.items():
        if content.startswith(signature):
            return name
    return None


@TRANSFORMS.register_module()
class LoadImageFromFileChecked(LoadImageFromFile):
    """Load an image like ``LoadImageFromFile``; refuse an unreadable file with a one-line error naming it.

    Same keys and arguments as :class:`mmcv.transforms.LoadImageFromFile` (``to_float32``, ``color_type``,
    ``imdecode_backend``, ``file_client_args``, ``ignore_empty``, ``backend_args``). Differences:

    - an empty, truncated, corrupt or non-image file raises ``OSError('<path>: ...')`` that says what the file
      looks like and what was expected, instead of an ``AssertionError``, a ``cv2.error`` or a PIL error
      without the path (with ``ignore_empty=True`` it returns ``None`` as the parent does, and mmengine's
      dataset then draws another sample in training);
    - a file whose header declares more than ``max_pixels`` pixels raises such an ``OSError`` before any decoding;
    - a decode that runs out of memory raises ``MemoryError('<path>: out of memory decoding the image, ...')`` with
      the declared size (not swallowed by ``ignore_empty``: the file may be fine, the memory is short);
    - a 16-bit image read with ``imdecode_backend='pillow'`` and ``color_type`` ``'color'`` or ``'grayscale'``
      is scaled to 8 bits (``v >> 8``, as cv2 does) instead of being saturated to 255.

    Args:
        to_float32: Convert the image to float32 (otherwise uint8).
        color_type: ``mmcv.imfrombytes`` flag: ``'color'`` (3-channel BGR), ``'grayscale'``, ``'unchanged'``, ...
        imdecode_backend: ``'cv2'`` (mmseg's default), ``'pillow'``, ``'turbojpeg'`` or ``'tifffile'``.
        file_client_args: Deprecated mmengine file client arguments (use ``backend_args``).
        ignore_empty: Return ``None`` instead of raising for a missing or unreadable file.
        backend_args: mmengine file backend arguments.
        max_pixels: The largest ``width * height`` that a file's header may declare; larger files are refused
            before decoding. Default 100 megapixels (``DEFAULT_MAX_PIXELS``: above every real dataset photo, see
            :mod:`rass_mmseg.datasets.image_header`); ``None`` checks nothing.
    """

    def __init__(self,
                 to_float32: bool = False,
                 color_type: str = 'color',
                 imdecode_backend: str = 'cv2',
                 file_client_args: Optional[dict] = None,
                 ignore_empty: bool = False,
                 *,
                 backend_args: Optional[dict] = None,
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(to_float32=to_float32, color_type=color_type, imdecode_backend=imdecode_backend,
                         file_client_args=file_client_args, ignore_empty=ignore_empty, backend_args=backend_args)
        if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int)
                                       or max_pixels < 1):
            raise ValueError(f'max_pixels must be a positive int or None (no limit), got {max_pixels!r}')
        self.max_pixels = max_pixels

    def transform(self, results: dict) -> Optional[dict]:
        """Load ``results['img_path']`` into ``results['img']`` and set ``img_shape`` and ``ori_shape``."""
        filename = results['img_path']
        try:
            img = self._decode(filename, self._read(filename))
        except OSError:
            if self.ignore_empty:
                return None
            raise
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{super().__repr__()[:-1]}, max_pixels={self.max_pixels})'

    def _read(self, filename: str) -> bytes:
        if self.file_client_args is not None:
            return fileio.FileClient.infer_client(self.file_client_args, filename).get(filename)
        return fileio.get(filename, backend_args=self.backend_args)

    def _decode(self, filename: str, content: bytes) -> np.ndarray:
        expected = f'an image file that the {self.imdecode_backend} backend reads (PNG, JPEG, BMP, TIFF, WebP)'
        if len(content) == 0:
            raise OSError(f'{filename}: the file is empty; expected {expected}')
        check_pixel_limit(content, filename, self.max_pixels)
        try:
            img = self._pillow_sixteen_bit(content)
            if img is None:
                img = mmcv.imfrombytes(content, flag=self.color_type, backend=self.imdecode_backend)
        except Exception as error:  # cv2.error, PIL.UnidentifiedImageError, OSError('image file is truncated'), ...
            lines = str(error).strip().splitlines()
            reason = f'{type(error).__name__}: {lines[-1][:120] if lines else ""}'
            if _is_out_of_memory(error):
                raise MemoryError(f'{filename}: out of memory decoding the image, {describe_declared_size(content)}; '
                                  f'free memory, or set max_pixels lower to refuse such files [{reason}]') from error
            img = None
        else:
            reason = None
        if img is None:
            kind = _format_of(content)
            looks = (f'it starts like a {kind} file but does not decode (truncated or corrupt?)' if kind else
                     f'it is not an image file (it starts with {content[:12]!r})')
            detail = f' [{reason}]' if kind and reason else ''  # the decoder's own words help for a damaged image
            raise OSError(f'{filename}: cannot read the image, {looks}; expected {expected}{detail}')
        return img

    def _pillow_sixteen_bit(self, content: bytes) -> Optional[np.ndarray]:
        """A 16-bit image decoded by Pillow and scaled to uint8; ``None`` for any other case."""
        if self.imdecode_backend != 'pillow' or self.color_type not in ('color', 'grayscale'):
            return None
        import io

        from PIL import Image, ImageOps
        with io.BytesIO(content) as buffer:
            image = Image.open(buffer)
            if image.mode not in _SIXTEEN_BIT_MODES:
                return None
            array = np.asarray(ImageOps.exif_transpose(image)).astype(np.int64)
        if array.min() < 0 or array.max() > 65535:
            raise OSError(f'pixel values {array.min()}..{array.max()} are outside the 16-bit range')
        gray = (array >> 8).astype(np.uint8)
        return gray if self.color_type == 'grayscale' else np.repeat(gray[..., None], 3, axis=2)
