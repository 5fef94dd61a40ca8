"""Draw the RASS chain on a few seeded LQ validation images: LQ | SCR restored | RASS prediction | ground truth, and
the UNet's cross-attention map of each class word present, before SCR (the pretrained tiny SD) and after it.

    python tools/analysis_tools/visualize_rass.py [--work-dir work_dirs/protocols] \
        [--out docs/en/_static/rass_tiny_sd_textures.png]

Reads what tools/analysis_tools/run_protocols.py trained in WORK_DIR: ``scr/iter_N.pth`` (the SCR restorer),
``rass_scr/iter_N.pth`` (RASS trained with that SCR adapter merged) and ``scr/exported_scr_adapter``, on the tiny SD
folder ``--tiny-sd``.
The LQ images are those every protocol is tested on (the SCR config's test-mode degradation, seeded per image).
The attention maps are those L_SCL aligns: the SCR backbone's captured cross-attention layers at SCR's timestep, for
the inference prompt (all class names), averaged over heads, layers and the tokens of the word, each drawn from its
own minimum to its own maximum; the title gives the share of the map's mass inside the word's ground-truth mask,
next to the mask's share of the image (a map that ignores where the class is scores the mask's share).
"""
import argparse
import io
import os
import os.path as osp
import sys
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmseg.registry import DATASETS, MODELS
from PIL import Image
from torch import Tensor

import rass_mmseg  # noqa: F401  (registers the plugin and the weights-only checkpoint loader)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCR_CONFIG = osp.join(REPO, 'configs', 'scr', 'scr_tiny-sd-textures_1xb4-300it_textures-128x128.py')
RASS_CONFIG = osp.join(REPO, 'configs', 'rass',
                       'rass_tiny-sd-textures_segformer-head_1xb4-300it_textures-lq-128x128.py')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/protocols',
                        help='the runs of tools/analysis_tools/run_protocols.py')
    parser.add_argument('--iters', type=int, default=300, help='iteration of the checkpoints to read')
    parser.add_argument('--tiny-sd', default=osp.join(REPO, 'checkpoints', 'tiny-sd-textures'))
    parser.add_argument('--num-images', type=int, default=3, help='draw the first N validation images')
    parser.add_argument('--probe-images', type=int, default=20,
                        help='report the attention share inside the masks over the first N validation images')
    parser.add_argument('--out', default=osp.join(REPO, 'docs', 'en', '_static', 'rass_tiny_sd_textures.png'))
    return parser.parse_args(argv)


def build(config: str, tiny_sd: str, checkpoint: Optional[str], merge_adapters: Sequence[str] = ()):
    """The model of ``config`` on the SD folder ``tiny_sd``, with ``checkpoint`` loaded (None: as built), in eval."""
    cfg = Config.fromfile(config)
    cfg.model.backbone.pretrained = tiny_sd
    cfg.model.backbone.merge_adapters = list(merge_adapters)
    if 'pretrained' in cfg.model.get('decode_head', {}):
        cfg.model.decode_head.pretrained = tiny_sd
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        if not osp.isfile(checkpoint):
            raise FileNotFoundError(f'{checkpoint}: no such checkpoint '
                                    '(run tools/analysis_tools/run_protocols.py first)')
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True, logger='silent')
    return model.eval(), cfg


@torch.no_grad()
def word_maps(scr, inputs: Tensor) -> Tensor:
    """Cross-attention map (N, K, H, W) of each of the K phrases of the SCR backbone's prompt (probabilities)."""
    backbone = scr.backbone
    phrases = backbone.prompt_source.phrases()
    positions = backbone.encode_prompt(phrases).phrase_token_positions
    try:
        latents = backbone(inputs, capture_attention=True)
    finally:
        maps = backbone.attention_store.stop()
    size = latents.shape[-2:]
    per_layer = [F.interpolate(m.mean(1).permute(0, 3, 1, 2), size=size, mode='bilinear', align_corners=False)
                 for m in maps.values()]  # (N, L, h, w) each
    tokens = torch.stack(per_layer).mean(0)
    words = torch.stack([tokens[:, p].mean(1) for p in positions], 1)
    return F.interpolate(words, size=inputs.shape[-2:], mode='bilinear', align_corners=False)


def in_mask_share(attention: Tensor, mask: Tensor) -> float:
    """The share of ``attention``'s (H, W) mass that falls inside the boolean ``mask`` (H, W)."""
    return float((attention * mask).sum() / attention.sum().clamp_min(1e-12))


def attention_accuracy(maps: Tensor, samples, num_classes: int) -> float:
    """The share of annotated pixels whose most attended class word (argmax over the K words of ``maps``, (N, K, H,
    W)) is their class: the attention read as a segmentation (about 1 / K when the words do not know where they are)."""
    hits, total = 0, 0
    for i, sample in enumerate(samples):
        gt = sample.gt_sem_seg.data[0]
        valid = gt < num_classes
        hits += int((maps[i, :num_classes, :gt.shape[0], :gt.shape[1]].argmax(0)[valid] == gt[valid]).sum())
        total += int(valid.sum())
    return hits / max(total, 1)


