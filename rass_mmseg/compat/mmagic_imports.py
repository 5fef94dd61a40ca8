"""mmagic 1.2.0's metrics and degradation transforms import with the pinned stack (numpy 2, diffusers 0.42).

mmagic 1.2.0 (the last release) fails to import here for three reasons, none in the modules this project uses
(``mmagic.evaluation.metrics`` ``psnr``/``ssim``/``niqe``, ``mmagic.datasets.transforms.random_degradations``):

- ``mmagic.utils.trans_utils`` names ``np.bool8``, an alias numpy 2 removed. When mmagic itself is imported (not
  before), ``np.bool8`` is set to ``np.bool_``, which it always was; only if numpy lacks it.
- ``mmagic.datasets.transforms`` imports ``albu_function``, whose two transforms need albumentations (not
  installed: its releases pull in opencv-python-headless, a second copy of ``cv2``).
- ``mmagic.evaluation`` imports ``ppl`` and ``precision_and_recall``, two GAN metrics that import mmagic's model
  zoo, which imports ``diffusers.pipelines.paint_by_example`` (diffusers moved it to ``deprecated``), and the
  packages only those need (lpips, einops) are not installed.

Each of those three modules is replaced by a stand-in only while its dependency is missing: the stand-in
registers the module's classes under their names in mmagic's registry, so everything else imports, and
building one raises a one-line ``ImportError`` naming what it needs. With albumentations installed (or a
diffusers that still has the pipeline) mmagic's own module is imported. Nothing of mmseg's, mmengine's or this
project's registries changes: mmagic registers into its own ``mmagic`` scope.
"""
import importlib.util
import sys
import types
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np

__all__ = ['STAND_INS', 'StandIn', 'install', 'missing']


class StandIn(NamedTuple):
    """An mmagic module replaced while a dependency is missing.

    Args:
        classes: The registered classes it defines.
        registry: The ``mmagic.registry`` attribute they are registered in.
        needs: The module whose absence makes the stand-in necessary.
        reason: Why the classes need it, for the error message.
    """
    classes: Tuple[str, ...]
    registry: str
    needs: str
    reason: str


_MODEL_ZOO = ('it imports mmagic.models, whose editors import diffusers.pipelines.paint_by_example (moved to '
              'diffusers.pipelines.deprecated by the pinned diffusers)')

#: mmagic module -> its stand-in, used while ``needs`` cannot be found.
STAND_INS: Dict[str, StandIn] = {
    'mmagic.datasets.transforms.albu_function': StandIn(
        ('AlbuCorruptFunction', 'PairedAlbuTransForms'), 'TRANSFORMS', 'albumentations',
        'it wraps albumentations transforms (pip install albumentations)'),
    'mmagic.evaluation.metrics.ppl': StandIn(
        ('PerceptualPathLength',), 'METRICS', 'diffusers.pipelines.paint_by_example', _MODEL_ZOO),
    'mmagic.evaluation.metrics.precision_and_recall': StandIn(
        ('PrecisionAndRecall',), 'METRICS', 'diffusers.pipelines.paint_by_example', _MODEL_ZOO),
}


def missing(module: str) -> bool:
    """Whether ``module`` cannot be found (also when a parent package is missing); imports only its parents."""
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


def _stand_in_class(name: str, module: str, stand_in: StandIn) -> type:
    message = (f"mmagic's {name} cannot be used here: {stand_in.reason}; {stand_in.needs} was not found, so "
               f'rass_mmseg.compat.mmagic_imports stands in for {module}')

    def refuse(self, *args, **kwargs) -> None:
        raise ImportError(message)

    return type(name, (), {'__init__': refuse, '__module__': module, '__doc__': f'Stand-in: {message}.'})


class _StandInLoader(Loader):
    """Executes a stand-in module: its classes, registered in mmagic's registry, refuse to be built."""

    def __init__(self, stand_in: StandIn) -> None:
        self.stand_in = stand_in

    def create_module(self, spec: ModuleSpec) -> Optional[types.ModuleType]:
        return None  # the default module

    def exec_module(self, module: types.ModuleType) -> None:
        registry = getattr(importlib.import_module('mmagic.registry'), self.stand_in.registry)
        module.__doc__ = f'Stand-in for {module.__name__} (rass_mmseg.compat.mmagic_imports).'
        for name in self.stand_in.classes:
            cls = _stand_in_class(name, module.__name__, self.stand_in)
            registry.register_module(name=name, module=cls)
            setattr(module, name, cls)


class _Bool8BeforeMmagic(Loader):
    """mmagic's own loader, with ``np.bool8`` restored just before the package runs."""

    def __init__(self, loader: Loader) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> Optional[types.ModuleType]:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        if 'bool8' not in np.__dict__:
            np.bool8 = np.bool_  # numpy < 2's alias, used by mmagic.utils.trans_utils
        module.__loader__ = self.loader
        self.loader.exec_module(module)

    def __getattr__(self, name: str):  # is_package, get_resource_reader, ...: mmagic's loader answers
        return getattr(self.loader, name)


class MmagicImportFinder(MetaPathFinder):
    """Finds ``mmagic`` (to restore ``np.bool8`` first) and the stand-ins of :data:`STAND_INS`; nothing else."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[types.ModuleType] = None) -> Optional[ModuleSpec]:
        if fullname == 'mmagic':
            spec = _find_elsewhere(self, fullname, path)
            if spec is not None and spec.loader is not None:
                spec.loader = _Bool8BeforeMmagic(spec.loader)
            return spec
        stand_in = STAND_INS.get(fullname)
        if stand_in is None or not missing(stand_in.needs):
            return None
        return ModuleSpec(fullname, _StandInLoader(stand_in), origin='rass_mmseg.compat.mmagic_imports')


def _find_elsewhere(finder: MetaPathFinder, fullname: str, path: Optional[Sequence[str]]) -> Optional[ModuleSpec]:
    """The spec the other finders of ``sys.meta_path`` give ``fullname``."""
    for other in sys.meta_path:
        if other is not finder and hasattr(other, 'find_spec'):
            spec = other.find_spec(fullname, path)
            if spec is not None:
                return spec
    return None


def install() -> None:
    """Put :class:`MmagicImportFinder` first on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, MmagicImportFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, MmagicImportFinder())
