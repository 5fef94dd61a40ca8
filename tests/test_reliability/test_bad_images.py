"""Bad input images: odd formats load correctly, unreadable files fail with one line that names them.

Each format is written with PIL or cv2 and compared with an independent conversion: PIL's ``convert('RGB')``
for 8-bit formats (alpha is dropped, as cv2 does), ``round(v / 257)`` for 16-bit data (cv2 scales by ``v >> 8``,
which is within 1 of it; PIL's own conversion of 16-bit grayscale saturates, so it is not a reference).
"""
import re

import cv2
import numpy as np
import pytest
from mmcv.transforms import LoadImageFromFile
from mmengine.config import Config
from mmseg.registry import TRANSFORMS
from PIL import Image

from rass_mmseg.datasets import LoadImageFromFileChecked, TextureSegDataset
from tests.utils import repo_path

HEIGHT, WIDTH = 7, 5


def _rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def _sixteen_bit(channels: int) -> np.ndarray:
    shape = (HEIGHT, WIDTH) if channels == 1 else (HEIGHT, WIDTH, channels)
    return np.random.default_rng(1).integers(0, 65536, shape, dtype=np.uint16)


def write_image(kind: str, path) -> np.ndarray:
    """Write ``kind`` to ``path``; return the expected 3-channel uint8 BGR content."""
    rgb = _rgb()
    alpha = np.random.default_rng(2).integers(0, 256, (HEIGHT, WIDTH, 1), dtype=np.uint8)
    if kind.startswith('16-bit'):
        channels = {'16-bit gray': 1, '16-bit RGB': 3, '16-bit RGBA': 4}[kind]
        data = _sixteen_bit(channels)
        if channels == 1:
            Image.fromarray(data).save(path)  # PIL mode I;16
            data = np.repeat(data[..., None], 3, axis=2)
        else:
            cv2.imwrite(str(path), data)  # cv2 writes BGR(A)
        return np.round(data[..., :3] / 257.0).astype(np.uint8)
    images = {
        'gray': lambda: Image.fromarray(rgb[..., 0]),
        '1-bit': lambda: Image.fromarray(rgb).convert('1'),
        'palette': lambda: Image.fromarray(rgb).convert('P', palette=Image.ADAPTIVE, colors=16),
        'RGBA': lambda: Image.fromarray(np.concatenate([rgb, alpha], axis=2), 'RGBA'),
        'gray+alpha': lambda: Image.fromarray(np.concatenate([rgb[..., :1], alpha], axis=2)[..., 0]).convert('LA'),
        'CMYK JPEG': lambda: Image.fromarray(rgb).convert('CMYK'),
    }
    image = images[kind]()
    if kind == 'palette':
        image.save(path, transparency=0)  # a transparent palette entry as well
    elif kind == 'CMYK JPEG':
        image.save(path, quality=100)
    else:
        image.save(path)
    return np.asarray(Image.open(path).convert('RGB'))[..., ::-1]


KINDS = ['gray', '1-bit', 'palette', 'RGBA', 'gray+alpha', '16-bit gray', '16-bit RGB', '16-bit RGBA', 'CMYK JPEG']
TOLERANCE = {'16-bit gray': 1, '16-bit RGB': 1, '16-bit RGBA': 1, 'CMYK JPEG': 1}  # else exact


def mmseg_loader(**kwargs) -> LoadImageFromFile:
    loader = TRANSFORMS.build(dict(type='LoadImageFromFile', **kwargs))
    assert type(loader) is LoadImageFromFile  # mmseg's name resolves to mmcv's transform
    return loader


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('loader_type', ['LoadImageFromFile', 'LoadImageFromFileChecked'])
def test_odd_formats_load_as_three_channel_uint8_bgr(tmp_path, kind, loader_type):
    path = tmp_path / ('image.jpg' if 'JPEG' in kind else 'image.png')
    expected = write_image(kind, path)
    results = TRANSFORMS.build(dict(type=loader_type))(dict(img_path=str(path)))
    img = results['img']
    assert img.dtype == np.uint8 and img.shape == (HEIGHT, WIDTH, 3)
    assert results['img_shape'] == results['ori_shape'] == (HEIGHT, WIDTH)
    assert np.abs(img.astype(int) - expected).max() <= TOLERANCE.get(kind, 0)


