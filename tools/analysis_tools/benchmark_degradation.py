"""Throughput of the degradation engine's backends against a per-image loop and mmagic's CPU transforms.

    python tools/analysis_tools/benchmark_degradation.py --threads 2    # batch sizes 1, 8, 16 at 512x512, CPU
    python tools/analysis_tools/benchmark_degradation.py --threads 1 --profile  # + where the time goes, by operation
    python tools/analysis_tools/benchmark_degradation.py --device cuda --cpu-baseline  # GPU rows + the host's CPU rows

Rows, measured side by side in one run (methods interleaved inside every repeat, median of the repeats):

* ``torch, batched``: ``SecondOrderDegradation(backend='torch')`` on the whole batch (training draws from a
  torch.Generator), on ``--device``;
* ``torch, batched, test mode``: the same with the keyed, batch-invariant draws of ``degrade='always'``;
* ``torch, per-image loop``: the torch backend called on one image at a time in a Python loop (the public RASS
  code's structure);
* ``opencv (CPU path)`` / ``opencv, test mode``: ``backend='opencv'`` (what ``'auto'`` picks for CPU tensors) with
  training / keyed draws, on the CPU (with ``--device cuda`` only with ``--cpu-baseline``, which also adds
  ``torch, batched on CPU``);
* ``mmagic 1.2.0 (cv2)``: mmagic's CPU degradation transforms (``RandomBlur``, ``RandomResize``, ``RandomNoise``,
  ``RandomJPEGCompression``, ``DegradationsWithShuffle``) with the same parameters, one image at a time, when
  mmagic is installed (``tools/install/install.sh`` installs it; it imports with the pinned stack through
  ``rass_mmseg.compat.mmagic_imports``), through :func:`import_mmagic_transforms`.

``--threads`` sets both torch's intra-op threads and OpenCV's (``cv2.setNumThreads``), so every row runs on the
same number of threads. ``--profile`` then times each operation (blur, resize, noise with its field draws, JPEG,
conversions; the rest is kernel construction, per-sample draws and control) of the torch and OpenCV backends and
of mmagic's transforms, in ms per image, summed over the repeats of one extra run per method.
"""
import argparse
import importlib.util
import math
import os
import platform
import statistics
import time
import types
from collections import defaultdict
from typing import Any, Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from rass_mmseg.degradations import (
    DegradationBackend,
    GeneratorRandomSource,
    KeyedRandomSource,
    RandomSource,
    SecondOrderDegradation,
)

SAMPLE_IMAGES = ('astronaut', 'coffee', 'chelsea', 'rocket', 'immunohistochemistry', 'hubble_deep_field',
                 'retina', 'brick')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Benchmark the online degradation engine.')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8, 16])
    parser.add_argument('--size', type=int, default=512, help='square image side')
    parser.add_argument('--repeats', type=int, default=3, help='timed repeats per method and batch size')
    parser.add_argument('--images', type=int, default=8,
                        help='images per repeat at least (batches of --batch-sizes cycling through the photos)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=None,
                        help="torch intra-op and OpenCV threads (default: each library's own)")
    parser.add_argument('--cpu-baseline', action='store_true',
                        help='with a GPU --device, also time the CPU rows (torch and opencv backends)')
    parser.add_argument('--no-mmagic', action='store_true', help='skip the mmagic row')
    parser.add_argument('--profile', action='store_true', help='also time each operation of each method')
    return parser.parse_args(argv)


def sample_batch(batch_size: int, size: int) -> torch.Tensor:
    """``(B, 3, size, size)`` RGB in [0, 1] from scikit-image's bundled photos (no network)."""
    from skimage import data
    images = []
    for index in range(batch_size):
        image = torch.from_numpy(np.ascontiguousarray(getattr(data, SAMPLE_IMAGES[index % len(SAMPLE_IMAGES)])()))
        image = image.float()
        image = image[..., None].expand(*image.shape, 3) if image.ndim == 2 else image[..., :3]
        image = F.interpolate(image.permute(2, 0, 1)[None], size=(size, size), mode='area')[0]
        images.append(image.round() / 255.0)
    return torch.stack(images)


def import_mmagic_transforms() -> Optional[types.ModuleType]:
    """mmagic's degradation transforms, or None when mmagic is not installed.

    mmagic 1.2.0 imports with numpy 2 and the pinned diffusers through ``rass_mmseg.compat.mmagic_imports``,
    installed by importing ``rass_mmseg`` (as this script does); an installed mmagic that still fails to import
    raises.
    """
    if importlib.util.find_spec('mmagic') is None:
        return None
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # float -> uint8 JPEG fallback warnings
    from mmagic.datasets.transforms import random_degradations
    return random_degradations


