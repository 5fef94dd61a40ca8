"""Decompression bombs and out-of-memory decodes (issue 21, item 5).

A PNG of a few hundred bytes can declare 20000x20000 pixels; cv2 (mmseg's default backend) decodes it in full
(1.1 GiB). The bombs here are real 8x6 PNGs whose IHDR is patched to declare a huge size, so nothing large is ever
allocated: every test that could reach a decoder replaces it with a spy, and asserts whether it was called.
"""
import re
import struct
import zlib

import cv2
import mmcv
import numpy as np
import pytest
from mmcv.transforms import LoadImageFromFile
from mmseg.registry import TRANSFORMS
from PIL import Image

from rass_mmseg.datasets import LoadImageFromFileChecked
from rass_mmseg.datasets.image_header import DEFAULT_MAX_PIXELS, check_pixel_limit, declared_size

PILLOW_LIMIT = 2 * Image.MAX_IMAGE_PIXELS  # 178956970: Image.open refuses larger headers itself


def png_declaring(path, width: int, height: int):
    """A real 8x6 PNG whose header is patched to declare ``width`` x ``height`` pixels (CRC recomputed)."""
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(path)
    content = bytearray(path.read_bytes())
    assert content[12:16] == b'IHDR'
    content[16:24] = struct.pack('>II', width, height)
    content[29:33] = struct.pack('>I', zlib.crc32(bytes(content[12:29])))
    path.write_bytes(bytes(content))
    assert len(content) < 200
    return path


class DecoderSpy:
    """Stands in for ``mmcv.imfrombytes``: records each call, then raises ``error`` or returns a 2x2 image."""

    def __init__(self, error: BaseException = None):
        self.calls, self.error = [], error

    def __call__(self, content, flag='color', backend=None, **kwargs):
        self.calls.append(content)
        if self.error is not None:
            raise self.error
        return np.zeros((2, 2, 3), np.uint8)


@pytest.fixture
def decoder(monkeypatch):
    spy = DecoderSpy()
    monkeypatch.setattr(mmcv, 'imfrombytes', spy)
    return spy


FORMATS = {'PNG': '.png', 'JPEG': '.jpg', 'BMP': '.bmp', 'TIFF': '.tif', 'WebP': '.webp'}


@pytest.mark.parametrize('kind', FORMATS)
def test_the_header_size_is_the_decoded_size(tmp_path, kind):
    path = tmp_path / f'image{FORMATS[kind]}'
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)
    assert declared_size(str(path)) == declared_size(path.read_bytes()) == (40, 30)
    assert LoadImageFromFileChecked()(dict(img_path=str(path)))['img'].shape == (30, 40, 3)
    check_pixel_limit(str(path), str(path), 1200)  # 40 x 30: at the limit
    with pytest.raises(OSError, match=r'its header declares 40x30 pixels \(0\.0 megapixels\), over the limit of '
                       r'max_pixels=1199; refused before decoding'):
        check_pixel_limit(str(path), str(path), 1199)


def test_files_without_a_readable_header_have_no_size(tmp_path):
    assert declared_size(b'') is None and declared_size(b'hello, not an image') is None
    assert declared_size(str(tmp_path / 'missing.png')) is None
    check_pixel_limit(b'hello, not an image', 'text.png', 1)  # left to the decoder, which names the file


@pytest.mark.parametrize('width,height,declares', [
    (12000, 10000, r'its header declares 12000x10000 pixels \(120\.0 megapixels\)'),
    (20000, 20000, rf"its header declares more than {PILLOW_LIMIT} pixels \(Pillow's decompression-bomb limit\)")])
def test_a_bomb_is_refused_before_decoding(tmp_path, decoder, width, height, declares):
    path = png_declaring(tmp_path / 'bomb.png', width, height)
    with pytest.raises(OSError) as error:
        LoadImageFromFileChecked()(dict(img_path=str(path)))
    message = str(error.value)
    assert '\n' not in message and message.startswith(f'{path}: ')
    assert f'over the limit of max_pixels={DEFAULT_MAX_PIXELS}; refused before decoding' in message
    assert re.search(declares, message), message
    assert LoadImageFromFileChecked(ignore_empty=True)(dict(img_path=str(path))) is None
    assert decoder.calls == []
    # the control: mmcv's loader hands the file to the decoder, which would allocate width x height x 3 bytes
    LoadImageFromFile()(dict(img_path=str(path)))
    assert decoder.calls == [path.read_bytes()]


