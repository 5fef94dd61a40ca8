"""Write a degraded copy of a dataset split (e.g. ADE20K val -> ADE20K-LQ) with the online degradation engine.

Every image is degraded with the Real-ESRGAN second-order pipeline of ``DegradationDataPreProcessor`` in its
``degrade='always'`` mode: the result depends only on (seed, file name, image), so it equals what the
preprocessor produces on the fly for the same seed, and re-running gives the same bits (on the CPU).

    python tools/dataset_converters/degrade_dataset.py data/ade/images/validation data/ade_lq/images/validation \
        --label-dir data/ade/annotations/validation --out-label-dir data/ade_lq/annotations/validation

Each image is read exactly as the test pipeline reads it: with the image loader of ``--config``'s test pipeline
(``test_dataloader.dataset.pipeline``, else ``test_pipeline``) and its arguments (``imdecode_backend``,
``color_type``, ...), or without a config with the loader's defaults, which are those of mmseg's ADE20K test
pipeline (mmcv's ``LoadImageFromFile``: cv2, ``color``, EXIF orientation applied). mmcv's ``LoadImageFromFile``
itself is replaced by ``LoadImageFromFileChecked`` with the same arguments (the same pixels for every file that
decodes, except a 16-bit image with ``imdecode_backend='pillow'``, which mmcv saturates to white and the checked
loader scales as cv2 does), so an empty, truncated or non-image file stops the run with a one-line error naming it.

Images are written as PNG (lossless, same stem and sub-folders), so a dataset config needs ``img_suffix='.png'``;
two source images that would be written as one file (``a.jpg`` and ``a.png``) are refused before anything is
written. A file whose header declares more than ``--max-pixels`` pixels is refused before it is decoded (a
decompression bomb: a 389 KB PNG can declare 20000x20000 pixels), and a decode that runs out of memory is reported
as that. The run is resumable: finished images are skipped, and a partly written file never carries the final name.
``manifest.json`` (seed, degradation parameters, the backend that ran them, image loader, rass_mmseg version) is
written next to the images; a folder whose manifest has another seed, other parameters, another backend or another
loader, or written from another source folder (or label folder), is refused (a manifest written before the loader
was recorded counts as the default loader, one written before the backend was recorded as ``'torch'``: that is how
those images were made). The label output folder must be neither the image output folder nor inside it (or around
it), so that labels and images never mix.

On the CPU the engine runs its OpenCV backend (``backend='auto'``), as the preprocessor does on the CPU, so the
output stays equal to ``degrade='always'`` on the CPU; set ``backend='torch'`` in the config's degradation keys to
reproduce folders written with the torch operations.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
MANIFEST_NAME = 'manifest.json'
PARTIAL_SUFFIX = '.partial.png'
#: The loader without a config: mmcv's ``LoadImageFromFile`` defaults (mmseg's ADE20K test pipeline), checked.
DEFAULT_LOADER = dict(type='LoadImageFromFileChecked')
#: Its manifest record (see ``loader_record``), also the loader of manifests written before it was recorded.
DEFAULT_LOADER_RECORD = dict(type='LoadImageFromFileChecked', color_type='color', imdecode_backend='cv2',
                             to_float32=False)
#: Loader arguments that say where the bytes come from or which files are refused, not how they decode (left out of
#: the manifest); the tool checks ``max_pixels`` itself (``--max-pixels``).
FILE_ACCESS_KEYS = ('type', '_scope_', 'backend_args', 'file_client_args', 'ignore_empty', 'max_pixels')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Write a degraded (low-quality) copy of an image folder.')
    parser.add_argument('src_dir', help='folder of clean images (searched recursively)')
    parser.add_argument('out_dir', help='folder for the degraded images; must not be, or be inside, src_dir')
    parser.add_argument('--label-dir', help='folder of labels to carry over unchanged')
    parser.add_argument('--out-label-dir', help='where the labels go (required with --label-dir)')
    parser.add_argument('--labels', choices=('copy', 'link'), default='copy',
                        help='copy the label files or symlink them (default: copy)')
    parser.add_argument('--seed', type=int, default=None,
                        help='benchmark seed (default: test_seed of --config, else 0)')
    parser.add_argument('--config', help='config defining degradation_preprocessor (or model.data_preprocessor) '
                        'whose degradation keys and test_seed are used, and whose test pipeline image loader reads '
                        'the images; default: the RASS values and the loader defaults (cv2, color)')
    parser.add_argument('--batch-size', type=int, default=8, help='images of one size degraded together')
    parser.add_argument('--device', default='cpu', help='torch device (bit-exact reruns are promised on cpu)')
    parser.add_argument('--limit', type=int, default=None, help='stop after this many new images (at least 1)')
    parser.add_argument('--max-pixels', type=int, default=None,
                        help='refuse, before decoding, an image whose header declares more pixels (width x height) '
                        "than this (default: the max_pixels of --config's image loader, else 100000000, above every "
                        'real dataset photo); 0 checks nothing')
    return parser.parse_args(argv)


def fail(message: str) -> None:
    """Exit with a one-line error."""
    sys.exit(f'degrade_dataset.py: error: {message}')


def is_within(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (symlinks resolved)."""
    path, folder = osp.realpath(path), osp.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_folders(args: argparse.Namespace) -> None:
    if not osp.isdir(args.src_dir):
        fail(f'source folder {args.src_dir!r} does not exist')
    sources = [args.src_dir] + ([args.label_dir] if args.label_dir else [])
    outputs = [args.out_dir] + ([args.out_label_dir] if args.out_label_dir else [])
    for output in outputs:
        for source in sources:
            if is_within(output, source):
                fail(f'refusing to write {output!r} into the source folder {source!r}; choose another folder')
    if bool(args.label_dir) != bool(args.out_label_dir):
        fail('--label-dir and --out-label-dir go together')
    if args.label_dir and not osp.isdir(args.label_dir):
        fail(f'label folder {args.label_dir!r} does not exist')
    if args.out_label_dir and (is_within(args.out_label_dir, args.out_dir) or is_within(args.out_dir,
                                                                                      args.out_label_dir)):
        fail(f'--out-label-dir {args.out_label_dir!r} and the image output folder {args.out_dir!r} must be separate '
             'folders, neither inside the other (labels and images would mix)')
    if args.batch_size < 1:
        fail(f'--batch-size must be at least 1, got {args.batch_size}')
    if args.limit is not None and args.limit < 1:
        fail(f'--limit must be at least 1, got {args.limit} (leave it out to degrade every image)')
    if args.max_pixels is not None and args.max_pixels < 0:
        fail(f'--max-pixels must be at least 1 (or 0: no check), got {args.max_pixels}')