def mmagic_pipeline(transforms: types.ModuleType, size: int) -> Callable[[np.ndarray], np.ndarray]:
    """mmagic's Real-ESRGAN degradation with the RASS parameters at scale 1 (HWC float32 in [0, 255])."""
    kernel_sizes = list(range(7, 22, 2))
    kernel_list = ['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso', 'plateau_aniso', 'sinc']
    # mmagic folds the sinc probability into the kernel list: 0.9 * RASS's family probabilities + 0.1 sinc.
    kernel_prob = [0.9 * prob for prob in (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)] + [0.1]
    modes = dict(resize_opt=['area', 'bilinear', 'bicubic'], resize_prob=[1 / 3] * 3)

    def blur(sigma: float, prob: float = 1.0) -> Dict:
        return dict(prob=prob, kernel_size=kernel_sizes, kernel_list=kernel_list, kernel_prob=kernel_prob,
                    sigma_x=[0.2, sigma], sigma_y=[0.2, sigma], rotate_angle=[-math.pi, math.pi],
                    beta_gaussian=[0.5, 4], beta_plateau=[1, 2])

    def noise(sigma: float, scale: float) -> Dict:
        return dict(noise_type=['gaussian', 'poisson'], noise_prob=[0.5, 0.5], gaussian_sigma=[1, sigma],
                    gaussian_gray_noise_prob=0.4, poisson_scale=[0.05, scale], poisson_gray_noise_prob=0.4)

    keys = ['img']
    steps = [
        transforms.RandomBlur(blur(3.0), keys),
        transforms.RandomResize(dict(resize_mode_prob=[0.2, 0.7, 0.1], resize_scale=[0.15, 1.5], **modes), keys),
        transforms.RandomNoise(noise(30, 3.0), keys),
        transforms.RandomJPEGCompression(dict(quality=[30, 95]), keys),
        transforms.RandomBlur(blur(1.5, prob=0.8), keys),
        transforms.RandomResize(dict(resize_mode_prob=[0.3, 0.4, 0.3], resize_scale=[0.3, 1.2], **modes), keys),
        transforms.RandomNoise(noise(25, 2.5), keys),
        transforms.DegradationsWithShuffle([
            dict(type='RandomJPEGCompression', params=dict(quality=[30, 95])),
            [
                dict(type='RandomResize', params=dict(target_size=(size, size), **modes)),
                dict(type='RandomBlur', params=dict(prob=0.8, kernel_size=kernel_sizes, kernel_list=['sinc'],
                                                    kernel_prob=[1], omega=[math.pi / 3, math.pi])),
            ],
        ], keys),
    ]

    def degrade(image: np.ndarray) -> np.ndarray:
        results = dict(img=image)
        for step in steps:
            results = step(results)
        return np.clip(np.round(results['img']), 0, 255).astype(np.uint8)

    return degrade


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class OperationTimer:
    """Wall-clock seconds per operation name, for ``--profile``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: Dict[str, float] = defaultdict(float)

    def timed(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function`` that adds its run time to ``name``."""

        def run(*args: Any, **kwargs: Any) -> Any:
            synchronize(self.device)
            start = time.perf_counter()
            result = function(*args, **kwargs)
            synchronize(self.device)
            self.seconds[name] += time.perf_counter() - start
            return result

        return run


class TimedBackend(DegradationBackend):
    """A backend whose operations are timed (``apply_to_subset`` only dispatches, so it is not)."""

    OPERATIONS = {'load': 'conversions', 'unload': 'conversions', 'blur': 'blur', 'resize': 'resize',
                  'gaussian_noise': 'noise', 'poisson_noise': 'noise', 'clamp': 'noise', 'jpeg': 'JPEG'}

    def __init__(self, backend: DegradationBackend, timer: OperationTimer) -> None:
        self.backend, self.name, self.ops = backend, backend.name, backend.ops
        self.scale_factor_first_resize = backend.scale_factor_first_resize  # what the pipeline asks the backend
        for method, label in self.OPERATIONS.items():
            setattr(self, method, timer.timed(label, getattr(backend, method)))

    def apply_to_subset(self, batch: Any, selected: torch.Tensor, operation: Callable) -> Any:
        return self.backend.apply_to_subset(batch, selected, operation)


class TimedSource(RandomSource):
    """A random source whose noise-field draws (per-sample shapes of 2 axes or more) are timed."""

    def __init__(self, source: RandomSource, timer: OperationTimer) -> None:
        super().__init__(source.batch_size, source.device)
        self.source, self.timer = source, timer
        self.is_batch_invariant = source.is_batch_invariant

    def _draw(self, kind: str, stream: str, shape: Sequence[int]) -> torch.Tensor:
        draw = getattr(self.source, kind)
        return self.timer.timed('  of which field draws', draw)(stream, shape) if len(shape) >= 2 else draw(
            stream, shape)

    def uniform(self, stream: str, shape: Sequence[int] = ()) -> torch.Tensor:
        return self._draw('uniform', stream, shape)

    def normal(self, stream: str, shape: Sequence[int] = ()) -> torch.Tensor:
        return self._draw('normal', stream, shape)

    def subset(self, index: torch.Tensor) -> 'TimedSource':
        return TimedSource(self.source.subset(index), self.timer)


