"""Benchmark segmentors like any mmseg model: parameters, inference speed and peak memory.

The logic of tools/analysis_tools/benchmark.py (its docstring lists the commands), importable::

    from rass_mmseg.utils.model_benchmark import BenchmarkSettings, benchmark, format_table
    settings = BenchmarkSettings(config, compare=config2, shape=(128, 128), device='cpu')
    print(format_table(benchmark(settings), settings))

What is timed (``mode='inference'``, the default): ``model.inference`` (the config's ``test_cfg``: whole or
slide) on a random, already normalised batch of one image, under ``torch.no_grad``, after ``warmup`` passes. The
data preprocessor (and so any online degradation) is NOT timed, nor is data loading.

``mode='train'``: whole ``model.train_step`` iterations (data preprocessor with its online degradation, loss,
backward, optimizer step) on ``batch_size`` random uint8 images with random labels, through an optimizer wrapper
built from the config's ``optim_wrapper`` (``amp`` picks mmengine's ``AmpOptimWrapper`` with that dtype, ``'none'``
a plain ``OptimWrapper``; optimizer, clipping and parameter-wise settings are the config's). Data loading is not
timed.

Peak memory is ``torch.cuda.max_memory_allocated`` on a GPU, and the process's peak resident memory on a CPU.

``compile=MODE`` measures the config twice in the same run, eagerly and with ``model.backbone.compile=dict(
mode=MODE)`` (``torch.compile`` of the UNet; ``reduce-overhead`` adds CUDA graphs on a GPU); compilation happens in
the untimed warm-up passes.

``without_weights=True`` builds a config that reads Stable Diffusion from a local folder (``backbone.pretrained``)
from the architecture dicts the config carries instead (:func:`rass_mmseg.utils.model_without_weights`), randomly
initialised, and SCR's LPIPS network without its weights file: same shapes and cost, meaningless predictions.
"""
import copy
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.config import Config, ConfigDict
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import nn

from .without_weights import model_without_weights

__all__ = ['BenchmarkSettings', 'benchmark', 'build_model', 'build_model_from_cfg', 'build_training_optim_wrapper',
           'count_parameters', 'format_table', 'label_count', 'load_config', 'random_training_batch', 'time_inference',
           'time_training']


def _default_device() -> str:
    return 'cuda' if torch.cuda.is_available() else 'cpu'


@dataclass
class BenchmarkSettings:
    """What :func:`benchmark` measures (the options of tools/analysis_tools/benchmark.py, same names).

    Attributes:
        config: Config file.
        checkpoint: Optional checkpoint (random weights otherwise).
        compare: A second config measured in the same run.
        compare_checkpoint: Checkpoint of the second config.
        shape: Input size ``(H, W)``.
        num_images: Timed images (inference) or iterations (train) per round.
        warmup: Untimed passes before timing.
        rounds: Alternating rounds (the median FPS is reported).
        device: ``'cuda'`` when torch sees a GPU, else ``'cpu'``, by default.
        amp: Autocast dtype: ``'none'``, ``'bf16'`` or ``'fp16'``.
        compile: ``torch.compile`` mode: also measure the config with its UNet compiled, side by side.
        mode: ``'inference'`` (``model.inference``) or ``'train'`` (whole ``model.train_step`` iterations).
        batch_size: Images per training iteration (``mode='train'``).
        without_weights: Build Stable Diffusion from the config's ``sd21_base_*`` architecture dicts, random init.
        cfg_options: Overrides applied to every config.
        compare_cfg_options: Overrides applied to the second config only (e.g. ``model.backbone.deploy=True``).
    """
    config: str
    checkpoint: Optional[str] = None
    compare: Optional[str] = None
    compare_checkpoint: Optional[str] = None
    shape: Sequence[int] = (512, 512)
    num_images: int = 20
    warmup: int = 3
    rounds: int = 3
    device: str = field(default_factory=_default_device)
    amp: str = 'none'
    compile: Optional[str] = None
    mode: str = 'inference'
    batch_size: int = 2
    without_weights: bool = False
    cfg_options: Optional[dict] = None
    compare_cfg_options: Optional[dict] = None


def load_config(config: str, cfg_options: Optional[dict] = None, without_weights: bool = False) -> Config:
    """Read ``config``, apply ``cfg_options`` and, if asked, the weight-free architecture."""
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if without_weights:
        cfg.model = model_without_weights(cfg, config)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    return cfg


def build_model(config: str, checkpoint: Optional[str], device: str, cfg_options: Optional[dict] = None,
                without_weights: bool = False, training: bool = False) -> nn.Module:
    """Build a segmentor from ``config`` on ``device``, in eval mode unless ``training``."""
    return build_model_from_cfg(load_config(config, cfg_options, without_weights), checkpoint, device, training)


def build_model_from_cfg(cfg: Config, checkpoint: Optional[str], device: str, training: bool = False) -> nn.Module:
    """Build the segmentor of a loaded config (see :func:`build_model`)."""
    cfg = copy.deepcopy(cfg)
    if not training:
        cfg.model.train_cfg = None
    model = MODELS.build(cfg.model)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu')
    model = model.to(device)
    return model.train() if training else model.eval()


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


def label_count(model: nn.Module) -> int:
    """Classes to draw random labels from: the head's, else the ground-truth prompt's (SCR), else 2."""
    head = getattr(model, 'decode_head', None)
    if getattr(head, 'num_classes', None):
        return int(head.num_classes)
    prompt = getattr(model, 'gt_class_prompt', None)
    return len(prompt.classes) if prompt is not None else 2


