"""Benchmark segmentors like any mmseg model: parameters, inference speed and peak memory.

    python tools/analysis_tools/benchmark.py CONFIG [--checkpoint CKPT] [--shape 512 512] [--num-images 20]
    python tools/analysis_tools/benchmark.py CONFIG --compare CONFIG2   # both measured in this run, alternating
    python tools/analysis_tools/benchmark.py CONFIG --compare CONFIG --compare-cfg-options model.backbone.deploy=True
    python tools/analysis_tools/benchmark.py CONFIG --mode train --batch-size 2 --amp bf16   # training iterations
    python tools/analysis_tools/benchmark.py CONFIG --without-weights   # paper-size, random init
    python tools/analysis_tools/benchmark.py CONFIG --compile default   # eager vs torch.compile'd UNet

What is timed (``--mode inference``, the default): ``model.inference`` (the config's ``test_cfg``: whole or
slide) on a random, already normalised batch of one image, under ``torch.no_grad``, after ``--warmup``
passes. The data preprocessor (and so any online degradation) is NOT timed, nor is data loading.

``--mode train``: whole ``model.train_step`` iterations (data preprocessor with its online degradation, loss,
backward, optimizer step) on ``--batch-size`` random uint8 images with random labels, through an optimizer
wrapper built from the config's ``optim_wrapper`` (``--amp`` picks mmengine's ``AmpOptimWrapper`` with that
dtype, ``none`` a plain ``OptimWrapper``; optimizer, clipping and parameter-wise settings are the config's).
Data loading is not timed.

Peak memory is ``torch.cuda.max_memory_allocated`` on a GPU, and the process's peak resident memory on a CPU.

``--compile MODE`` measures the config twice in the same run, eagerly and with ``model.backbone.compile=dict(
mode=MODE)`` (``torch.compile`` of the UNet; ``reduce-overhead`` adds CUDA graphs on a GPU); compilation happens
in the untimed warm-up passes.

``--without-weights`` builds a config that reads Stable Diffusion from a local folder (``backbone.pretrained``)
from the architecture dicts the config carries instead (``sd21_base_vae``, ``sd21_base_unet``,
``sd21_base_text_encoder``), randomly initialised, and SCR's LPIPS network without its weights file: same
shapes and cost, meaningless predictions.

The measuring is :mod:`rass_mmseg.utils.model_benchmark` (``benchmark(BenchmarkSettings(...))``).
"""
import argparse
from typing import List, Optional, Sequence

import torch
from mmengine.config import DictAction

from rass_mmseg.utils.model_benchmark import BenchmarkSettings, benchmark, format_table


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
    parser.add_argument('--compile', metavar='MODE', choices=['default', 'reduce-overhead', 'max-autotune'],
                        help='also measure the config with its UNet compiled (torch.compile mode), side by side')
    parser.add_argument('--mode', choices=['inference', 'train'], default='inference',
                        help='time model.inference (default) or whole model.train_step iterations')
    parser.add_argument('--batch-size', type=int, default=2, help='images per training iteration (--mode train)')
    parser.add_argument('--without-weights', action='store_true',
                        help='build Stable Diffusion from the config\'s sd21_base_* architecture dicts, random init')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='overrides applied to every config')
    parser.add_argument('--compare-cfg-options', nargs='+', action=DictAction,
                        help='overrides applied to the second config only (e.g. model.backbone.deploy=True)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> List[dict]:
    settings = BenchmarkSettings(**vars(parse_args(argv)))
    results = benchmark(settings)
    print(format_table(results, settings))
    return results


if __name__ == '__main__':
    main()
