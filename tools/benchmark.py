"""Benchmark segmentors like any mmseg model: parameters, inference speed and peak memory.

    python tools/benchmark.py CONFIG [--checkpoint CKPT] [--shape 512 512] [--num-images 20]
    python tools/benchmark.py CONFIG --compare CONFIG2      # both measured in this run, alternating, + ratio
    python tools/benchmark.py CONFIG --compare CONFIG --compare-cfg-options model.backbone.deploy=True

What is timed: ``model.inference`` (the config's ``test_cfg``: whole or slide) on a random, already
normalised batch of one image, under ``torch.no_grad``, after ``--warmup`` passes. The data preprocessor
(and so any online degradation) is NOT timed, nor is data loading. Peak memory is
``torch.cuda.max_memory_allocated`` on a GPU, and the process's peak resident memory on a CPU.
"""
import argparse
import resource
import statistics
import time
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmseg.registry import MODELS
from torch import nn

import rass_mmseg  # noqa: F401  (registers the plugin)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Parameters, FPS and peak memory of mmseg segmentors')
    parser.add_argument('config', help='config file')
    parser.add_argument('--checkpoint', help='optional checkpoint (random weights otherwise)')
    parser.add_argument('--compare', help='a second config measured in the same run')
    parser.add_argument('--compare-checkpoint', help='checkpoint of the second config')
    parser.add_argument('--shape', type=int, nargs=2, default=[512, 512], metavar=('H', 'W'), help='input size')
    parser.add_argument('--num-images', type=int, default=20, help='timed images per round')
    parser.add_argument('--warmup', type=int, default=3, help='untimed passes before timing')
    parser.add_argument('--rounds', type=int, default=3, help='alternating rounds (median FPS is reported)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--amp', choices=['none', 'bf16', 'fp16'], default='none', help='autocast dtype')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='overrides applied to every config')
    parser.add_argument('--compare-cfg-options', nargs='+', action=DictAction,
                        help='overrides applied to the second config only (e.g. model.backbone.deploy=True)')
    return parser.parse_args(argv)


def build_model(config: str, checkpoint: Optional[str], device: str, cfg_options: Optional[dict] = None) -> nn.Module:
    """Build a segmentor from ``config`` in eval mode on ``device``."""
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    cfg.model.train_cfg = None
    model = MODELS.build(cfg.model)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu')
    return model.to(device).eval()


def count_parameters(model: nn.Module) -> Dict[str, int]:
    """Total and trainable (requires_grad) parameter counts."""
    return dict(total=sum(p.numel() for p in model.parameters()),
                trainable=sum(p.numel() for p in model.parameters() if p.requires_grad))


def _peak_memory_mb(device: str) -> float:
    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


@torch.no_grad()
def time_inference(model: nn.Module, shape: Sequence[int], num_images: int, warmup: int, device: str,
                   amp: str = 'none') -> float:
    """Images per second of ``model.inference`` on one random normalised image of ``shape``."""
    height, width = shape
    inputs = torch.rand(1, 3, height, width, device=device) * 2 - 1
    metas = [dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width))]
    dtype = dict(bf16=torch.bfloat16, fp16=torch.float16).get(amp)
    device_type = 'cuda' if device.startswith('cuda') else 'cpu'
    with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
        for _ in range(warmup):
            model.inference(inputs, metas)
        if device_type == 'cuda':
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(num_images):
            model.inference(inputs, metas)
        if device_type == 'cuda':
            torch.cuda.synchronize(device)
    return num_images / (time.perf_counter() - start)


def benchmark(args: argparse.Namespace) -> List[dict]:
    """Measure every config of ``args`` in alternating rounds; returns one result dict per config."""
    specs = [(args.config, args.checkpoint, args.cfg_options)]
    if args.compare:
        options = dict(args.cfg_options or {}, **(args.compare_cfg_options or {}))
        specs.append((args.compare, args.compare_checkpoint, options))
    if args.device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats(args.device)
    models = [build_model(config, checkpoint, args.device, options) for config, checkpoint, options in specs]
    fps: List[List[float]] = [[] for _ in models]
    for _ in range(args.rounds):
        for index, model in enumerate(models):
            fps[index].append(time_inference(model, args.shape, args.num_images, args.warmup, args.device, args.amp))
    results = []
    for (config, _, _), model, values in zip(specs, models, fps):
        results.append(dict(config=config, **count_parameters(model), fps=statistics.median(values),
                            ms_per_image=1000 / statistics.median(values)))
    peak = _peak_memory_mb(args.device)
    for result in results:
        result['peak_memory_mb'] = peak  # one process measures both: the peak covers all models
    return results


def format_table(results: List[dict], args: argparse.Namespace) -> str:
    lines = [f'device={args.device} shape={tuple(args.shape)} images/round={args.num_images} rounds={args.rounds} '
             f'amp={args.amp}',
             f'{"config":<60} {"params":>10} {"trainable":>10} {"FPS":>8} {"ms/img":>8} {"peak MB":>9}']
    for r in results:
        lines.append(f'{r["config"][-60:]:<60} {r["total"] / 1e6:>9.2f}M {r["trainable"] / 1e6:>9.2f}M '
                     f'{r["fps"]:>8.2f} {r["ms_per_image"]:>8.1f} {r["peak_memory_mb"]:>9.0f}')
    if len(results) == 2:
        lines.append(f'FPS ratio (first / second): {results[0]["fps"] / results[1]["fps"]:.3f}')
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> List[dict]:
    args = parse_args(argv)
    results = benchmark(args)
    print(format_table(results, args))
    return results


if __name__ == '__main__':
    main()
