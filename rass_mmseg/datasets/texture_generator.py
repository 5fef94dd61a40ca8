"""Generator of the embedded texture segmentation dataset (the offline default of rass_mmseg).

RASS (arXiv 2602.14042) is about segmentation that survives blur, noise, JPEG and down-sampling.
To show that on a CPU with nothing downloaded, this module writes a small dataset whose classes are
told apart by TEXTURE and fine detail, not by brightness or colour: every image is a mosaic of
warped Voronoi cells, each cell filled with one class texture whose grey levels are normalised to a
shared mean and standard deviation. Degradations that remove fine detail therefore remove most of
the evidence for the classes.

Textures: ``brick``, ``grass``, ``gravel`` and ``tissue`` are real photographs shipped inside the
scikit-image wheel (``skimage.data``; ``tissue`` is the immunohistochemistry slide in grey); the
training split crops only the top half of each photo and the validation split only the bottom half,
so validation texture pixels are never seen in training. ``text``, ``sand``, ``fabric`` and ``cloud``
are procedural (rendered letters, fine grain, a plain weave of 4-6 px period, smooth low-frequency
shading).

Layout written by :func:`generate_texture_dataset` (mmseg's folder layout, ``reduce_zero_label=False``)::

    out_dir/img_dir/{train,val}/0000.png   RGB images (grey texture, one mild tint per image)
    out_dir/ann_dir/{train,val}/0000.png   uint8 class indices 0..7 (no ignore pixels)
    out_dir/meta.json                      seed, parameters, classes, palette, counts, fractions

The same seed and parameters give byte-identical files.
"""
import functools
import json
import os
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import cv2
import numpy as np

__all__ = ['CLASSES', 'PALETTE', 'GENERATOR_VERSION', 'generate_texture_dataset', 'render_texture']

GENERATOR_VERSION = 1
CLASSES = ('brick', 'grass', 'gravel', 'tissue', 'text', 'sand', 'fabric', 'cloud')
PALETTE = [[180, 60, 50], [60, 170, 60], [140, 140, 140], [200, 120, 200],
           [250, 250, 80], [230, 190, 120], [70, 110, 220], [150, 230, 250]]
SPLITS = ('train', 'val')

# skimage.data loader name and the factor applied to the photo before cropping (texture scale).
_PHOTO_SOURCES = {
    'brick': ('brick', 0.5),
    'grass': ('grass', 0.5),
    'gravel': ('gravel', 0.5),
    'tissue': ('immunohistochemistry', 0.5),
}
_GREY_MEAN = 128.0  # every class layer is normalised to this mean ...
_GREY_STD = 40.0  # ... and this standard deviation, so grey-level statistics do not name the class
_ZOOM_RANGE = (1.0, 1.25)  # random zoom of each crop; narrow so texture scale stays a class cue
_CELLS_RANGE = (3, 6)  # Voronoi cells per image, inclusive
_LETTERS = 'abcdefghijklmnopqrstuvwxyz'