def profile_engine(engine: SecondOrderDegradation, batches: List[torch.Tensor],
                   sources: Callable[[int], RandomSource], repeats: int) -> Dict[str, float]:
    """ms per image of each operation of the engine's backend on ``batches`` (``total``: the whole calls)."""
    timer = OperationTimer(batches[0].device)
    backend = TimedBackend(engine.backend_for(batches[0].device), timer)
    timed_engine = SecondOrderDegradation(**engine.to_dict())
    timed_engine.backend_for = lambda device: backend
    for _ in range(repeats):
        for batch in batches:
            timer.timed('total', timed_engine)(batch, TimedSource(sources(len(batch)), timer))
    count = repeats * sum(len(batch) for batch in batches)
    return {name: 1000.0 * seconds / count for name, seconds in timer.seconds.items()}


def profile_mmagic(transforms: types.ModuleType, degrade: Callable[[np.ndarray], np.ndarray],
                   images: List[np.ndarray], repeats: int) -> Dict[str, float]:
    """ms per image of each of mmagic's transforms (its classes' ``__call__`` timed while this runs)."""
    timer = OperationTimer(torch.device('cpu'))
    labels = dict(RandomBlur='blur', RandomResize='resize', RandomNoise='noise', RandomJPEGCompression='JPEG')
    originals = {name: getattr(transforms, name).__call__ for name in labels}
    try:
        for name, label in labels.items():
            getattr(transforms, name).__call__ = timer.timed(label, originals[name])
        for _ in range(repeats):
            timer.timed('total', lambda: [degrade(image.copy()) for image in images])()
    finally:
        for name, original in originals.items():
            getattr(transforms, name).__call__ = original
    return {name: 1000.0 * seconds / (repeats * len(images)) for name, seconds in timer.seconds.items()}


def print_profile(profiles: Dict[str, Dict[str, float]]) -> None:
    """One row per operation, one column per method; 'other' is the total less the operations."""
    operations = ['blur', 'resize', 'noise', '  of which field draws', 'JPEG', 'conversions']
    print(f'  {"ms per image":<24}' + ''.join(f'{name:>22}' for name in profiles))
    for operation in operations + ['other', 'total']:
        cells = []
        for times in profiles.values():
            if operation == 'other':
                value = times['total'] - sum(times.get(name, 0.0) for name in operations if not name.startswith(' '))
            else:
                value = times.get(operation)
            cells.append(f'{value:>22.1f}' if value is not None else f'{"-":>22}')
        print(f'  {operation:<24}' + ''.join(cells))


def build_methods(batches: List[torch.Tensor], device: torch.device, args: argparse.Namespace,
                  mmagic_degrade: Optional[Callable[[np.ndarray], np.ndarray]]) -> Dict[str, Callable[[], Any]]:
    """The timed methods by row name; each call degrades every batch of ``batches`` once."""
    on_torch = SecondOrderDegradation(backend='torch')
    on_opencv = SecondOrderDegradation(backend='opencv')
    generator = torch.Generator(device=device).manual_seed(0)
    cpu_generator = torch.Generator().manual_seed(0)
    cpu = torch.device('cpu')
    names = [[f'image_{index}_{position}.png' for position in range(batch.shape[0])]
             for index, batch in enumerate(batches)]

    def each(function: Callable[[torch.Tensor, List[str]], Any], on: List[torch.Tensor]) -> Callable[[], None]:
        return lambda: [function(batch, batch_names) for batch, batch_names in zip(on, names)]

    methods: Dict[str, Callable[[], Any]] = {
        'torch, batched': each(lambda batch, _: on_torch(batch, GeneratorRandomSource(generator, len(batch), device)),
                               batches),
        'torch, batched, test mode': each(
            lambda batch, batch_names: on_torch(batch, KeyedRandomSource.from_identities(batch_names, 0, device)),
            batches),
        'torch, per-image loop': each(
            lambda batch, _: [
                on_torch(batch[index:index + 1], GeneratorRandomSource(generator, 1, device))
                for index in range(len(batch))
            ], batches),
    }
    if device.type == 'cpu' or args.cpu_baseline:
        cpu_batches = [batch.cpu() for batch in batches]
        if device.type != 'cpu':
            methods['torch, batched on CPU'] = each(
                lambda batch, _: on_torch(batch, GeneratorRandomSource(cpu_generator, len(batch), cpu)), cpu_batches)
        methods['opencv (CPU path)'] = each(
            lambda batch, _: on_opencv(batch, GeneratorRandomSource(cpu_generator, len(batch), cpu)), cpu_batches)
        methods['opencv, test mode'] = each(
            lambda batch, batch_names: on_opencv(batch, KeyedRandomSource.from_identities(batch_names, 0)),
            cpu_batches)
    if mmagic_degrade is not None and device.type == 'cpu':
        numpy_images = [(image.permute(1, 2, 0).numpy() * 255.0).astype(np.float32)
                        for batch in batches for image in batch]
        methods['mmagic 1.2.0 (cv2)'] = lambda: [mmagic_degrade(image.copy()) for image in numpy_images]
    return methods