def test_the_limit_is_a_transform_argument(tmp_path, decoder):
    path = tmp_path / 'image.png'
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)
    with pytest.raises(OSError, match=r'declares 16x16 pixels .* over the limit of max_pixels=255;'):
        TRANSFORMS.build(dict(type='LoadImageFromFileChecked', max_pixels=255))(dict(img_path=str(path)))
    assert decoder.calls == []
    TRANSFORMS.build(dict(type='LoadImageFromFileChecked', max_pixels=256))(dict(img_path=str(path)))
    assert len(decoder.calls) == 1
    bomb = png_declaring(tmp_path / 'bomb.png', 20000, 20000)
    LoadImageFromFileChecked(max_pixels=None)(dict(img_path=str(bomb)))  # no limit: decoded (by the spy)
    assert len(decoder.calls) == 2
    # a limit above Pillow's own: the size cannot be read, so the file is still refused, saying what to raise
    with pytest.raises(OSError, match=r'so its size cannot be checked against max_pixels=500000000; refused before '
                       r'decoding; raise PIL\.Image\.MAX_IMAGE_PIXELS as well'):
        LoadImageFromFileChecked(max_pixels=500_000_000)(dict(img_path=str(bomb)))
    assert len(decoder.calls) == 2
    assert 'max_pixels=256' in repr(LoadImageFromFileChecked(max_pixels=256))
    for bad in (0, -1, 1.5, True, '100'):
        with pytest.raises(ValueError, match='max_pixels must be a positive int or None'):
            LoadImageFromFileChecked(max_pixels=bad)


def _cv2_out_of_memory() -> cv2.error:
    """cv2's error when a decode cannot allocate its image (measured with cv2 5.0 under ``ulimit -v``)."""
    error = cv2.error('OpenCV(5.0.0) alloc.cpp:73: error: (-4:Insufficient memory) Failed to allocate 360000000 '
                      "bytes in function 'OutOfMemoryError'")
    error.code = cv2.Error.StsNoMem
    return error


@pytest.mark.parametrize('raised', ['MemoryError', 'cv2.error -4'])
def test_an_out_of_memory_decode_is_reported_as_such(tmp_path, monkeypatch, raised):
    spy = DecoderSpy(MemoryError() if raised == 'MemoryError' else _cv2_out_of_memory())
    monkeypatch.setattr(mmcv, 'imfrombytes', spy)
    path = png_declaring(tmp_path / 'large.png', 9000, 8000)  # under the default limit: handed to the decoder
    for ignore_empty in (False, True):  # the file may be fine: not skipped as an unreadable one
        with pytest.raises(MemoryError) as error:
            LoadImageFromFileChecked(ignore_empty=ignore_empty)(dict(img_path=str(path)))
        message = str(error.value)
        assert message.startswith(f'{path}: out of memory decoding the image, its header declares 9000x8000 '
                                  'pixels (72.0 megapixels); ')
        assert '\n' not in message and 'truncated' not in message
    assert len(spy.calls) == 2


def test_other_decoder_errors_still_read_as_a_damaged_file(tmp_path, monkeypatch):
    error = cv2.error('OpenCV(5.0.0) error: (-215:Assertion failed) in function imdecode_')
    error.code = cv2.Error.StsAssert
    monkeypatch.setattr(mmcv, 'imfrombytes', DecoderSpy(error))
    path = png_declaring(tmp_path / 'image.png', 60, 40)
    with pytest.raises(OSError, match=r'starts like a PNG file but does not decode \(truncated or corrupt\?\)'):
        LoadImageFromFileChecked()(dict(img_path=str(path)))
