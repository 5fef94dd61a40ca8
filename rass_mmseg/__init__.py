"""rass_mmseg: RASS (Restoration Adaptation for Semantic Segmentation on low-quality images,
arXiv 2602.14042) as an MMSegmentation 1.x plugin.

Importing this package (``custom_imports = dict(imports=['rass_mmseg'])`` in a config) registers
every component in mmseg's registries, installs the narrow stack fixes of :mod:`rass_mmseg.compat`,
and lets configs inherit ours as ``rass_mmseg::<path>`` (:mod:`rass_mmseg.registry`).
"""
from . import compat  # noqa: F401  (must run before any checkpoint is loaded)

# isort: split
from . import datasets, engine, evaluation, models, registry, visualization  # noqa: F401
from .version import __version__

__all__ = ['__version__']
