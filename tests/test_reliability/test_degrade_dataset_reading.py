"""tools/dataset_converters/degrade_dataset.py reads every image exactly as the test pipeline does (issue 17, item 4),
and refuses decompression bombs before decoding them (issue 21, item 5).

For each odd file (EXIF-rotated JPEG, 16-bit PNG, palette PNG, CMYK JPEG, grayscale, gray+alpha) and each loader
setting of a config's test pipeline, the tool's output must equal the image that the config's own test pipeline
loads and its ``DegradationDataPreProcessor`` (``degrade='always'``, same seed) degrades, i.e. the
``lq_img`` the model sees. A damaged file stops the run with one line that names it.
"""
import json
import os.path as osp
import struct
import zlib
from pathlib import Path

import cv2
import mmcv
import numpy as np
import pytest
from mmcv.transforms import Compose
from mmengine.config import Config
from mmseg.registry import MODELS
from PIL import Image

from tests.utils import load_tool, repo_path

HEIGHT, WIDTH = 40, 48  # not square, so a wrong orientation changes the shape
# degrade='always', seed 0
LQ_CONFIG = repo_path('configs', 'rass', 'rass_tiny-sd_segformer-head_1xb4-300it_textures-lq-128x128.py')
# test pipeline loader arguments -> the kinds on which they decode differently from the cv2 defaults
LOADERS = {
    'cv2 (the config as is)': {},
    'pillow': dict(imdecode_backend='pillow'),  # gray+alpha composited on grey, CMYK converted by Pillow
    'EXIF ignored': dict(color_type='color_ignore_orientation'),
}
KINDS = ('EXIF-rotated JPEG', '16-bit PNG', 'palette PNG', 'CMYK JPEG', 'grayscale PNG', 'gray+alpha PNG')


tool = load_tool('dataset_converters/degrade_dataset')


