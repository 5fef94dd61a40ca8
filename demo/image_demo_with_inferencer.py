"""Segment a photo, or every image of a folder, with mmseg's ``MMSegInferencer``: mmseg's
``demo/image_demo_with_inferencer.py`` for rass_mmseg configs.

    python demo/image_demo_with_inferencer.py demo.jpg CONFIG --checkpoint CHECKPOINT [--out-dir work_dirs/demo]

The inferencer writes into ``--out-dir`` (default ``work_dirs/demo_inferencer`` under the current folder, which the
repository's ``.gitignore`` ignores) what it always writes: ``vis/NAME.EXT``, the drawing, and
``pred/NNNNNNNN_pred.png``, the class index of each pixel, numbered in input order (printed). The drawing is mmseg's
overlay (``SegLocalVisualizer``); ``--side-by-side`` keeps the config's ``SideBySideSegVisualizer`` (input |
prediction). ``demo/image_demo.py`` writes both drawings and names the masks after the images.

A folder is read in name order, without sub-folders, for the files ending in
:data:`rass_mmseg.utils.IMAGE_SUFFIXES` (the inferencer itself would read every file of it). ``--device``
defaults to ``cuda:0`` when CUDA is available, else ``cpu``. A restorer's config (SCR) is refused in one line: the
inferencer returns no masks for it (see docs/en/user_guides/3_inference.md).
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional, Sequence

import torch
from mmengine.config import Config, DictAction
from mmseg.apis import MMSegInferencer

import rass_mmseg  # noqa: F401  (registers the plugin and the rass_mmseg:: config scope before the config is read)
from rass_mmseg.utils import list_images


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('img', help='an image file, or a folder of images')
    parser.add_argument('model', help='config file (a path, or rass_mmseg::<path> once the package is installed)')
    parser.add_argument('--checkpoint', default=None, help='checkpoint file (default: the random initialisation)')
    parser.add_argument('--out-dir', default=osp.join('work_dirs', 'demo_inferencer'), help='folder of the outputs')
    parser.add_argument('--device', default=None, help='device (default: cuda:0 when CUDA is available, else cpu)')
    parser.add_argument('--opacity', type=float, default=0.5, help='opacity of the painted mask, in (0, 1]')
    parser.add_argument('--with-labels', action='store_true', help='write the class names on the drawing')
    parser.add_argument('--side-by-side', action='store_true',
                        help="draw with the config's SideBySideSegVisualizer instead of mmseg's overlay")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys, key=value')
    args = parser.parse_args(argv)
    if not 0 < args.opacity <= 1:
        parser.error(f'--opacity must be in (0, 1], got {args.opacity}')
    return args


def run(args: argparse.Namespace) -> List[str]:
    """Run the inferencer on every image of ``args.img``; returns the mask files, in input order."""
    images = list_images(args.img)
    for path, what in ((args.model, 'config'), (args.checkpoint, 'checkpoint')):
        if path is not None and '::' not in path and not osp.isfile(path):
            raise FileNotFoundError(f'{path}: no such {what} file')
    cfg = Config.fromfile(args.model)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if not args.side_by_side:
        cfg.visualizer.type = 'SegLocalVisualizer'
    device = args.device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    inferencer = MMSegInferencer(model=cfg, weights=args.checkpoint, device=device)
    inferencer(images, out_dir=args.out_dir, opacity=args.opacity, with_labels=args.with_labels)
    masks = [osp.join(args.out_dir, 'pred', f'{index:08d}_pred.png') for index in range(len(images))]
    for image, mask in zip(images, masks):
        print(f'{image} -> {osp.join(args.out_dir, "vis", osp.basename(image))}, {mask}')
    return masks


def main(argv: Optional[Sequence[str]] = None) -> None:
    try:
        run(parse_args(argv))
    except (OSError, ValueError) as error:  # a missing or unreadable file, bad input: one line
        sys.exit(f'image_demo_with_inferencer: {error}')


if __name__ == '__main__':
    main()
