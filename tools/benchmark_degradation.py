"""Throughput of the batched degradation engine against a per-image loop and mmagic's CPU transforms.

    python tools/benchmark_degradation.py                      # batch sizes 1, 8, 16 at 512x512 on the CPU
    python tools/benchmark_degradation.py --device cuda --cpu-baseline   # + the batched engine on the host CPU

Rows, measured side by side in one run (methods interleaved inside every repeat, median of the repeats):

* ``batched``: ``SecondOrderDegradation`` on the whole batch (training draws from a torch.Generator);
* ``batched, test mode``: the same with the keyed, batch-invariant draws of ``degrade='test'``;
* ``per-image loop``: the same engine called on one image at a time in a Python loop (the public RASS code's
  structure);
* ``batched on CPU`` (``--cpu-baseline``, with ``--device cuda``): the batched engine on the same images on the
  host's CPU, so the GPU's gain over the CPU is measured in the same run;
* ``mmagic 1.2.0 (cv2)``: mmagic's CPU degradation transforms (``RandomBlur``, ``RandomResize``, ``RandomNoise``,
  ``RandomJPEGCompression``, ``DegradationsWithShuffle``) with the same parameters, one image at a time, when
  mmagic can be imported (``pip install --no-deps mmagic==1.2.0``). mmagic stays optional: only this script
  imports it, through :func:`import_mmagic_transforms`.
"""
import argparse
import math
import os
import platform
import statistics
import sys
import time
import types
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from rass_mmseg.degradations import GeneratorRandomSource, KeyedRandomSource, SecondOrderDegradation

SAMPLE_IMAGES = ('astronaut', 'coffee', 'chelsea', 'rocket', 'immunohistochemistry', 'hubble_deep_field',
                 'retina', 'brick')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Benchmark the online degradation engine.')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8, 16])
    parser.add_argument('--size', type=int, default=512, help='square image side')
    parser.add_argument('--repeats', type=int, default=3, help='timed repeats per method and batch size')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch\'s)')
    parser.add_argument('--cpu-baseline', action='store_true',
                        help='with a GPU --device, also time the batched engine on the CPU')
    parser.add_argument('--no-mmagic', action='store_true', help='skip the mmagic row')
    return parser.parse_args()


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

    mmagic 1.2.0 with numpy 2 and without its optional dependencies needs two narrow shims, applied in this
    process only: ``np.bool8`` (removed in numpy 2, used by ``mmagic.utils.trans_utils``) and an empty
    ``albumentations`` module (imported by ``mmagic.datasets.transforms`` for transforms we do not use).
    """
    try:
        import importlib.util
        if importlib.util.find_spec('mmagic') is None:
            return None
        if not hasattr(np, 'bool8'):
            np.bool8 = np.bool_
        if importlib.util.find_spec('albumentations') is None:
            sys.modules['albumentations'] = types.ModuleType('albumentations')
        import cv2
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # float -> uint8 JPEG fallback warnings
        from mmagic.datasets.transforms import random_degradations
        return random_degradations
    except Exception as error:  # noqa: BLE001  (report any import failure as a missing row)
        print(f'mmagic could not be imported: {type(error).__name__}: {error}')
        return None


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


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    engine = SecondOrderDegradation()
    generator = torch.Generator(device=device).manual_seed(0)
    cpu_generator = torch.Generator().manual_seed(0)
    cpu_baseline = args.cpu_baseline and device.type != 'cpu'
    mmagic = None if args.no_mmagic else import_mmagic_transforms()
    mmagic_degrade = mmagic_pipeline(mmagic, args.size) if mmagic else None
    np.random.seed(0)

    print(f'machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, '
          f'torch {torch.__version__} with {torch.get_num_threads()} threads, device {device}'
          + (f' ({torch.cuda.get_device_name(device)})' if device.type == 'cuda' else ''))
    print(f'images {args.size}x{args.size}, median of {args.repeats} repeats, methods interleaved, '
          f'load average before the run {os.getloadavg()[0]:.2f}\n')

    for batch_size in args.batch_sizes:
        batch = sample_batch(batch_size, args.size).to(device)
        names = [f'image_{index}.png' for index in range(batch_size)]
        numpy_images = [(image.permute(1, 2, 0).cpu().numpy() * 255.0).astype(np.float32) for image in batch]
        methods: Dict[str, Callable[[], None]] = {
            'batched':
            lambda: engine(batch, GeneratorRandomSource(generator, batch_size, device)),
            'batched, test mode':
            lambda: engine(batch, KeyedRandomSource.from_identities(names, 0, device)),
            'per-image loop':
            lambda: [engine(batch[i:i + 1], GeneratorRandomSource(generator, 1, device)) for i in range(batch_size)],
        }
        if cpu_baseline:
            cpu_batch = batch.cpu()
            methods['batched on CPU'] = lambda: engine(cpu_batch, GeneratorRandomSource(cpu_generator, batch_size,
                                                                                        torch.device('cpu')))
        if mmagic_degrade is not None and device.type == 'cpu':
            methods['mmagic 1.2.0 (cv2)'] = lambda: [mmagic_degrade(image.copy()) for image in numpy_images]
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
        throughput = {name: batch_size / statistics.median(times) for name, times in timings.items()}
        print(f'batch {batch_size}')
        print(f'  {"method":<22} {"images/s":>9} {"x loop":>7}')
        for name in list(methods) + ([] if 'mmagic 1.2.0 (cv2)' in methods else ['mmagic 1.2.0 (cv2)']):
            if name not in throughput:
                reason = 'not installed' if mmagic is None else 'CPU only'
                print(f'  {name:<22} {"-":>9} {"-":>7}   (mmagic {reason})')
                continue
            ratio = throughput[name] / throughput['per-image loop']
            print(f'  {name:<22} {throughput[name]:>9.2f} {ratio:>6.2f}x')
        if cpu_baseline:
            print(f'  batched on {device.type} / batched on CPU: '
                  f'{throughput["batched"] / throughput["batched on CPU"]:.1f}x')
        print()
    print(f'load average after the run {os.getloadavg()[0]:.2f} (other processes share these cores)')


if __name__ == '__main__':
    main()