def main(argv: Optional[Sequence[str]] = None) -> Dict[int, Dict[str, float]]:
    """Run the benchmark; returns images/s by batch size and row name."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    device = torch.device(args.device)
    mmagic = None if args.no_mmagic else import_mmagic_transforms()
    mmagic_degrade = mmagic_pipeline(mmagic, args.size) if mmagic else None
    np.random.seed(0)

    print(f'machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, '
          f'torch {torch.__version__} with {torch.get_num_threads()} threads, OpenCV {cv2.__version__} with '
          f'{cv2.getNumThreads()} threads, device {device}'
          + (f' ({torch.cuda.get_device_name(device)})' if device.type == 'cuda' else ''))
    print(f'images {args.size}x{args.size}, median of {args.repeats} repeats, methods interleaved, '
          f'load average before the run {os.getloadavg()[0]:.2f}\n')

    results = {}
    for batch_size in args.batch_sizes:
        # Every repeat degrades at least --images images (batch 1: eight calls), so that the random work per
        # image (e.g. a strong downscale that makes the rest cheap) averages out as it does for larger batches.
        count = -(-max(args.images, batch_size) // batch_size) * batch_size
        images = sample_batch(count, args.size).to(device)
        batches = list(images.split(batch_size))
        methods = build_methods(batches, device, args, mmagic_degrade)
        for method in methods.values():  # warm-up (tables, allocator, lazy imports)
            method()
        timings: Dict[str, List[float]] = {name: [] for name in methods}
        for _ in range(args.repeats):
            for name, method in methods.items():
                synchronize(device)
                start = time.perf_counter()
                method()
                synchronize(device)
                timings[name].append(time.perf_counter() - start)
        throughput = {name: count / statistics.median(times) for name, times in timings.items()}
        results[batch_size] = throughput
        mmagic_rate = throughput.get('mmagic 1.2.0 (cv2)')
        print(f'batch {batch_size} ({count} images per repeat)')
        print(f'  {"method":<26} {"images/s":>9} {"x loop":>7} {"x mmagic":>9}')
        for name in list(methods) + ([] if mmagic_rate else ['mmagic 1.2.0 (cv2)']):
            if name not in throughput:
                reason = 'not installed' if mmagic is None else 'CPU only'
                print(f'  {name:<26} {"-":>9} {"-":>7} {"-":>9}   (mmagic {reason})')
                continue
            ratio = throughput[name] / throughput['torch, per-image loop']
            versus = f'{throughput[name] / mmagic_rate:>8.2f}x' if mmagic_rate else f'{"-":>9}'
            print(f'  {name:<26} {throughput[name]:>9.2f} {ratio:>6.2f}x {versus}')
        if 'torch, batched on CPU' in throughput:
            print(f'  torch batched on {device.type} / on CPU: '
                  f'{throughput["torch, batched"] / throughput["torch, batched on CPU"]:.1f}x')
        if args.profile:
            generator = torch.Generator(device=device).manual_seed(1)
            profiles = {
                'torch, batched': profile_engine(SecondOrderDegradation(backend='torch'), batches, lambda size:
                                                 GeneratorRandomSource(generator, size, device), args.repeats)
            }
            if 'opencv (CPU path)' in methods:
                cpu_generator = torch.Generator().manual_seed(1)
                profiles['opencv (CPU path)'] = profile_engine(
                    SecondOrderDegradation(backend='opencv'), [batch.cpu() for batch in batches],
                    lambda size: GeneratorRandomSource(cpu_generator, size, torch.device('cpu')), args.repeats)
            if mmagic_rate:
                numpy_images = [(image.permute(1, 2, 0).cpu().numpy() * 255.0).astype(np.float32) for image in images]
                profiles['mmagic 1.2.0 (cv2)'] = profile_mmagic(mmagic, mmagic_degrade, numpy_images, args.repeats)
            print_profile(profiles)
        print()
    print(f'load average after the run {os.getloadavg()[0]:.2f} (other processes share these cores)')
    return results


if __name__ == '__main__':
    main()