def _rgb() -> np.ndarray:
    """A smooth colour image with some texture, so the degradation has something to blur."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    noise = np.random.default_rng(0).integers(0, 40, (HEIGHT, WIDTH, 3))
    base = np.stack([rows * 5, cols * 4, (rows + cols) * 2 + 40], axis=2)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_image(kind: str, folder: Path) -> Path:
    rgb = _rgb()
    name = kind.split()[0].lower().replace('+', '_')
    path = folder / (name + ('.jpg' if 'JPEG' in kind else '.png'))
    if kind == 'EXIF-rotated JPEG':
        image = Image.fromarray(rgb)
        exif = image.getexif()
        exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
        image.save(path, exif=exif, quality=95)
    elif kind == '16-bit PNG':
        gray = (rgb[..., 1].astype(np.uint16) * 257 + np.arange(WIDTH, dtype=np.uint16)).astype(np.uint16)
        Image.fromarray(gray).save(path)  # Pillow mode I;16
    elif kind == 'palette PNG':
        Image.fromarray(rgb).convert('P', palette=Image.ADAPTIVE, colors=16).save(path, transparency=0)
    elif kind == 'CMYK JPEG':
        Image.fromarray(rgb).convert('CMYK').save(path, quality=95)
    elif kind == 'grayscale PNG':
        Image.fromarray(rgb[..., 0]).save(path)
    else:  # gray+alpha
        alpha = np.where(np.arange(WIDTH) < WIDTH // 2, 255, 60).astype(np.uint8)
        Image.fromarray(np.stack([rgb[..., 0], np.broadcast_to(alpha, (HEIGHT, WIDTH))], axis=2), 'LA').save(path)
    return path


@pytest.fixture(scope='module')
def odd_images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp('odd') / 'images'
    folder.mkdir()
    for kind in KINDS:
        write_image(kind, folder)
    return folder


def write_config(folder: Path, loader_args: dict) -> str:
    """The tiny LQ config, its test pipeline loader given ``loader_args``."""
    path = folder / 'lq_config.py'
    pipeline = [dict(type='LoadImageFromFileChecked', **loader_args), dict(type='LoadAnnotations'),
                dict(type='PackSegInputs')]
    path.write_text(f'_base_ = [{LQ_CONFIG!r}]\n'
                    f'test_dataloader = dict(dataset=dict(pipeline={pipeline!r}))\n')
    return str(path)


def lq_at_test_time(config: str, image: str) -> np.ndarray:
    """What the model sees at test time: the config's test pipeline (without labels), then its preprocessor's
    test-mode degradation (``lq_img``, RGB uint8)."""
    cfg = Config.fromfile(config)
    pipeline = Compose([step for step in cfg.test_dataloader.dataset.pipeline if step.type != 'LoadAnnotations'])
    packed = pipeline(dict(img_path=image))
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    assert preprocessor.degrade == 'always'
    batch = preprocessor(dict(inputs=[packed['inputs']], data_samples=[packed['data_samples']]), training=False)
    return batch['data_samples'][0].lq_img.data.permute(1, 2, 0).numpy()


@pytest.mark.parametrize('loader', LOADERS)
def test_images_are_read_as_the_test_pipeline_reads_them(loader, odd_images, tmp_path):
    config = write_config(tmp_path, LOADERS[loader])
    out = tmp_path / 'lq'
    assert tool.main([str(odd_images), str(out), '--config', config, '--batch-size', '2']) == 0
    for kind in KINDS:
        source = next(odd_images.glob(kind.split()[0].lower().replace('+', '_') + '.*'))
        written = cv2.imread(str(out / (source.stem + '.png')))[..., ::-1]
        expected = lq_at_test_time(config, str(source))
        assert written.shape == expected.shape, kind
        assert np.array_equal(written, expected), kind
        if kind == 'EXIF-rotated JPEG':  # the orientation the pipeline gives, whichever it is
            ignored = LOADERS[loader].get('color_type') == 'color_ignore_orientation'
            assert written.shape[:2] == ((HEIGHT, WIDTH) if ignored else (WIDTH, HEIGHT))
    manifest = json.loads((out / 'manifest.json').read_text())
    assert manifest['loader'] == dict(tool.DEFAULT_LOADER_RECORD, **LOADERS[loader])


def test_the_loader_settings_matter_for_these_files(odd_images):
    """The test above is not vacuous: the pillow and EXIF-ignoring loaders decode some of these files otherwise."""
    from rass_mmseg.datasets import LoadImageFromFileChecked

    def read(name: str, **kwargs) -> np.ndarray:
        return LoadImageFromFileChecked(**kwargs)(dict(img_path=str(odd_images / name)))['img']

    assert not np.array_equal(read('gray_alpha.png'), read('gray_alpha.png', imdecode_backend='pillow'))
    assert read('exif-rotated.jpg').shape[:2] == (WIDTH, HEIGHT)
    assert read('exif-rotated.jpg', color_type='color_ignore_orientation').shape[:2] == (HEIGHT, WIDTH)


@pytest.mark.parametrize('config', [None, 'ade20k_lq.py', 'degradation.py'])
def test_default_loader_is_mmseg_ade20k_test_loader(config):
    """No config, ADE20K-LQ's config (mmseg's ADE20K pipeline: mmcv's LoadImageFromFile) and a config without a
    test pipeline all read with the checked loader's defaults."""
    if config is None:
        loader = tool.DEFAULT_LOADER
    else:
        path = repo_path('configs', '_base_', *(['datasets'] if config == 'ade20k_lq.py' else []), config)
        cfg = Config.fromfile(path)
        loader, source = tool.pipeline_loader(cfg, path)
        if config == 'ade20k_lq.py':
            assert cfg.test_dataloader.dataset.pipeline[0].type == 'LoadImageFromFile'
            assert source.startswith('test_dataloader.dataset.pipeline of')
        else:
            assert 'has no test pipeline' in source
    from mmseg.registry import TRANSFORMS
    built = TRANSFORMS.build(dict(loader))
    assert tool.loader_record(built, loader) == tool.DEFAULT_LOADER_RECORD


def test_a_damaged_image_stops_the_run_with_one_line_naming_it(tmp_path):
    source = tmp_path / 'src'
    source.mkdir()
    Image.fromarray(_rgb()).save(source / 'good.png')
    Image.fromarray(_rgb()).save(source / 'whole.jpg', quality=95)
    broken = source / 'broken.jpg'
    broken.write_bytes((source / 'whole.jpg').read_bytes()[:300])
    (source / 'whole.jpg').unlink()
    with pytest.raises(SystemExit) as exit_info:
        tool.main([str(source), str(tmp_path / 'lq')])
    message = str(exit_info.value.code)
    assert message.startswith(f'degrade_dataset.py: error: {broken}: cannot read the image, it starts like a JPEG')
    assert '\n' not in message
    assert not osp.exists(tmp_path / 'lq' / 'good.png')  # read before anything of the chunk is written


def test_a_config_without_image_loader_is_refused(tmp_path):
    path = tmp_path / 'no_loader.py'
    path.write_text(f'_base_ = [{LQ_CONFIG!r}]\n'
                    "test_dataloader = dict(dataset=dict(pipeline=[dict(type='PackSegInputs')]))\n")
    (tmp_path / 'src').mkdir()
    with pytest.raises(SystemExit, match='has no image loader') as exit_info:
        tool.main([str(tmp_path / 'src'), str(tmp_path / 'out'), '--config', str(path)])
    assert '\n' not in str(exit_info.value.code)


