"""Write a degraded copy of a dataset split (e.g. ADE20K val -> ADE20K-LQ) with the online degradation engine.

Every image is degraded with the Real-ESRGAN second-order pipeline of ``DegradationDataPreProcessor`` in its
``degrade='test'`` mode: the result depends only on (seed, file name, image), so it equals what the
preprocessor produces on the fly for the same seed, and re-running gives the same bits (on the CPU).

    python tools/degrade_dataset.py data/ade/images/validation data/ade_lq/images/validation \
        --label-dir data/ade/annotations/validation --out-label-dir data/ade_lq/annotations/validation

Images are written as PNG (lossless, same stem and sub-folders), so a dataset config needs ``img_suffix='.png'``.
The run is resumable: finished images are skipped, and a partly written file never carries the final name.
``manifest.json`` (seed, degradation parameters, rass_mmseg version) is written next to the images; a folder
whose manifest has another seed or other parameters is refused.
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
                        'whose degradation keys and test_seed are used; default: the RASS values')
    parser.add_argument('--batch-size', type=int, default=8, help='images of one size degraded together')
    parser.add_argument('--device', default='cpu', help='torch device (bit-exact reruns are promised on cpu)')
    parser.add_argument('--limit', type=int, default=None, help='stop after this many new images')
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
    if args.batch_size < 1:
        fail(f'--batch-size must be at least 1, got {args.batch_size}')


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


def load_settings(args: argparse.Namespace) -> Tuple[Dict[str, Any], int]:
    """Degradation keys and seed from ``--config`` / ``--seed``."""
    degradation: Dict[str, Any] = {}
    seed = 0
    if args.config:
        from mmengine.config import Config
        config = Config.fromfile(args.config)
        preprocessor = config.get('degradation_preprocessor') or config.get('model', {}).get('data_preprocessor')
        if not preprocessor or preprocessor.get('type') != 'DegradationDataPreProcessor':
            fail(f'{args.config!r} defines no DegradationDataPreProcessor (degradation_preprocessor or '
                 'model.data_preprocessor)')
        degradation = dict(preprocessor.get('degradation') or {})
        seed = int(preprocessor.get('test_seed', 0))
    if args.seed is not None:
        seed = args.seed
    return degradation, seed


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
    for key in ('seed', 'degradation', 'identity'):
        if existing.get(key) != manifest[key]:
            fail(f'{path} was written with another {key} ({existing.get(key)!r}); resume with the same settings '
                 'or use a new folder')


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
    import mmcv
    import numpy as np
    import torch
    from tqdm import tqdm

    from rass_mmseg.models.data_preprocessors.degradation_data_preprocessor import (build_degradation,
                                                                                     image_identity)
    from rass_mmseg.models.data_preprocessors.degradations import KeyedRandomSource
    from rass_mmseg.version import __version__

    degradation_keys, seed = load_settings(args)
    engine = build_degradation(degradation_keys)
    relatives = list_files(args.src_dir, IMAGE_EXTENSIONS)
    manifest = dict(
        tool='tools/degrade_dataset.py',
        rass_mmseg_version=__version__,
        seed=seed,
        identity='file name (DegradationDataPreProcessor, degrade="test")',
        degradation=engine.to_dict(),
        source=osp.abspath(args.src_dir),
        output_format='png',
        images=len(relatives),
        labels=None if not args.label_dir else dict(source=osp.abspath(args.label_dir), mode=args.labels))
    os.makedirs(args.out_dir, exist_ok=True)
    check_existing_manifest(args.out_dir, manifest)
    write_manifest(args.out_dir, manifest)
    for leftover in list_files(args.out_dir):
        if leftover.endswith(PARTIAL_SUFFIX):
            os.remove(osp.join(args.out_dir, leftover))

    pending = [relative for relative in relatives if not osp.exists(output_path(args.out_dir, relative))]
    if args.limit is not None:
        pending = pending[:args.limit]
    device = torch.device(args.device)
    progress = tqdm(total=len(pending), unit='img', desc='degrading', dynamic_ncols=True)
    for start in range(0, len(pending), args.batch_size * 4):
        chunk = pending[start:start + args.batch_size * 4]
        # The same decoding as mmseg's LoadImageFromFile (cv2, BGR, uint8).
        images = []
        for relative in chunk:
            with open(osp.join(args.src_dir, relative), 'rb') as file:
                images.append(mmcv.imfrombytes(file.read(), flag='color', backend='cv2'))
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
