"""Tests of the embedded texture dataset: generator, mmseg dataset class, and that degradation hurts."""
import json
import os.path as osp
from pathlib import Path
from typing import Callable, Tuple

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS
from skimage.feature import local_binary_pattern

import rass_mmseg  # noqa: F401  (registers TextureSegDataset)
from rass_mmseg.datasets import TextureSegDataset
from rass_mmseg.datasets.texture_generator import CLASSES, PALETTE, generate_texture_dataset

CONFIG = osp.join(osp.dirname(__file__), '..', '..', 'configs', '_base_', 'datasets', 'textures.py')
NUM_CLASSES = len(CLASSES)
PATCH, STRIDE = 24, 16  # texture-classifier patches: 24x24 px on a 16 px grid, one class only


@pytest.fixture(scope='module')
def default_root(tmp_path_factory) -> Path:
    """The default dataset (seed 0, 80 train / 20 val, 128 px), generated once for the module."""
    root = tmp_path_factory.mktemp('textures') / 'data'
    generate_texture_dataset(root, seed=0)
    return root


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def _read_split(root: Path, split: str, transform: Callable = None):
    """Yield (grey image, label map) of a split, the BGR image optionally transformed first."""
    for img_file in sorted((root / 'img_dir' / split).glob('*.png')):
        img = cv2.imread(str(img_file), cv2.IMREAD_COLOR)
        if transform is not None:
            img = transform(img)
        label = cv2.imread(str(root / 'ann_dir' / split / img_file.name), cv2.IMREAD_UNCHANGED)
        yield cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), label


# ----------------------------------------------------------------------------- generator


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    kwargs = dict(num_train=4, num_val=3, image_size=64)
    for name, seed in (('a', 3), ('b', 3), ('c', 4)):
        generate_texture_dataset(tmp_path / name, seed=seed, **kwargs)
    first, again, other = (_files(tmp_path / name) for name in 'abc')
    assert len(first) == 2 * (4 + 3) + 1  # images + label maps + meta.json
    assert first == again
    assert first.keys() == other.keys()
    images = [name for name in first if name.startswith('img_dir')]
    assert all(first[name] != other[name] for name in images)


def test_layout_labels_and_meta(default_root):
    meta = json.loads((default_root / 'meta.json').read_text())
    assert meta['params'] == dict(seed=0, num_train=80, num_val=20, image_size=128)
    assert meta['classes'] == list(CLASSES) and meta['palette'] == PALETTE
    assert meta['counts'] == dict(train=80, val=20)
    for split, count in meta['counts'].items():
        images = sorted(p.name for p in (default_root / 'img_dir' / split).glob('*.png'))
        labels = sorted(p.name for p in (default_root / 'ann_dir' / split).glob('*.png'))
        assert images == labels and len(images) == count
        pixels = np.zeros(NUM_CLASSES, np.int64)
        for grey, label in _read_split(default_root, split):
            assert grey.shape == (128, 128) and label.shape == (128, 128) and label.dtype == np.uint8
            assert label.max() < NUM_CLASSES  # no ignore pixels, all indices valid
            pixels += np.bincount(label.ravel(), minlength=NUM_CLASSES)
        fractions = pixels / pixels.sum()
        np.testing.assert_allclose(fractions, list(meta['class_pixel_fractions'][split].values()), atol=1e-4)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_every_class_in_val_and_balanced(tmp_path, seed):
    """Every class holds between 0.75/K and 1.25/K of the validation pixels (K = 8 classes);
    measured for seed 0: 0.119 .. 0.129."""
    meta = generate_texture_dataset(tmp_path / 'd', seed=seed, num_train=8)
    fractions = np.array(list(meta['class_pixel_fractions']['val'].values()))
    assert all(n >= 3 for n in meta['regions']['val'].values())
    assert fractions.min() >= 0.75 / NUM_CLASSES and fractions.max() <= 1.25 / NUM_CLASSES


def test_grey_levels_do_not_name_the_class(default_root):
    """Per-class mean grey of the validation pixels spans less than half the pixel std."""
    values = [[] for _ in CLASSES]
    for grey, label in _read_split(default_root, 'val'):
        for cls in range(NUM_CLASSES):
            values[cls].append(grey[label == cls])
    values = [np.concatenate(v).astype(np.float64) for v in values]
    means = np.array([v.mean() for v in values])
    stds = np.array([v.std() for v in values])
    assert means.max() - means.min() < 0.5 * stds.mean()
    assert stds.max() / stds.min() < 1.3


def test_existing_folder_reused_or_refused(tmp_path):
    kwargs = dict(seed=0, num_train=2, num_val=2, image_size=32)
    root = tmp_path / 'data'
    generate_texture_dataset(root, **kwargs)
    before = _files(root)
    generate_texture_dataset(root, **kwargs)  # identical: skipped
    assert _files(root) == before
    with pytest.raises(FileExistsError, match='other parameters'):
        generate_texture_dataset(root, **dict(kwargs, seed=1))
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='no meta.json'):
        generate_texture_dataset(foreign, **kwargs)
    assert [p.name for p in foreign.iterdir()] == ['notes.txt']
    empty = tmp_path / 'empty'
    empty.mkdir()
    generate_texture_dataset(empty, **kwargs)
    assert _files(empty) == before
    assert not list(tmp_path.glob('.*.tmp-*'))  # no temporary folder left behind


# ----------------------------------------------------------------------------- mmseg dataset