def colorize(labels: Tensor, palette: Sequence[Sequence[int]]) -> np.ndarray:
    table = np.zeros((256, 3), np.uint8)
    table[:len(palette)] = np.array(palette, np.uint8)
    return table[labels.cpu().numpy().astype(np.int64)]


def to_image(images: Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return (images.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def draw(args: argparse.Namespace) -> str:
    """Run the models on the images and write the figure; returns its path."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    work = osp.abspath(args.work_dir)
    adapter = osp.join(work, 'scr', 'exported_scr_adapter')
    scr, cfg = build(SCR_CONFIG, args.tiny_sd, osp.join(work, 'scr', f'iter_{args.iters}.pth'))
    before, _ = build(SCR_CONFIG, args.tiny_sd, None)  # the pretrained UNet, SCR LoRA still zero
    rass, _ = build(RASS_CONFIG, args.tiny_sd, osp.join(work, 'rass_scr', f'iter_{args.iters}.pth'), [adapter])
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    count = min(max(args.num_images, args.probe_images), len(dataset))
    data = scr.data_preprocessor(pseudo_collate([dataset[i] for i in range(count)]), False)
    inputs, samples = data['inputs'], data['data_samples']
    maps = {'before SCR': word_maps(before, inputs), 'after SCR': word_maps(scr, inputs)}
    classes, palette = dataset.metainfo['classes'], dataset.metainfo['palette']
    report = []
    for stage, stage_maps in maps.items():
        pairs = [(in_mask_share(stage_maps[i, c], sample.gt_sem_seg.data[0] == c),
                  float((sample.gt_sem_seg.data[0] == c).float().mean()))
                 for i, sample in enumerate(samples) for c in torch.unique(sample.gt_sem_seg.data[0]).tolist()
                 if c < len(classes)]
        spread = stage_maps.flatten(2).std(-1) / stage_maps.flatten(2).mean(-1).clamp_min(1e-12)
        report.append(f'{stage}: mean share of a word\'s attention inside its mask '
                      f'{np.mean([p[0] for p in pairs]):.3f} (mean mask area {np.mean([p[1] for p in pairs]):.3f}), '
                      f'spatial std / mean of the maps {float(spread.mean()):.4f}, mean attention probability of a '
                      f'word token {float(stage_maps.mean()):.4f}, pixels whose most attended word names their '
                      f'class {attention_accuracy(stage_maps, samples, len(classes)):.3f}')
    print(f'{count} LQ validation images:\n' + '\n'.join(report))
    inputs, samples = inputs[:args.num_images], samples[:args.num_images]
    with torch.no_grad():
        restored = scr.restore(inputs)
        predictions = rass.predict(inputs, samples)
    rows: List[list] = []
    for i, sample in enumerate(predictions):
        height, width = sample.img_shape
        gt = sample.gt_sem_seg.data[0]
        present = [int(c) for c in torch.unique(gt).tolist() if c < len(classes)]
        rows.append([('LQ input', to_image((inputs[i, :, :height, :width] + 1) / 2)),
                     ('SCR restored', to_image(restored[i, :, :height, :width])),
                     ('RASS prediction', colorize(sample.pred_sem_seg.data[0], palette)),
                     ('ground truth', colorize(gt, palette))])
        for stage, stage_maps in maps.items():
            row = []
            for c in present[:4]:
                attention = stage_maps[i, c, :height, :width]
                share = in_mask_share(attention, gt == c)
                shown = (attention - attention.min()) / (attention.max() - attention.min()).clamp_min(1e-12)
                row.append((f'"{classes[c]}" {stage}\n{share:.0%} in mask ({float((gt == c).float().mean()):.0%} '
                            'area)', shown.cpu().numpy()))
            rows.append(row)
    columns = max(len(row) for row in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.6 * columns, 1.75 * len(rows)), dpi=72, squeeze=False)
    for axis_row, row in zip(axes, rows):
        for axis in axis_row:
            axis.axis('off')
        for axis, (title, image) in zip(axis_row, row):
            axis.imshow(image, cmap='magma', vmin=0, vmax=1, interpolation='nearest')
            axis.set_title(title, fontsize=7)
    fig.tight_layout(pad=0.3)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png')
    plt.close(fig)
    buffer.seek(0)
    Image.open(buffer).convert('RGB').quantize(colors=128).save(args.out, optimize=True)  # a small PNG for the docs
    return args.out


def main(argv: Optional[Sequence[str]] = None) -> None:
    try:
        print(f'wrote {draw(parse_args(argv))}')
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f'visualize_rass: {error}')


if __name__ == '__main__':
    main()