@functools.lru_cache(maxsize=None)
def _photo_half(name: str, split: str) -> np.ndarray:
    """Return the grey, rescaled top (train) or bottom (val) half of a skimage photo as float32."""
    import skimage.data  # local import: only the generator needs scikit-image
    loader, factor = _PHOTO_SOURCES[name]
    photo = np.asarray(getattr(skimage.data, loader)())
    if photo.ndim == 3:
        photo = cv2.cvtColor(np.ascontiguousarray(photo[..., :3]), cv2.COLOR_RGB2GRAY)
    half = photo.shape[0] // 2
    photo = photo[:half] if split == 'train' else photo[half:]
    size = (round(photo.shape[1] * factor), round(photo.shape[0] * factor))
    return cv2.resize(photo, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def _blurred_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian white noise of shape (size, size) low-passed by a Gaussian of ``sigma`` pixels."""
    noise = rng.standard_normal((size, size)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)


def _photo_texture(name: str, split: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """Random zoomed crop of a photo texture, randomly flipped and rotated by a multiple of 90."""
    src = _photo_half(name, split)
    crop = int(round(size / rng.uniform(*_ZOOM_RANGE)))
    pad_y, pad_x = max(0, crop - src.shape[0]), max(0, crop - src.shape[1])
    if pad_y or pad_x:  # only for image sizes above the default 128: tile by mirroring
        src = np.pad(src, ((0, pad_y), (0, pad_x)), mode='symmetric')
    y0 = int(rng.integers(0, src.shape[0] - crop + 1))
    x0 = int(rng.integers(0, src.shape[1] - crop + 1))
    patch = src[y0:y0 + crop, x0:x0 + crop]
    interp = cv2.INTER_AREA if crop > size else cv2.INTER_LINEAR
    patch = cv2.resize(patch, (size, size), interpolation=interp)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return np.rot90(patch, int(rng.integers(0, 4)))


def _text_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Lines of random lower-case words, dark anti-aliased strokes on a light page."""
    canvas = np.full((size, size), 210, np.uint8)
    line_step = int(rng.integers(9, 12))
    scale = rng.uniform(0.28, 0.34)
    y = int(rng.integers(6, 10))
    while y < size + line_step:
        x = -int(rng.integers(0, 20))
        while x < size:
            word = ''.join(rng.choice(list(_LETTERS), size=int(rng.integers(2, 9))))
            cv2.putText(canvas, word, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 40, 1, cv2.LINE_AA)
            (width, _), _ = cv2.getTextSize(word, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            x += width + int(rng.integers(4, 9))
        y += line_step
    texture = canvas.astype(np.float32) + 4.0 * rng.standard_normal((size, size)).astype(np.float32)
    return np.rot90(texture, int(rng.integers(0, 4)))


def _fabric_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Plain weave: threads of 4-6 px period crossing over and under, with per-thread shading."""
    period = rng.uniform(4.0, 6.0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    u, v = (xx + rng.uniform(0, period)) / period, (yy + rng.uniform(0, period)) / period
    col, row = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    shade_col = rng.uniform(0.8, 1.2, col.max() + 1).astype(np.float32)[col]
    shade_row = rng.uniform(0.8, 1.2, row.max() + 1).astype(np.float32)[row]
    across_col = np.sin(np.pi * (u - col)) * shade_col  # vertical thread profile
    across_row = np.sin(np.pi * (v - row)) * shade_row  # horizontal thread profile
    texture = np.where((col + row) % 2 == 0, across_col, across_row)
    return texture + 0.08 * rng.standard_normal((size, size)).astype(np.float32)


def render_texture(name: str, rng: np.random.Generator, size: int, split: str = 'train') -> np.ndarray:
    """Render one class texture, normalised to the shared grey mean and standard deviation.

    Args:
        name: A class name of :data:`CLASSES`.
        rng: Source of randomness (crop position, zoom, flips, procedural noise).
        size: Side of the square output in pixels.
        split: ``'train'`` or ``'val'``; selects the half of a photo texture that is cropped.

    Returns:
        float32 array of shape (size, size), mean 128 and std 40 before clipping to [0, 255].
    """
    if name in _PHOTO_SOURCES:
        texture = _photo_texture(name, split, rng, size)
    elif name == 'text':
        texture = _text_texture(rng, size)
    elif name == 'sand':
        texture = _blurred_noise(rng, size, 0.7) + 0.5 * _blurred_noise(rng, size, 1.5)
    elif name == 'fabric':
        texture = _fabric_texture(rng, size)
    elif name == 'cloud':
        texture = _blurred_noise(rng, size, size / 12.0)
    else:
        raise KeyError(f'unknown texture class {name!r}; expected one of {CLASSES}')
    texture = np.ascontiguousarray(texture, dtype=np.float32)
    texture = (texture - texture.mean()) / max(float(texture.std()), 1e-6)
    return np.clip(texture * _GREY_STD + _GREY_MEAN, 0.0, 255.0)


def _voronoi_layout(rng: np.random.Generator, size: int) -> Tuple[np.ndarray, int]:
    """Warped Voronoi partition of a (size, size) grid; returns cell ids and the number of cells."""
    num_cells = int(rng.integers(_CELLS_RANGE[0], _CELLS_RANGE[1] + 1))
    centres = rng.uniform(0, size, (num_cells, 2)).astype(np.float32)
    warp = [_blurred_noise(rng, size, size / 8.0) for _ in range(2)]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy = yy + 0.08 * size * warp[0] / max(float(np.abs(warp[0]).max()), 1e-6)
    xx = xx + 0.08 * size * warp[1] / max(float(np.abs(warp[1]).max()), 1e-6)
    dist = (yy[None] - centres[:, 0, None, None])**2 + (xx[None] - centres[:, 1, None, None])**2
    return dist.argmin(axis=0), num_cells


def _render_split(out_dir: Path, split: str, num_images: int, seed: int, size: int) -> Dict:
    """Write the images and label maps of one split; returns its region counts and pixel counts."""
    (out_dir / 'img_dir' / split).mkdir(parents=True)
    (out_dir / 'ann_dir' / split).mkdir(parents=True)
    pixels = np.zeros(len(CLASSES), np.int64)
    regions = np.zeros(len(CLASSES), np.int64)
    for index in range(num_images):
        rng = np.random.default_rng([seed, SPLITS.index(split), index])
        cells, num_cells = _voronoi_layout(rng, size)
        areas = np.bincount(cells.ravel(), minlength=num_cells)
        label = np.zeros((size, size), np.uint8)
        grey = np.zeros((size, size), np.float32)
        used: List[int] = []
        # Balance: the largest cell goes to the class with the fewest pixels so far in this split,
        # and no class repeats inside an image (random tie-break keeps the layout unbiased).
        for cell in sorted(np.flatnonzero(areas), key=lambda c: -areas[c]):
            free = [c for c in range(len(CLASSES)) if c not in used]
            order = rng.permutation(len(free))
            cls = min((free[i] for i in order), key=lambda c: pixels[c])
            used.append(cls)
            mask = cells == cell
            label[mask] = cls
            grey[mask] = render_texture(CLASSES[cls], rng, size, split)[mask]
            pixels[cls] += int(areas[cell])
            regions[cls] += 1
        # One global contrast / brightness / tint per image: shared by all regions, so no class cue.
        grey = (grey - _GREY_MEAN) * rng.uniform(0.85, 1.15) + _GREY_MEAN + rng.uniform(-15, 15)
        rgb = grey[..., None] * rng.uniform(0.9, 1.1, 3).astype(np.float32)
        bgr = np.clip(np.rint(rgb[..., ::-1]), 0, 255).astype(np.uint8)
        name = f'{index:04d}.png'
        cv2.imwrite(str(out_dir / 'img_dir' / split / name), bgr)
        cv2.imwrite(str(out_dir / 'ann_dir' / split / name), label)
    return dict(pixels=pixels, regions=regions)


def _existing_matches(out_dir: Path, params: Dict) -> Optional[Dict]:
    """Return the meta of a finished dataset with the same parameters in ``out_dir``, None if the
    folder is absent or empty, and raise if it holds anything else."""
    if not out_dir.exists():
        return None
    if not out_dir.is_dir():
        raise NotADirectoryError(f'{out_dir} exists and is not a folder; cannot write the texture dataset')
    if not any(out_dir.iterdir()):
        return None
    meta_file = out_dir / 'meta.json'
    if not meta_file.is_file():
        raise FileExistsError(f'{out_dir} is not empty and has no meta.json; refusing to write the texture '
                              'dataset there (pick another folder)')
    with open(meta_file) as f:
        meta = json.load(f)
    if meta.get('params') != params or meta.get('generator_version') != GENERATOR_VERSION:
        raise FileExistsError(f'{out_dir} holds a texture dataset made with other parameters '
                              f'({meta.get("params")}, version {meta.get("generator_version")}); '
                              'delete it or pick another folder')
    return meta


def generate_texture_dataset(out_dir: Union[str, os.PathLike],
                             seed: int = 0,
                             num_train: int = 80,
                             num_val: int = 20,
                             image_size: int = 128) -> Dict:
    """Generate the embedded texture segmentation dataset, or reuse an identical one.

    The dataset is first written to a temporary sibling folder and moved into place when complete,
    so an interrupted run never leaves a half-written ``out_dir``. If ``out_dir`` already holds a
    dataset made with the same parameters it is left untouched (idempotent); if it holds anything
    else, nothing is written and an error names the folder.

    Args:
        out_dir: Folder to create (its parent is created if needed).
        seed: Seed of every random choice; the same seed gives byte-identical files.
        num_train: Number of training images.
        num_val: Number of validation images.
        image_size: Side of the square images in pixels.

    Returns:
        The content of ``out_dir/meta.json``: seed and parameters, classes, palette, image and region
        counts, and the class pixel fractions of each split.
    """
    if seed < 0 or image_size < 16 or num_train < 1 or num_val < 1:
        raise ValueError(f'need seed >= 0, image_size >= 16 and at least one image per split, got seed={seed}, '
                         f'image_size={image_size}, num_train={num_train}, num_val={num_val}')
    out_dir = Path(out_dir)
    params = dict(seed=int(seed), num_train=int(num_train), num_val=int(num_val), image_size=int(image_size))
    meta = _existing_matches(out_dir, params)
    if meta is not None:
        return meta

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = out_dir.parent / f'.{out_dir.name}.tmp-{os.getpid()}'
    shutil.rmtree(tmp_dir, ignore_errors=True)
    try:
        stats = {split: _render_split(tmp_dir, split, n, params['seed'], params['image_size'])
                 for split, n in zip(SPLITS, (num_train, num_val))}
        meta = dict(
            generator='rass_mmseg.datasets.texture_generator',
            generator_version=GENERATOR_VERSION,
            params=params,
            classes=list(CLASSES),
            palette=PALETTE,
            counts={split: n for split, n in zip(SPLITS, (num_train, num_val))},
            regions={s: dict(zip(CLASSES, stats[s]['regions'].tolist())) for s in SPLITS},
            class_pixel_fractions={
                s: dict(zip(CLASSES, np.round(stats[s]['pixels'] / stats[s]['pixels'].sum(), 4).tolist()))
                for s in SPLITS
            })
        with open(tmp_dir / 'meta.json', 'w') as f:
            json.dump(meta, f, indent=2)
            f.write('\n')
        if out_dir.is_dir():  # empty (checked above): replace it
            out_dir.rmdir()
        os.rename(tmp_dir, out_dir)
    except OSError:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        # Another process may have finished the same dataset first; accept it if it matches.
        meta = _existing_matches(out_dir, params)
        if meta is None:
            raise
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return meta
