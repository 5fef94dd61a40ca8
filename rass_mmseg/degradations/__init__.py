"""The Real-ESRGAN second-order degradation engine: batched, device-agnostic, one concept per file.

Kept apart from the models (as mmagic and BasicSR keep theirs): ``DegradationDataPreProcessor`` is a thin mmseg
adapter around :class:`SecondOrderDegradation`, and tools (``tools/dataset_converters/degrade_dataset.py``,
``tools/analysis_tools/benchmark_degradation.py``) import the engine from here without going through the preprocessor.

The package exports the engine's API: the engine and its builder, the values of its ``ops`` and ``backend`` keys,
the random sources that feed it and the backend interface. The operations themselves live in their modules
(``rass_mmseg.degradations.jpeg``, ``.resize``, ``.noise``, ...) and the backend classes in
``rass_mmseg.degradations.backend_registry``.
"""
from .backend_registry import BACKENDS, OPS
from .builder import build_degradation
from .degradation_backend import DegradationBackend
from .random_source import GeneratorRandomSource, KeyedRandomSource, RandomSource, image_identity
from .second_order_degradation import SecondOrderDegradation

__all__ = [
    'BACKENDS', 'OPS', 'DegradationBackend', 'GeneratorRandomSource', 'KeyedRandomSource', 'RandomSource',
    'SecondOrderDegradation', 'build_degradation', 'image_identity'
]
