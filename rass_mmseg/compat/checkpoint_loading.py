"""Load mmengine checkpoints under torch >= 2.6 with ``weights_only=True`` kept on.

mmengine 0.10.7 fails to load its own checkpoints on torch >= 2.6: ``torch.load`` defaults to
``weights_only=True`` there, and a Runner checkpoint holds a ``MessageHub`` state with mmengine's
``HistoryBuffer`` objects and numpy arrays/scalars, which the weights-only unpickler refuses. Each
``HistoryBuffer`` also pickles its statistics functions (``HistoryBuffer.min`` ...) through
``builtins.getattr(HistoryBuffer, 'min')`` (pickle protocol 2 has no other way to name a method), and a free
``getattr`` must never be allowed: with it a pickle can reach ``eval``.

This module fixes both, narrowly, when ``rass_mmseg`` is imported:

1. mmengine's loader for local paths (scheme prefix ``''``) is replaced by one that calls
   ``torch.load(..., weights_only=True)`` with an allowlist of plain data types only: ``HistoryBuffer``, numpy's
   array/scalar/dtype reconstruction (under numpy 2's and numpy 1's module names, so checkpoints written with
   either load), and :func:`history_buffer_getattr` in place of ``builtins.getattr``. That stand-in resolves
   exactly ``getattr(HistoryBuffer, name)`` for the statistics methods mmengine registers itself (``min``,
   ``max``, ``current``, ``mean``) and refuses everything else. So every checkpoint written by stock mmengine
   (mmseg's ``tools/train.py`` without the plugin, and mmseg 1.x model-zoo checkpoints, which keep the message
   hub) loads, and a pickle with code in it is refused with a one-line error that says what was refused.
2. ``HistoryBuffer.__getstate__`` no longer puts the class-level statistics functions into the pickled state
   (they live in the class and are re-registered by the code that defines them), so checkpoints written with
   the plugin imported contain no ``getattr`` at all and load with torch's own allowlist plus the data types.

``weights_only`` is never turned off, and no environment variable is needed.
"""
import os.path as osp
import pickle
from typing import Any, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['CHECKPOINT_SAFE_GLOBALS', 'HISTORY_BUFFER_METHODS', 'history_buffer_getattr',
           'load_from_local_weights_only', 'install']

#: The statistics methods that stock mmengine pickles by ``getattr(HistoryBuffer, name)``.
HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')
_REFUSED_GETATTR = 'weights-only getattr refused'


def history_buffer_getattr(obj: Any, name: str) -> Any:
    """``builtins.getattr`` as a weights-only unpickler may call it: only ``HistoryBuffer``'s statistics methods.

    Raises:
        pickle.UnpicklingError: Any other object or attribute.
    """
    if obj is HistoryBuffer and name in HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    target = obj.__qualname__ if isinstance(obj, type) else type(obj).__qualname__
    raise pickle.UnpicklingError(f'{_REFUSED_GETATTR}: builtins.getattr({target}, {name!r})')


def _numpy_globals() -> List[Union[Any, Tuple[Any, str]]]:
    """numpy's reconstruction functions and dtypes, also under numpy 1's ``numpy.core`` names."""
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    dtype_classes = [getattr(np.dtypes, name) for name in getattr(np.dtypes, '__all__', [])]
    aliases = [(multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
               (multiarray.scalar, 'numpy.core.multiarray.scalar')]
    return [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar] + dtype_classes + aliases


#: What a weights-only load may construct or call besides tensors and builtin containers: inert data only,
#: and a ``getattr`` that resolves nothing but ``HistoryBuffer``'s statistics methods.
CHECKPOINT_SAFE_GLOBALS: List[Union[Any, Tuple[Any, str]]] = [HistoryBuffer, (history_buffer_getattr,
                                                                              'builtins.getattr')] + _numpy_globals()


def _allowed_names() -> set:
    return {g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}' for g in CHECKPOINT_SAFE_GLOBALS}


def load_from_local_weights_only(filename: str, map_location: Optional[Any] = None) -> Any:
    """``torch.load`` a local checkpoint with ``weights_only=True`` and the allowlist above.

    Raises:
        FileNotFoundError: No such file.
        pickle.UnpicklingError: The file needs globals outside the allowlist, or calls ``getattr`` on anything
            but ``HistoryBuffer``'s statistics methods (it could run code).
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        with torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        message = str(error)
        if _REFUSED_GETATTR in message:
            refused = [message[message.index(_REFUSED_GETATTR) + len(_REFUSED_GETATTR) + 2:].splitlines()[0]]
        else:
            try:
                unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
            except Exception:  # not a zip checkpoint: report the unpickler's own reason
                unsafe = []
            allowed = _allowed_names()
            refused = [g for g in unsafe if g not in allowed] or [message.splitlines()[0][:200]]
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
