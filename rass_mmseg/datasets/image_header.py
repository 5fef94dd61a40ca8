"""The pixel size an image file declares, read from its header without decoding, and the decompression-bomb check.

A small file can declare a huge image: a 389 KB PNG of 20000x20000 pixels decodes to 1.1 GiB with cv2 (mmseg's
default backend), and cv2 reads no header on its own. Pillow's ``Image.open`` reads only the header (the pixels are
decoded later, lazily), so :func:`check_pixel_limit` refuses such a file before any decoder runs. It is shared by
``LoadImageFromFileChecked`` (``max_pixels``) and ``tools/dataset_converters/degrade_dataset.py`` (``--max-pixels``).

The default limit, :data:`DEFAULT_MAX_PIXELS` = 100 megapixels (300 MB as 8-bit BGR), is far above any image of the
datasets we use (ADE20K and Cityscapes photos are at most a few megapixels) and above the full resolution of phone
and most DSLR cameras (up to about 61 MP), so it refuses only files that are not real dataset photos. Pillow itself
refuses headers above ``2 * PIL.Image.MAX_IMAGE_PIXELS`` (179 MP by default); such a file is reported with that bound.
A file Pillow does not recognise (not an image, or a format only cv2 reads) has no declared size and goes to the
decoder unchecked, which names it if it does not decode.
"""
import io
import warnings
from typing import Optional, Tuple, Union

from PIL import Image

__all__ = ['DEFAULT_MAX_PIXELS', 'check_pixel_limit', 'declared_size', 'describe_declared_size']

#: Default pixel limit (width x height) of ``max_pixels`` / ``--max-pixels``: 100 megapixels.
DEFAULT_MAX_PIXELS = 100_000_000


def declared_size(source: Union[str, bytes]) -> Optional[Tuple[int, int]]:
    """The ``(width, height)`` that an image file's header declares, without decoding its pixels.

    Args:
        source: The file's path or its content.

    Returns:
        The declared size, or ``None`` when Pillow does not recognise the file (or it cannot be opened).

    Raises:
        PIL.Image.DecompressionBombError: The header declares more than Pillow's own limit
            (``2 * PIL.Image.MAX_IMAGE_PIXELS``); Pillow does not hand out the size then.
    """
    try:
        with warnings.catch_warnings():  # the size is checked against max_pixels, not Pillow's warning threshold
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
                return image.size
    except Image.DecompressionBombError:
        raise
    except Exception:  # UnidentifiedImageError, a missing file, a damaged header: the decoder says what is wrong
        return None


def _pillow_limit() -> int:
    """The pixel count above which ``Image.open`` refuses a header (its ``DecompressionBombError``)."""
    return 2 * Image.MAX_IMAGE_PIXELS


def _over_pillow_limit() -> str:
    return f"its header declares more than {_pillow_limit()} pixels (Pillow's decompression-bomb limit)"


def _declares(size: Tuple[int, int]) -> str:
    return f'its header declares {size[0]}x{size[1]} pixels ({size[0] * size[1] / 1e6:.1f} megapixels)'


def describe_declared_size(source: Union[str, bytes]) -> str:
    """What an image file's header declares, for messages (e.g. ``'its header declares 20000x20000 pixels ...'``)."""
    try:
        size = declared_size(source)
    except Image.DecompressionBombError:
        return _over_pillow_limit()
    return 'its header gives no size that Pillow reads' if size is None else _declares(size)


def check_pixel_limit(source: Union[str, bytes], filename: str, max_pixels: Optional[int],
                      setting: str = 'max_pixels') -> None:
    """Refuse, before decoding, an image file whose header declares more than ``max_pixels`` pixels.

    Args:
        source: The file's path or its content.
        filename: The file's name for the message.
        max_pixels: The largest ``width * height`` accepted; ``None`` checks nothing.
        setting: The name of the setting that holds ``max_pixels``, for the message.

    Raises:
        OSError: One line naming the file, its declared size and the limit.
    """
    if max_pixels is None:
        return
    how = f'refused before decoding (a possible decompression bomb); raise {setting} if it is a real image'
    try:
        size = declared_size(source)
    except Image.DecompressionBombError:
        if max_pixels < _pillow_limit():
            verdict = f'over the limit of {setting}={max_pixels}; {how}'
        else:
            verdict = (f'so its size cannot be checked against {setting}={max_pixels}; refused before decoding; raise '
                       'PIL.Image.MAX_IMAGE_PIXELS as well if it is a real image')
        raise OSError(f'{filename}: {_over_pillow_limit()}, {verdict}') from None
    if size is not None and size[0] * size[1] > max_pixels:
        raise OSError(f'{filename}: {_declares(size)}, over the limit of {setting}={max_pixels}; {how}')
