"""The Real-ESRGAN second-order degradation engine: batched, device-agnostic, one concept per file.

Kept apart from the models (as mmagic and BasicSR keep theirs): ``DegradationDataPreProcessor`` is a thin mmseg
adapter around :class:`SecondOrderDegradation`, and tools (``tools/dataset_converters/degrade_dataset.py``,
``tools/analysis_tools/benchmark_degradation.py``) import the engine from here without going through the preprocessor.
"""
from .blur import blur_ragged
from .blur_kernels import (
    KERNEL_TYPES,
    anisotropic_kernels,
    circular_lowpass_kernels,
    sample_blur_kernels,
    sample_sinc_kernels,
)
from .builder import build_degradation
from .degradation_backend import DegradationBackend
from .diffjpeg import diffjpeg_ragged, diffjpeg_tables
from .jpeg import jpeg_ragged, quantization_tables
from .noise import (
    add_distinct_poisson_noise,
    add_gaussian_noise,
    add_poisson_noise,
    add_random_noise,
    draw_noise,
    poisson_from_uniform,
)
from .opencv_backend import ImageList, OpenCVBackend
from .opencv_ops import blur_image, jpeg_image, resize_image
from .ragged_batch import apply_to_subset, pad_ragged
from .random_source import GeneratorRandomSource, KeyedRandomSource, RandomSource, identity_keys, image_identity
from .resize import RESIZE_MODES, draw_resize, resize_ragged, sample_resize
from .second_order_degradation import BACKENDS, SecondOrderDegradation
from .torch_backend import OPS, TorchBackend, interpolate_each, quantize_to_8bit

__all__ = [
    'BACKENDS', 'KERNEL_TYPES', 'OPS', 'RESIZE_MODES', 'DegradationBackend', 'GeneratorRandomSource', 'ImageList',
    'KeyedRandomSource', 'OpenCVBackend', 'RandomSource', 'SecondOrderDegradation', 'TorchBackend',
    'add_distinct_poisson_noise', 'add_gaussian_noise', 'add_poisson_noise', 'add_random_noise',
    'anisotropic_kernels', 'apply_to_subset', 'blur_image', 'blur_ragged', 'build_degradation',
    'circular_lowpass_kernels', 'diffjpeg_ragged', 'diffjpeg_tables', 'draw_noise', 'draw_resize', 'identity_keys',
    'image_identity', 'interpolate_each', 'jpeg_image', 'jpeg_ragged', 'pad_ragged', 'poisson_from_uniform',
    'quantization_tables', 'quantize_to_8bit', 'resize_image', 'resize_ragged', 'sample_blur_kernels',
    'sample_resize', 'sample_sinc_kernels'
]