def random_training_batch(batch_size: int, shape: Sequence[int], num_classes: int, seed: int = 0) -> dict:
    """What a dataloader hands ``train_step``: uint8 CHW images and data samples with labels and paths."""
    generator = torch.Generator().manual_seed(seed)
    height, width = shape
    inputs, data_samples = [], []
    for index in range(batch_size):
        inputs.append(torch.randint(0, 256, (3, height, width), generator=generator, dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_path=f'benchmark_{index}.png', img_shape=(height, width),
                                             ori_shape=(height, width)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, height, width), generator=generator))
        data_samples.append(sample)
    return dict(inputs=inputs, data_samples=data_samples)


def build_training_optim_wrapper(model: nn.Module, cfg: Config, amp: str, device: str) -> OptimWrapper:
    """The optimizer wrapper of the loaded config (``--cfg-options`` applied), its type and dtype set by ``amp``."""
    if 'optim_wrapper' not in cfg:
        raise ValueError(f'--mode train: {cfg.filename} has no optim_wrapper')
    wrapper = ConfigDict(cfg.optim_wrapper)
    wrapper.pop('dtype', None)
    if amp == 'none':
        wrapper.type = 'OptimWrapper'
    else:
        if not device.startswith('cuda'):
            raise ValueError(f'--amp {amp} with --mode train needs a CUDA device (mmengine\'s AmpOptimWrapper)')
        wrapper.update(type='AmpOptimWrapper', dtype=dict(bf16='bfloat16', fp16='float16')[amp])
    return build_optim_wrapper(model, wrapper)


def time_training(model: nn.Module, optim_wrapper: OptimWrapper, data: dict, iterations: int, warmup: int,
                  device: str) -> float:
    """Training iterations per second of ``model.train_step`` on ``data``."""
    for _ in range(warmup):
        model.train_step(data, optim_wrapper)
    if device.startswith('cuda'):
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iterations):
        model.train_step(data, optim_wrapper)
    if device.startswith('cuda'):
        torch.cuda.synchronize(device)
    return iterations / (time.perf_counter() - start)


def benchmark(args: BenchmarkSettings) -> List[dict]:
    """Measure every config of ``args`` in alternating rounds.

    Args:
        args: What to measure.

    Returns:
        One dict per model: ``config`` (its label), ``total`` and ``trainable`` parameters, ``fps``,
        ``ms_per_image`` and ``peak_memory_mb`` (one process measures all models: the peak covers them all).
    """
    specs = [(args.config, args.checkpoint, args.cfg_options)]
    if args.compare and args.compile:
        raise ValueError('--compare and --compile each add a second model; give one of them')
    if args.compare:
        options = dict(args.cfg_options or {}, **(args.compare_cfg_options or {}))
        specs.append((args.compare, args.compare_checkpoint, options))
    if args.compile:
        options = dict(args.cfg_options or {}, **{'model.backbone.compile': dict(mode=args.compile)})
        specs.append((args.config, args.checkpoint, options))
    if args.device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats(args.device)
    training = args.mode == 'train'
    cfgs = [load_config(config, options, args.without_weights) for config, _, options in specs]
    models = [
        build_model_from_cfg(cfg, checkpoint, args.device, training)
        for cfg, (_, checkpoint, _) in zip(cfgs, specs)
    ]
    if training:
        wrappers = [build_training_optim_wrapper(model, cfg, args.amp, args.device) for model, cfg in zip(models, cfgs)]
        batches = [random_training_batch(args.batch_size, args.shape, label_count(model)) for model in models]
    rates: List[List[float]] = [[] for _ in models]
    for _ in range(args.rounds):
        for index, model in enumerate(models):
            if training:
                rates[index].append(time_training(model, wrappers[index], batches[index], args.num_images,
                                                  args.warmup, args.device))
            else:
                rates[index].append(time_inference(model, args.shape, args.num_images, args.warmup, args.device,
                                                   args.amp))
    results = []
    images_per_step = args.batch_size if training else 1
    for index, ((config, _, _), model, values) in enumerate(zip(specs, models, rates)):
        fps = statistics.median(values) * images_per_step
        label = f'{config} (compiled, {args.compile})' if args.compile and index == 1 else config
        results.append(dict(config=label, **count_parameters(model), fps=fps, ms_per_image=1000 / fps))
    peak = _peak_memory_mb(args.device)
    for result in results:
        result['peak_memory_mb'] = peak  # one process measures both: the peak covers all models
    return results


def format_table(results: List[dict], args: BenchmarkSettings) -> str:
    """The printed table of :func:`benchmark`'s ``results``: a settings line, one row per model, the FPS ratio of
    two models."""
    step = (f'mode=train batch={args.batch_size} iterations/round={args.num_images}'
            if args.mode == 'train' else f'mode=inference images/round={args.num_images}')
    lines = [f'device={args.device} shape={tuple(args.shape)} {step} rounds={args.rounds} amp={args.amp}'
             + (' weights=random (--without-weights)' if args.without_weights else ''),
             f'{"config":<60} {"params":>10} {"trainable":>10} {"FPS":>8} {"ms/img":>8} {"peak MB":>9}']
    for r in results:
        lines.append(f'{r["config"][-60:]:<60} {r["total"] / 1e6:>9.2f}M {r["trainable"] / 1e6:>9.2f}M '
                     f'{r["fps"]:>8.2f} {r["ms_per_image"]:>8.1f} {r["peak_memory_mb"]:>9.0f}')
    if len(results) == 2:
        lines.append(f'FPS ratio (first / second): {results[0]["fps"] / results[1]["fps"]:.3f}')
        if args.compile:
            lines.append(f'compiled / eager: {results[1]["fps"] / results[0]["fps"]:.3f}x')
    return '\n'.join(lines)