@pytest.mark.parametrize('kind', [k for k in KINDS if k != 'gray+alpha'])  # pillow composites gray+alpha on grey
def test_pillow_backend_scales_sixteen_bit_instead_of_saturating(tmp_path, kind):
    path = tmp_path / ('image.jpg' if 'JPEG' in kind else 'image.png')
    expected = write_image(kind, path)
    checked = LoadImageFromFileChecked(imdecode_backend='pillow')(dict(img_path=str(path)))['img']
    assert checked.dtype == np.uint8 and checked.shape == (HEIGHT, WIDTH, 3)
    assert np.abs(checked.astype(int) - expected).max() <= TOLERANCE.get(kind, 0)
    if kind == '16-bit gray':  # mmcv's pillow path converts I;16 to RGB by saturating: a white image
        assert (mmseg_loader(imdecode_backend='pillow')(dict(img_path=str(path)))['img'] == 255).all()
        gray = LoadImageFromFileChecked(imdecode_backend='pillow', color_type='grayscale')
        gray_img = gray(dict(img_path=str(path)))['img']
        assert gray_img.shape == (HEIGHT, WIDTH) and np.abs(gray_img.astype(int) - expected[..., 0]).max() <= 1


def write_bad_file(kind: str, path) -> None:
    good = path.parent / ('good' + path.suffix)
    Image.fromarray(_rgb()).save(good)
    content = good.read_bytes()
    path.write_bytes({'text': b'hello, not an image\n', 'empty': b'', 'truncated': content[:len(content) // 2]}[kind])


BAD = [('text', '.png', r"it is not an image file \(it starts with b'hello, not a'\); expected"),
       ('empty', '.png', 'the file is empty'),
       ('truncated', '.png', r'starts like a PNG file but does not decode \(truncated or corrupt\?\)'),
       ('truncated', '.jpg', r'starts like a JPEG file but does not decode')]


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
@pytest.mark.parametrize('kind,suffix,reason', BAD)
def test_unreadable_files_fail_with_one_line_naming_the_file(tmp_path, kind, suffix, reason, backend):
    path = tmp_path / f'broken{suffix}'
    write_bad_file(kind, path)
    loader = LoadImageFromFileChecked(imdecode_backend=backend)
    with pytest.raises(OSError) as error:
        loader(dict(img_path=str(path)))
    message = str(error.value)
    assert '\n' not in message
    assert message.startswith(f'{path}: ')
    assert f'expected an image file that the {backend} backend reads' in message
    assert re.search(reason, message), message
    assert LoadImageFromFileChecked(imdecode_backend=backend, ignore_empty=True)(dict(img_path=str(path))) is None


def test_mmseg_loader_fails_obscurely_on_unreadable_files(tmp_path):
    """Why the checked loader exists: the parent's errors are an assert or a cv2 error without the path."""
    empty, text = tmp_path / 'empty.png', tmp_path / 'text.png'
    write_bad_file('empty', empty)
    write_bad_file('text', text)
    with pytest.raises(cv2.error) as error:
        mmseg_loader()(dict(img_path=str(empty)))
    assert str(empty) not in str(error.value)
    with pytest.raises(AssertionError, match='failed to load image'):  # gone under python -O
        mmseg_loader()(dict(img_path=str(text)))


def test_a_corrupt_image_in_a_dataset_names_the_file(tmp_path):
    """The texture configs' pipelines use the checked loader: a bad file in a dataset folder is named."""
    cfg = Config.fromfile(repo_path('configs', '_base_', 'datasets', 'textures.py'))
    assert cfg.train_pipeline[0].type == cfg.test_pipeline[0].type == 'LoadImageFromFileChecked'
    for split in ('img_dir', 'ann_dir'):
        (tmp_path / split).mkdir()
    for name in ('a', 'b'):
        Image.fromarray(_rgb()).save(tmp_path / 'img_dir' / f'{name}.png')
        Image.fromarray(np.zeros((HEIGHT, WIDTH), np.uint8)).save(tmp_path / 'ann_dir' / f'{name}.png')
    (tmp_path / 'img_dir' / 'b.png').write_bytes(b'<html>404 Not Found</html>')
    dataset = TextureSegDataset(data_root=str(tmp_path), data_prefix=dict(img_path='img_dir', seg_map_path='ann_dir'),
                                pipeline=cfg.train_pipeline)
    assert dataset[0]['inputs'].shape == (3, HEIGHT, WIDTH)
    bad = r"img_dir/b\.png: cannot read the image, it is not an image file \(it starts with b'<html>"
    with pytest.raises(OSError, match=bad):
        dataset[1]