def list_files(folder: str, extensions: Optional[Tuple[str, ...]] = None) -> List[str]:
    """Sorted paths relative to ``folder`` of its files (with one of ``extensions`` when given)."""
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            if extensions is None or osp.splitext(name)[1].lower() in extensions:
                found.append(osp.relpath(osp.join(root, name), folder))
    return sorted(found)


def output_path(out_dir: str, relative: str) -> str:
    return osp.join(out_dir, osp.splitext(relative)[0] + '.png')


def check_one_output_per_image(src_dir: str, out_dir: str, relatives: List[str]) -> None:
    """Refuse two source images that would be written as one output file (``a.jpg`` and ``a.png``)."""
    written_from: Dict[str, str] = {}
    for relative in relatives:
        target = output_path(out_dir, relative)
        if target in written_from:
            fail(f'{osp.join(src_dir, written_from[target])} and {osp.join(src_dir, relative)} would both be written '
                 f'as {target}; rename one of them (images are written as PNG under their stem)')
        written_from[target] = relative


def load_settings(args: argparse.Namespace) -> Tuple[Dict[str, Any], int, Dict[str, Any], str]:
    """Degradation keys, seed, image loader config and where that loader comes from (``--config`` / ``--seed``)."""
    degradation: Dict[str, Any] = {}
    seed = 0
    loader, loader_source = dict(DEFAULT_LOADER), 'the loader defaults'
    if args.config:
        from mmengine.config import Config
        config = Config.fromfile(args.config)
        loader, loader_source = pipeline_loader(config, args.config)
        preprocessor = config.get('degradation_preprocessor') or config.get('model', {}).get('data_preprocessor')
        if not preprocessor or preprocessor.get('type') != 'DegradationDataPreProcessor':
            fail(f'{args.config!r} defines no DegradationDataPreProcessor (degradation_preprocessor or '
                 'model.data_preprocessor)')
        degradation = dict(preprocessor.get('degradation') or {})
        seed = int(preprocessor.get('test_seed', 0))
    if args.seed is not None:
        seed = args.seed
    return degradation, seed, loader, loader_source