def test_mmseg_dataset_through_config_pipeline(default_root):
    init_default_scope('mmseg')
    cfg = Config.fromfile(CONFIG)
    for loader, split, size in ((cfg.train_dataloader, 'train', 80), (cfg.val_dataloader, 'val', 20)):
        dataset_cfg = dict(loader.dataset, data_root=str(default_root))
        dataset = DATASETS.build(dataset_cfg)
        assert isinstance(dataset, TextureSegDataset) and len(dataset) == size
        assert dataset.metainfo['classes'] == CLASSES
        sample = dataset[0]
        assert tuple(sample['inputs'].shape) == (3, 128, 128)
        seg = sample['data_samples'].gt_sem_seg.data
        assert tuple(seg.shape) == (1, 128, 128) and int(seg.max()) < NUM_CLASSES
        assert sample['data_samples'].img_path.endswith(osp.join('img_dir', split, '0000.png'))
    assert cfg.val_evaluator == dict(type='IoUMetric', iou_metrics=['mIoU'])


def test_mmseg_dataset_generates_missing_root(tmp_path):
    init_default_scope('mmseg')
    generate_cfg = dict(seed=0, num_train=3, num_val=2, image_size=32)
    dataset = DATASETS.build(
        dict(type='TextureSegDataset', data_root=str(tmp_path / 'auto'), generate_cfg=generate_cfg,
             data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'), pipeline=[]))
    assert len(dataset) == 2 and (tmp_path / 'auto' / 'meta.json').is_file()


# ----------------------------------------------------------------------------- degradation hurts


def plain_degradation(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur (sigma 1.5) -> downscale x0.5 -> Gaussian noise (sigma 8) -> JPEG (q 35) -> upscale back."""
    height, width = img.shape[:2]
    img = cv2.GaussianBlur(img, (0, 0), 1.5)
    img = cv2.resize(img, (width // 2, height // 2), interpolation=cv2.INTER_AREA).astype(np.float32)
    img = np.clip(img + rng.normal(0.0, 8.0, img.shape), 0, 255).astype(np.uint8)
    _, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, 35])
    return cv2.resize(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), (width, height), interpolation=cv2.INTER_LINEAR)


def _patch_features(root: Path, split: str, degrade: bool, kind: str = 'texture') -> Tuple[np.ndarray, np.ndarray]:
    """Features of single-class patches; returns (features, labels).

    ``kind='texture'``: a uniform LBP histogram (P=8, R=1) and the energies of three band-pass levels
    relative to the patch std. ``kind='intensity'``: the patch's grey mean and std only.
    """
    rng = np.random.default_rng(0)
    transform = (lambda img: plain_degradation(img, rng)) if degrade else None
    features, labels = [], []
    for grey, label in _read_split(root, split, transform):
        lbp = local_binary_pattern(grey, 8, 1, 'uniform').astype(np.int64)
        g = grey.astype(np.float32)
        blurs = [g] + [cv2.GaussianBlur(g, (0, 0), s) for s in (1, 2, 4)]
        bands = [np.abs(a - b) for a, b in zip(blurs[:-1], blurs[1:])]
        for y in range(0, g.shape[0] - PATCH + 1, STRIDE):
            for x in range(0, g.shape[1] - PATCH + 1, STRIDE):
                window = (slice(y, y + PATCH), slice(x, x + PATCH))
                if not (label[window] == label[y, x]).all():
                    continue
                std = g[window].std() + 1e-3
                if kind == 'intensity':
                    features.append([g[window].mean(), std])
                    labels.append(label[y, x])
                    continue
                histogram = np.bincount(lbp[window].ravel(), minlength=10) / PATCH**2
                features.append(np.concatenate([histogram, [band[window].mean() / std for band in bands]]))
                labels.append(label[y, x])
    return np.array(features), np.array(labels)


def _nearest_class_mean(train: Tuple[np.ndarray, np.ndarray], test: Tuple[np.ndarray, np.ndarray]) -> float:
    """Accuracy of a nearest-class-mean classifier on standardised features."""
    (x_train, y_train), (x_test, y_test) = train, test
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    centres = np.stack([((x_train[y_train == c] - mean) / std).mean(0) for c in range(NUM_CLASSES)])
    dist = ((((x_test - mean) / std)[:, None] - centres[None])**2).sum(-1)
    return float((dist.argmin(1) == y_test).mean())


def test_degradation_hurts_texture_discrimination(default_root):
    """Measured (seed 0): clean 0.92, clean-fit on degraded 0.30, degraded-fit on degraded 0.74;
    grey mean/std alone 0.19 (chance 0.125)."""
    clean_train = _patch_features(default_root, 'train', degrade=False)
    clean_val = _patch_features(default_root, 'val', degrade=False)
    degraded_train = _patch_features(default_root, 'train', degrade=True)
    degraded_val = _patch_features(default_root, 'val', degrade=True)
    assert len(clean_val[1]) > 300 and set(clean_val[1].tolist()) == set(range(NUM_CLASSES))

    intensity = _nearest_class_mean(_patch_features(default_root, 'train', False, 'intensity'),
                                    _patch_features(default_root, 'val', False, 'intensity'))
    clean = _nearest_class_mean(clean_train, clean_val)
    shifted = _nearest_class_mean(clean_train, degraded_val)  # trained clean, tested degraded (DT)
    refit = _nearest_class_mean(degraded_train, degraded_val)  # trained and tested degraded (FT)
    print(f'NCM patch accuracy: grey mean/std only {intensity:.3f}; texture clean {clean:.3f}, '
          f'clean->degraded {shifted:.3f}, degraded->degraded {refit:.3f}')
    assert intensity <= 0.3  # brightness and contrast alone barely beat chance (0.125)
    assert clean >= 0.85
    assert shifted <= 0.5  # domain shift: the clean model collapses on degraded patches
    assert refit <= clean - 0.1  # information loss: even a model fit on degraded patches is worse
    assert refit >= shifted + 0.2  # ... but adapting to the degradation recovers much of it
