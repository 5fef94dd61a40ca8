"""Narrow, visible fixes of the pinned stack, applied when rass_mmseg is imported (also through a config's
``custom_imports``, which is how mmseg's own tools load the plugin).

Each fix is installed only where the installed versions need it; :data:`FIXES` is the one place that says what
each changes and when it applies, and :func:`installed_fixes` which ones this process installed:

- :mod:`.checkpoint_loading` (always; the project's policy that no file runs code): mmengine's checkpoint loader
  reads local files with ``torch.load(weights_only=True)``; mmengine <= 0.10.7 passes no ``weights_only`` (which
  runs a file's pickled code under torch < 2.6 and refuses mmengine's own checkpoints under torch >= 2.6), so
  checkpoints written by mmengine (ours and stock ones) load with only the globals they need allowed. URLs and
  model-zoo names (:mod:`.remote_checkpoint_loading`) are downloaded to torch's hub cache and loaded the same way
  (mmengine unpickles them with ``weights_only=False``).
- :mod:`.cpu_distributed` (mmengine <= 0.10.7, the versions checked): the ``pytorch`` launcher trains on
  CPU-only machines (gloo) instead of calling ``torch.cuda.set_device``; with an accelerator nothing changes.
- :mod:`.ms_deform_attn` (mmcv with ``mmcv.ops``, <= 2.2.0, the versions checked): mmcv's
  ``MultiScaleDeformableAttention`` (Mask2Former's pixel decoder) runs on a GPU when the compiled ops lack CUDA
  kernels or the input is bfloat16, which mmcv's kernel does not dispatch (through a subclass of mmcv's autograd
  function).
- :mod:`.mmseg_inferencer` (mmseg <= 1.2.2, the versions checked): ``MMSegInferencer`` accepts test pipelines
  whose loader subclasses ``LoadImageFromFile``, and refuses a restorer's predictions with one line.
- :mod:`.encoder_decoder_head_check` (mmseg <= 1.2.2): mmseg's plain ``EncoderDecoder`` with a RASS backbone or
  neck refuses, at build time and in one line, a decode head whose ``in_channels`` do not fit the features.
- :mod:`.encoder_decoder_label_check` (mmseg <= 1.2.2): the same segmentor refuses, in ``loss`` and ``predict``
  and in one line naming the label file, ground-truth labels its decode head has no class for.
- :mod:`.frozen_parameter_log` (mmengine <= 0.10.7): the optimizer constructor logs one line for the frozen
  parameters it leaves out instead of one warning per parameter.
- :mod:`.mmagic_imports` (mmagic <= 1.2.0 installed, its version read without importing it): mmagic's metrics
  and degradation transforms import with numpy 2 and the pinned diffusers (``np.bool8`` restored when mmagic is
  imported; stand-ins that refuse in one line for its three modules whose dependencies are missing).

A version outside a fix's range gets mmengine's / mmseg's / mmcv's own code: re-check the fix before widening it.
"""
import importlib
import importlib.metadata
from typing import Callable, Dict, List, NamedTuple

from mmengine.utils import digit_version

__all__ = ['CHECKPOINT_SAFE_GLOBALS', 'FIXES', 'Fix', 'installed_fixes', 'load_from_local_weights_only']


class Fix(NamedTuple):
    """When a stack fix (a module of this package with an ``install()``) is installed.

    Args:
        when: The condition, in words.
        needed: Whether the installed versions meet it.
    """
    when: str
    needed: Callable[[], bool]


def _version_at_most(package: str, highest: str) -> Callable[[], bool]:
    def needed() -> bool:
        try:
            module = importlib.import_module(package)
        except ImportError:
            return False
        return digit_version(module.__version__) <= digit_version(highest)
    return needed


def _distribution_at_most(distribution: str, highest: str) -> Callable[[], bool]:
    """Whether ``distribution`` is installed at ``highest`` or below, read from its metadata (not imported)."""
    def needed() -> bool:
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            return False
        return digit_version(version) <= digit_version(highest)
    return needed


def _mmcv_ops_at_most(highest: str) -> Callable[[], bool]:
    def needed() -> bool:
        try:
            import mmcv
            importlib.import_module('mmcv.ops.multi_scale_deform_attn')
        except ImportError:  # mmcv-lite without compiled ops: no MultiScaleDeformableAttention to route
            return False
        return digit_version(mmcv.__version__) <= digit_version(highest)
    return needed


#: Module name under ``rass_mmseg.compat`` -> when its fix is installed.
FIXES: Dict[str, Fix] = {
    'checkpoint_loading': Fix('always', lambda: True),
    'cpu_distributed': Fix('mmengine <= 0.10.7', _version_at_most('mmengine', '0.10.7')),
    'ms_deform_attn': Fix('mmcv.ops importable, mmcv <= 2.2.0', _mmcv_ops_at_most('2.2.0')),
    'mmseg_inferencer': Fix('mmseg <= 1.2.2', _version_at_most('mmseg', '1.2.2')),
    'encoder_decoder_head_check': Fix('mmseg <= 1.2.2', _version_at_most('mmseg', '1.2.2')),
    'encoder_decoder_label_check': Fix('mmseg <= 1.2.2', _version_at_most('mmseg', '1.2.2')),
    'frozen_parameter_log': Fix('mmengine <= 0.10.7', _version_at_most('mmengine', '0.10.7')),
    'mmagic_imports': Fix('mmagic installed, <= 1.2.0', _distribution_at_most('mmagic', '1.2.0')),
}
_installed: List[str] = []


def installed_fixes() -> List[str]:
    """Names of the fixes this process installed (in :data:`FIXES` order)."""
    return list(_installed)


def _install_needed_fixes() -> None:
    for name, fix in FIXES.items():
        if name not in _installed and fix.needed():
            importlib.import_module(f'{__name__}.{name}').install()
            _installed.append(name)


_install_needed_fixes()

from .checkpoint_loading import CHECKPOINT_SAFE_GLOBALS, load_from_local_weights_only  # noqa: E402