def pipeline_loader(config: Any, name: str) -> Tuple[Dict[str, Any], str]:
    """The image loader config of ``config``'s test pipeline (mmcv's ``LoadImageFromFile`` made the checked
    loader, same arguments) and where it was found; the defaults when the config has no test pipeline.

    Args:
        config: The loaded ``--config`` (its ``custom_imports`` already imported).
        name: The config's path, for messages.
    """
    from mmcv.transforms import LoadImageFromFile
    from mmseg.registry import TRANSFORMS
    dataset = (config.get('test_dataloader') or {}).get('dataset') or {}
    for where, pipeline in (('test_dataloader.dataset.pipeline', dataset.get('pipeline')),
                            ('test_pipeline', config.get('test_pipeline'))):
        if pipeline is None:
            continue
        for step in pipeline:
            kind = step.get('type')
            cls = kind if isinstance(kind, type) else TRANSFORMS.get(kind) if isinstance(kind, str) else None
            if isinstance(cls, type) and issubclass(cls, LoadImageFromFile):
                loader = {key: value for key, value in step.items() if key != '_scope_'}
                if cls is LoadImageFromFile:
                    loader['type'] = 'LoadImageFromFileChecked'
                return loader, f'{where} of {name}'
        fail(f'{name}: {where} has no image loader (LoadImageFromFile or a subclass); expected one to read the '
             'images as the test pipeline does')
    return dict(DEFAULT_LOADER), f'the loader defaults ({name} has no test pipeline)'


def loader_record(loader: Any, loader_cfg: Dict[str, Any]) -> Dict[str, Any]:
    """What decides how the loader decodes: its class, its decoding attributes and any other argument."""
    record = {key: value for key, value in loader_cfg.items() if key not in FILE_ACCESS_KEYS}
    record.update(type=type(loader).__name__, color_type=loader.color_type, imdecode_backend=loader.imdecode_backend,
                  to_float32=loader.to_float32)
    return record


def max_pixels_of(args: argparse.Namespace, loader_cfg: Dict[str, Any]) -> Optional[int]:
    """The pixel limit: ``--max-pixels`` (0: none), else the loader's ``max_pixels``, else the default."""
    from rass_mmseg.datasets.image_header import DEFAULT_MAX_PIXELS
    if args.max_pixels is not None:
        return args.max_pixels or None
    return loader_cfg.get('max_pixels', DEFAULT_MAX_PIXELS)


def build_loader(loader_cfg: Dict[str, Any]) -> Any:
    """The image loader; a file that does not decode stops the run (``read_image`` checks the pixel limit)."""
    from mmseg.registry import TRANSFORMS

    from rass_mmseg.datasets import LoadImageFromFileChecked
    loader = TRANSFORMS.build(dict(loader_cfg, ignore_empty=False))
    if isinstance(loader, LoadImageFromFileChecked):
        loader.max_pixels = None  # read_image checks --max-pixels (by default the config's value) for every loader
    return loader