def test_resuming_a_folder_written_before_the_loader_was_recorded(odd_images, tmp_path):
    out = tmp_path / 'lq'
    assert tool.main([str(odd_images), str(out), '--limit', '1']) == 0
    manifest = json.loads((out / 'manifest.json').read_text())
    del manifest['loader']  # as the tool wrote it before
    (out / 'manifest.json').write_text(json.dumps(manifest))
    with pytest.raises(SystemExit, match='written with another loader'):
        tool.main([str(odd_images), str(out), '--config', write_config(tmp_path, LOADERS['pillow'])])
    assert tool.main([str(odd_images), str(out)]) == 0  # the default loader reads as the old tool did
    assert len(list(out.glob('*.png'))) == len(KINDS)


def _bomb(path: Path, width: int, height: int) -> Path:
    """A real small PNG whose header is patched to declare ``width`` x ``height`` pixels (CRC recomputed)."""
    Image.fromarray(_rgb()).save(path)
    content = bytearray(path.read_bytes())
    content[16:24] = struct.pack('>II', width, height)
    content[29:33] = struct.pack('>I', zlib.crc32(bytes(content[12:29])))
    path.write_bytes(bytes(content))
    return path


class _Decoder:
    """mmcv's decoder, recording what it is given; raises ``error`` instead for the files in ``failing``."""

    def __init__(self, error: BaseException = None, failing: tuple = ()):
        self.decode, self.calls, self.error, self.failing = mmcv.imfrombytes, [], error, failing

    def __call__(self, content, *args, **kwargs):
        self.calls.append(content)
        if content in self.failing:
            raise self.error
        return self.decode(content, *args, **kwargs)


def test_a_decompression_bomb_stops_the_run_before_it_is_decoded(tmp_path, monkeypatch):
    """Issue 21, item 5: a file declaring 12000x10000 pixels is refused from its header, before any decoding."""
    source = tmp_path / 'src'
    source.mkdir()
    Image.fromarray(_rgb()).save(source / 'good.png')
    bomb = _bomb(source / 'bomb.png', 12000, 10000)
    decoder = _Decoder()
    monkeypatch.setattr(mmcv, 'imfrombytes', decoder)
    with pytest.raises(SystemExit) as exit_info:
        tool.main([str(source), str(tmp_path / 'lq')])
    message = str(exit_info.value.code)
    assert message.startswith(f'degrade_dataset.py: error: {bomb}: its header declares 12000x10000 pixels '
                              '(120.0 megapixels), over the limit of --max-pixels=100000000; refused before decoding')
    assert '\n' not in message
    assert bomb.read_bytes() not in decoder.calls
    assert not osp.exists(tmp_path / 'lq' / 'good.png')


def test_the_pixel_limit_comes_from_the_option_else_the_config(tmp_path, monkeypatch):
    source = tmp_path / 'src'
    source.mkdir()
    Image.fromarray(_rgb()).save(source / 'image.png')  # 48 x 40 = 1920 pixels
    with pytest.raises(SystemExit, match=r'image\.png: its header declares 48x40 pixels .* --max-pixels=1919;'):
        tool.main([str(source), str(tmp_path / 'lq'), '--max-pixels', '1919'])
    config = write_config(tmp_path, dict(max_pixels=1000))
    with pytest.raises(SystemExit, match=r'image\.png: its header declares 48x40 pixels .* --max-pixels=1000;'):
        tool.main([str(source), str(tmp_path / 'lq'), '--config', config])
    assert tool.main([str(source), str(tmp_path / 'lq'), '--config', config, '--max-pixels', '1920']) == 0
    bomb = _bomb(source / 'bomb.png', 12000, 10000)
    monkeypatch.setattr(mmcv, 'imfrombytes', _Decoder(OSError('decoded'), failing=(bomb.read_bytes(), )))
    with pytest.raises(SystemExit, match=r'bomb\.png: cannot read the image, .* \[OSError: decoded\]'):
        tool.main([str(source), str(tmp_path / 'lq'), '--config', config, '--max-pixels', '0'])  # 0: no limit
    manifest = json.loads((tmp_path / 'lq' / 'manifest.json').read_text())
    assert manifest['loader'] == tool.DEFAULT_LOADER_RECORD  # which files are refused is not how they decode
    with pytest.raises(SystemExit, match='--max-pixels must be at least 1'):
        tool.main([str(source), str(tmp_path / 'lq2'), '--max-pixels', '-1'])


def test_an_out_of_memory_decode_is_reported_as_such(tmp_path, monkeypatch):
    source = tmp_path / 'src'
    source.mkdir()
    large = _bomb(source / 'large.png', 9000, 8000)  # under the default limit: handed to the decoder
    monkeypatch.setattr(mmcv, 'imfrombytes', _Decoder(MemoryError(), failing=(large.read_bytes(), )))
    with pytest.raises(SystemExit) as exit_info:
        tool.main([str(source), str(tmp_path / 'lq')])
    message = str(exit_info.value.code)
    assert message.startswith(f'degrade_dataset.py: error: {large}: out of memory decoding the image, its header '
                              'declares 9000x8000 pixels (72.0 megapixels); ')
    assert '\n' not in message and 'truncated' not in message
