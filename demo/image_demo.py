"""Segment a photo, or every image of a folder, with a config and its checkpoint: mmseg's ``demo/image_demo.py``
for rass_mmseg configs.

    python demo/image_demo.py demo.jpg CONFIG CHECKPOINT [--out-dir work_dirs/demo] [--device cuda:0]

For each image ``NAME.EXT`` it writes into ``--out-dir`` (default ``work_dirs/demo`` under the current folder, which
the repository's ``.gitignore`` ignores):

- ``overlay/NAME.png``: the prediction painted over the image, as mmseg's ``show_result_pyplot`` draws it
  (``SegLocalVisualizer``; ``--opacity``, ``--with-labels``);
- ``mask/NAME.png``: the class index of each pixel, the image's size (8-bit; 16-bit past 256 classes);
- ``side_by_side/NAME.png``: input | prediction (``SideBySideSegVisualizer``: with a config that degrades its test
  images, the input panel is the degraded image the model saw).

A restorer's config (SCR) predicts no classes: it gets ``side_by_side/NAME.png`` only (LQ | restored | input).
A folder is read in name order, without sub-folders, for the files ending in :data:`rass_mmseg.utils.IMAGE_SUFFIXES`.
``--device`` defaults to ``cuda:0`` when CUDA is available, else ``cpu`` (mmseg's demo always defaults to
``cuda:0``). ``--cfg-options`` changes the config, e.g. ``model.data_preprocessor.degrade=never`` to segment an
already low-quality photo as it is with an ``-lq`` config.
"""
import argparse
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

import mmcv
import numpy as np
import torch
from mmengine.config import DictAction
from mmengine.model import revert_sync_batchnorm
from mmseg.apis import inference_model, init_model
from mmseg.visualization import SegLocalVisualizer

import rass_mmseg  # noqa: F401  (registers the plugin and the rass_mmseg:: config scope before the config is read)
from rass_mmseg.utils import list_images
from rass_mmseg.visualization import SideBySideSegVisualizer

DRAWINGS = ('overlay', 'mask', 'side_by_side')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('img', help='an image file, or a folder of images')
    parser.add_argument('config', help='config file (a path, or rass_mmseg::<path> once the package is installed)')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-dir', default=osp.join('work_dirs', 'demo'), help='folder of the outputs')
    parser.add_argument('--device', default=None, help='device (default: cuda:0 when CUDA is available, else cpu)')
    parser.add_argument('--opacity', type=float, default=0.5, help='opacity of the painted mask, in (0, 1]')
    parser.add_argument('--with-labels', action='store_true', help='write the class names on the overlay')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys, key=value')
    args = parser.parse_args(argv)
    if not 0 < args.opacity <= 1:
        parser.error(f'--opacity must be in (0, 1], got {args.opacity}')
    return args


def pick_device(device: Optional[str]) -> str:
    """``device``, or ``cuda:0`` when CUDA is available, else ``cpu``."""
    return device or ('cuda:0' if torch.cuda.is_available() else 'cpu')


def output_paths(images: Sequence[str], out_dir: str) -> Dict[str, Dict[str, str]]:
    """The output file of each drawing of each image; refuses two images with one name, or an output that is an
    input."""
    outputs: Dict[str, Dict[str, str]] = {}
    by_name: Dict[str, str] = {}
    for image in images:
        name = osp.splitext(osp.basename(image))[0] + '.png'
        if name in by_name:
            raise ValueError(f'{by_name[name]} and {image} would both write {name}: rename one')
        by_name[name] = image
        outputs[image] = {drawing: osp.join(out_dir, drawing, name) for drawing in DRAWINGS}
    inputs = {osp.realpath(image) for image in images}
    for paths in outputs.values():
        for path in paths.values():
            if osp.realpath(path) in inputs:
                raise ValueError(f'{path} is an input image: choose another --out-dir')
    return outputs


def write_mask(labels: torch.Tensor, num_classes: int, out_file: str) -> None:
    """Write the (H, W) class indices as a one-channel PNG (uint8, or uint16 past 256 classes)."""
    dtype = np.uint8 if num_classes <= 256 else np.uint16
    mmcv.imwrite(labels.cpu().numpy().astype(dtype), out_file)


def run(args: argparse.Namespace) -> List[str]:
    """Segment every image of ``args.img`` and write its drawings; returns the files written."""
    images = list_images(args.img)
    for path, what in ((args.config, 'config'), (args.checkpoint, 'checkpoint')):
        if '::' not in path and not osp.isfile(path):
            raise FileNotFoundError(f'{path}: no such {what} file')
    outputs = output_paths(images, args.out_dir)
    device = pick_device(args.device)
    model = init_model(args.config, args.checkpoint, device=device, cfg_options=args.cfg_options)
    if device == 'cpu':
        model = revert_sync_batchnorm(model)
    meta = dict(classes=model.dataset_meta['classes'], palette=model.dataset_meta['palette'])
    overlay = SegLocalVisualizer(name='rass_demo_overlay', alpha=args.opacity)
    side_by_side = SideBySideSegVisualizer(name='rass_demo_side_by_side', alpha=args.opacity)
    overlay.dataset_meta = side_by_side.dataset_meta = meta
    written = []
    for image_path in images:
        result = inference_model(model, image_path)
        image = mmcv.imread(image_path, channel_order='rgb')
        files = outputs[image_path]
        name = osp.basename(image_path)
        if 'pred_sem_seg' in result:
            overlay.add_datasample(name, image, result, draw_gt=False, with_labels=args.with_labels,
                                   out_file=files['overlay'])
            write_mask(result.pred_sem_seg.data[0], len(meta['classes']), files['mask'])
            written += [files['overlay'], files['mask']]
        elif 'restored_img' not in result:
            raise ValueError(f'{args.config}: the model predicts neither classes nor a restored image')
        side_by_side.add_datasample(name, image, result, draw_gt=False, with_labels=args.with_labels,
                                    out_file=files['side_by_side'])
        written.append(files['side_by_side'])
        print(f'{image_path} -> ' + ', '.join(path for path in files.values() if path in written))
    return written


def main(argv: Optional[Sequence[str]] = None) -> None:
    try:
        run(parse_args(argv))
    except (OSError, ValueError) as error:  # a missing or unreadable file, bad input: one line
        sys.exit(f'image_demo: {error}')


if __name__ == '__main__':
    main()