def read_image(loader: Any, path: str, max_pixels: Optional[int] = None) -> Any:
    """The image at ``path`` as the loader gives it, as 3-channel uint8 BGR; a one-line error naming the file
    when it cannot be read, declares more than ``max_pixels`` pixels (checked before decoding) or is not such an
    image.

    Args:
        loader: The built image loader (a ``LoadImageFromFile`` subclass).
        path: The image file.
        max_pixels: The largest ``width * height`` that its header may declare; ``None`` checks nothing.
    """
    import numpy as np

    from rass_mmseg.datasets.image_header import check_pixel_limit, describe_declared_size
    try:
        check_pixel_limit(path, path, max_pixels, setting='--max-pixels')
    except OSError as error:
        fail(str(error))
    try:
        results = loader(dict(img_path=path))
    except Exception as error:  # LoadImageFromFileChecked's OSError is one line naming the file; others may not be
        lines = str(error).strip().splitlines()
        if len(lines) == 1 and lines[0].startswith(f'{path}: '):
            fail(lines[0])
        reason = lines[-1][:200] if lines else ''
        if isinstance(error, MemoryError):
            fail(f'{path}: out of memory decoding the image with {type(loader).__name__}, '
                 f'{describe_declared_size(path)}; free memory, or lower --max-pixels to refuse such files')
        fail(f'{path}: cannot read the image with {type(loader).__name__}: {type(error).__name__}: {reason}')
    if results is None:
        fail(f'{path}: the image loader returned nothing (ignore_empty); expected an image')
    image = results['img']
    if image.dtype.kind == 'f' and np.array_equal(image, np.clip(np.round(image), 0, 255)):
        image = image.astype(np.uint8)  # to_float32 of an 8-bit image: the same values
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        fail(f'{path}: the image loader gives a {image.dtype} image of shape {image.shape}; the degradation takes '
             "3-channel 8-bit images (color_type='color')")
    return image


def write_manifest(out_dir: str, manifest: Dict[str, Any]) -> None:
    temporary = osp.join(out_dir, MANIFEST_NAME + '.partial')
    with open(temporary, 'w') as file:
        json.dump(manifest, file, indent=2, sort_keys=True)
    os.replace(temporary, osp.join(out_dir, MANIFEST_NAME))


def check_existing_manifest(out_dir: str, manifest: Dict[str, Any]) -> None:
    path = osp.join(out_dir, MANIFEST_NAME)
    if not osp.exists(path):
        return
    with open(path) as file:
        existing = json.load(file)
    # images of a manifest without 'loader' were read as the default loader reads them (cv2, color)
    existing.setdefault('loader', DEFAULT_LOADER_RECORD)
    # images of a manifest without 'backend' were degraded by the torch operations (before the OpenCV backend)
    existing.setdefault('backend', 'torch')
    for key in ('seed', 'degradation', 'identity', 'loader', 'backend'):
        if comparable(key, existing.get(key)) != comparable(key, manifest[key]):
            fail(f'{path} was written with another {key} ({existing.get(key)!r}); resume with the same settings '
                 'or use a new folder')
    # the images and labels there are another folder's: resuming would skip them and report them as this one's
    for what, before, now in (('source', existing.get('source'), manifest['source']),
                              ('label source', (existing.get('labels') or {}).get('source'),
                               (manifest['labels'] or {}).get('source'))):
        if before and now and osp.realpath(before) != osp.realpath(now):
            fail(f'{path} was written from the {what} folder {before!r}, not {now!r}; use a new output folder')
    # the same folders (perhaps by another path): the record keeps the paths they were first written from
    manifest['source'] = existing.get('source') or manifest['source']
    manifest['labels'] = existing.get('labels') or manifest['labels']


def comparable(key: str, value: Any) -> Any:
    """A manifest entry as resuming compares it: the degradation keys without 'backend' (the backend that ran is
    compared as the entry 'backend'), and with ops='libjpeg', the only operations before the key existed, and an
    alias of ops by its op set's name ('public_rass', recorded before the op set was named, is 'basicsr')."""
    from rass_mmseg.degradations.backend_registry import OPS_ALIASES
    if key == 'degradation' and isinstance(value, dict):
        ops = value.get('ops', 'libjpeg')
        return dict({name: setting for name, setting in value.items() if name != 'backend'},
                    ops=OPS_ALIASES.get(ops, ops))
    return value


