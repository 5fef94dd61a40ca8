"""Load mmengine checkpoints under torch >= 2.6 with ``weights_only=True`` kept on.

mmengine 0.10.7 fails to load its own checkpoints on torch >= 2.6: ``torch.load`` defaults to
``weights_only=True`` there, and a Runner checkpoint holds a ``MessageHub`` state with mmengine's
``HistoryBuffer`` objects and numpy arrays/scalars, which the weights-only unpickler refuses. Worse, each
``HistoryBuffer`` pickles its statistics functions through ``builtins.getattr``, a global that must never
be allowed (with it a pickle can reach ``eval``).

This module fixes both, narrowly, when ``rass_mmseg`` is imported:

1. ``HistoryBuffer.__getstate__`` no longer puts the class-level statistics functions into the pickled
   state (they live in the class and are re-registered by the code that defines them), so new
   checkpoints contain no ``getattr``.
2. mmengine's loader for local paths (scheme prefix ``''``) is replaced by one that calls
   ``torch.load(..., weights_only=True)`` with an allowlist of plain data types only: ``HistoryBuffer``
   and numpy's array/scalar/dtype reconstruction. Anything else (a pickle with code in it, or a checkpoint
   saved before this fix) is refused with a one-line error that says what was refused.

``weights_only`` is never turned off, and no environment variable is needed.
"""
import os.path as osp
import pickle
from typing import Any, List, Optional

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['CHECKPOINT_SAFE_GLOBALS', 'load_from_local_weights_only', 'install']


def _numpy_globals() -> List[Any]:
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    dtype_classes = [getattr(np.dtypes, name) for name in getattr(np.dtypes, '__all__', [])]
    return [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar] + dtype_classes


#: Globals a weights-only load may construct besides tensors and builtin containers: inert data only.
CHECKPOINT_SAFE_GLOBALS: List[Any] = [HistoryBuffer] + _numpy_globals()


def load_from_local_weights_only(filename: str, map_location: Optional[Any] = None) -> Any:
    """``torch.load`` a local checkpoint with ``weights_only=True`` and the allowlist above.

    Raises:
        FileNotFoundError: No such file.
        pickle.UnpicklingError: The file needs globals outside the allowlist (it could run code).
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        with torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
        except Exception:  # not a zip checkpoint: report the unpickler's own reason
            unsafe = []
        allowed = {f'{g.__module__}.{g.__qualname__}' for g in CHECKPOINT_SAFE_GLOBALS}
        refused = [g for g in unsafe if g not in allowed] or [str(error).splitlines()[0][:200]]
        raise pickle.UnpicklingError(
            f'refused to load {filename}: weights-only loading does not allow {", ".join(refused[:5])} '
            '(a file from an unknown source could run code this way). If you trust the file, re-save its '
            'weights as a plain state dict (torch.save({"state_dict": ...})) or as safetensors.') from None


def _history_buffer_getstate(self: HistoryBuffer) -> dict:
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)  # functions pickle through builtins.getattr
    return state


def install() -> None:
    """Apply both fixes (idempotent)."""
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_weights_only, force=True)


install()