def carry_labels(label_dir: str, out_label_dir: str, mode: str) -> int:
    """Copy or symlink every label file that is not there yet; returns the number of label files."""
    labels = list_files(label_dir)
    for relative in labels:
        target = osp.join(out_label_dir, relative)
        if osp.lexists(target):
            continue
        os.makedirs(osp.dirname(target), exist_ok=True)
        source = osp.abspath(osp.join(label_dir, relative))
        if mode == 'link':
            os.symlink(source, target)
        else:
            shutil.copy2(source, target)
    return len(labels)


def batches_of_equal_size(images: List[Any], batch_size: int) -> List[List[int]]:
    """Consecutive indices grouped into batches of images with one size."""
    groups: List[List[int]] = []
    for index, image in enumerate(images):
        if groups and len(groups[-1]) < batch_size and images[groups[-1][0]].shape == image.shape:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    check_folders(args)
    # Heavy imports only once the arguments are known to be sane.
    import cv2
    import numpy as np
    import torch
    from tqdm import tqdm

    from rass_mmseg.degradations import KeyedRandomSource, build_degradation, image_identity
    from rass_mmseg.version import __version__

    degradation_keys, seed, loader_cfg, loader_source = load_settings(args)
    engine = build_degradation(degradation_keys)
    device = torch.device(args.device)
    loader = build_loader(loader_cfg)
    max_pixels = max_pixels_of(args, loader_cfg)
    relatives = list_files(args.src_dir, IMAGE_EXTENSIONS)
    check_one_output_per_image(args.src_dir, args.out_dir, relatives)
    manifest = dict(
        tool='tools/dataset_converters/degrade_dataset.py',
        rass_mmseg_version=__version__,
        seed=seed,
        identity='file name (DegradationDataPreProcessor, degrade="test")',
        degradation=engine.to_dict(),
        backend=engine.backend_for(device).name,
        loader=loader_record(loader, loader_cfg),
        source=osp.abspath(args.src_dir),
        output_format='png',
        images=len(relatives),
        labels=None if not args.label_dir else dict(source=osp.abspath(args.label_dir), mode=args.labels))
    print(f'reading images with {manifest["loader"]} ({loader_source})')
    os.makedirs(args.out_dir, exist_ok=True)
    check_existing_manifest(args.out_dir, manifest)
    write_manifest(args.out_dir, manifest)
    for leftover in list_files(args.out_dir):
        if leftover.endswith(PARTIAL_SUFFIX):
            os.remove(osp.join(args.out_dir, leftover))

    pending = [relative for relative in relatives if not osp.exists(output_path(args.out_dir, relative))]
    if args.limit is not None:
        pending = pending[:args.limit]
    progress = tqdm(total=len(pending), unit='img', desc='degrading', dynamic_ncols=True)
    for start in range(0, len(pending), args.batch_size * 4):
        chunk = pending[start:start + args.batch_size * 4]
        # Read as the test pipeline reads them (BGR, uint8).
        images = [read_image(loader, osp.join(args.src_dir, relative), max_pixels) for relative in chunk]
        for group in batches_of_equal_size(images, args.batch_size):
            hq = torch.from_numpy(np.stack([images[index][..., ::-1] for index in group])).to(device)
            hq = hq.permute(0, 3, 1, 2).float() / 255.0
            identities = [image_identity(chunk[index]) for index in group]
            lq = engine(hq, KeyedRandomSource.from_identities(identities, seed, device))
            lq = (lq * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            for index, image in zip(group, lq):
                target = output_path(args.out_dir, chunk[index])
                os.makedirs(osp.dirname(target), exist_ok=True)
                partial = target[:-len('.png')] + PARTIAL_SUFFIX
                if not cv2.imwrite(partial, np.ascontiguousarray(image[..., ::-1])):
                    fail(f'could not write {partial}')
                os.replace(partial, target)
            progress.update(len(group))
    progress.close()
    if args.label_dir:
        carry_labels(args.label_dir, args.out_label_dir, args.labels)
    done = sum(osp.exists(output_path(args.out_dir, relative)) for relative in relatives)
    print(f'{done}/{len(relatives)} degraded images in {args.out_dir}' +
          (f'; labels {args.labels} to {args.out_label_dir}' if args.label_dir else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
