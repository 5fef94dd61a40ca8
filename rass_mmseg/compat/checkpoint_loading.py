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
   mmengine's remote loaders (URLs, ``torchvision://``, ``open-mmlab://``, ``mmcls://``, ...) unpickle with
   ``weights_only=False``; :mod:`.remote_checkpoint_loading` replaces them with loaders that fetch the file and
   load it here.
2. ``HistoryBuffer.__getstate__`` no longer puts the class-level statistics functions into the pickled state
   (they live in the class and are re-registered by the code that defines them), so checkpoints written with
   the plugin imported contain no ``getattr`` at all and load with torch's own allowlist plus the data types.

Besides, a file that cannot be read (truncated, empty, not a checkpoint) fails with one line naming it, and a
checkpoint whose state dict holds NaN or inf loads with a warning naming the tensors.

Where the user owns the choice, the plugin keeps it: torch's escape hatch ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``
loads a refused file with ``weights_only=False`` (with a warning naming the file and what was refused), and a
loader registered for one of mmengine's prefixes by anyone but mmengine before the plugin is imported is kept
(with a warning naming it).
"""
import logging
import os
import os.path as osp
import pickle
import pickletools
import re
import struct
import zipfile
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['CHECKPOINT_SAFE_GLOBALS', 'HISTORY_BUFFER_METHODS', 'escape_hatch_set', 'history_buffer_getattr',
           'load_from_local_weights_only', 'non_finite_tensors', 'install']

#: The statistics methods that stock mmengine pickles by ``getattr(HistoryBuffer, name)``.
HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')
_REFUSED_GETATTR = 'weights-only getattr refused'
_UNPICKLER_REASON = 'WeightsUnpickler error: '
_TRUE_VALUES = ('1', 'y', 'yes', 'true')  # as torch.load reads TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD
_PICKLE_OPCODES = {opcode.code for opcode in pickletools.opcodes}
#: What ``torch.load`` raises for a file cut short or not written by ``torch.save`` (besides the cases in
#: :func:`_damaged`).
_DAMAGE_ERRORS = (EOFError, OSError, KeyError, IndexError, struct.error, zipfile.BadZipFile)


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


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else ''


def _refused_globals(error: pickle.UnpicklingError, filename: str) -> List[str]:
    """What the weights-only unpickler refused in ``filename``, for a one-line message."""
    message = str(error)
    if _REFUSED_GETATTR in message:
        return [message[message.index(_REFUSED_GETATTR) + len(_REFUSED_GETATTR) + 2:].splitlines()[0]]
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
    except Exception:  # not a zip checkpoint: report the unpickler's own reason
        unsafe = []
    allowed = _allowed_names()
    refused = [g for g in unsafe if g not in allowed]
    if not refused:
        reason = message.split(_UNPICKLER_REASON, 1)[1] if _UNPICKLER_REASON in message else message
        unsafe_global = re.search(r'GLOBAL (\S+) was not an allowed global', reason)
        refused = [unsafe_global.group(1) if unsafe_global else _first_line(reason)]
    return refused


def escape_hatch_set() -> bool:
    """Whether torch's documented escape hatch ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is on (read as ``torch.load``
    reads it)."""
    return os.getenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '0').lower() in _TRUE_VALUES


def _damaged(error: Exception) -> bool:
    """Whether ``torch.load`` failed because the file is cut short or was not written by ``torch.save``."""
    if isinstance(error, pickle.UnpicklingError):  # bytes that are no pickle opcode at all
        operand = re.search(r'Unsupported operand (\d+)', str(error))
        return operand is not None and chr(int(operand.group(1))) not in _PICKLE_OPCODES
    if isinstance(error, RuntimeError):
        return any(sign in str(error) for sign in ('zip archive', 'EOF', 'corrupt'))
    return isinstance(error, _DAMAGE_ERRORS) and not isinstance(error, PermissionError)


def _unreadable(shown: str, error: Exception) -> ValueError:
    reason = _first_line(str(error)).rstrip('.') or 'unexpected end of file'
    return ValueError(f'cannot read checkpoint {shown}: {type(error).__name__}: {reason}. A truncated or damaged '
                      'file (an interrupted save, download or copy) fails this way: save or download it again')


def _torch_load(filename: str, shown: str, map_location: Optional[Any]) -> Any:
    """``torch.load`` with ``weights_only=True`` and the allowlist; ``weights_only=False`` only through the
    escape hatch, loudly."""
    try:
        with torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except Exception as error:
        if _damaged(error):
            raise _unreadable(shown, error) from None
        if not isinstance(error, pickle.UnpicklingError):
            raise
        refused = _refused_globals(error, filename)
    if not escape_hatch_set():
        raise pickle.UnpicklingError(
            f'refused to load {shown}: weights-only loading does not allow {", ".join(refused[:5])} (a file from an '
            'unknown source could run code this way). If you trust the file, re-save its weights as a plain state '
            'dict (torch.save({"state_dict": ...})) or as safetensors, or set TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 '
            '(which runs any code the file holds)')
    print_log(f'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set: loading {shown} with torch.load(weights_only=False) '
              f'although weights-only loading refused {", ".join(refused[:5])}. Unpickling runs any code the file '
              'holds: unset the variable unless you trust this file', logger='current', level=logging.WARNING)
    try:
        return torch.load(filename, map_location=map_location, weights_only=False)
    except Exception as error:
        if _damaged(error):
            raise _unreadable(shown, error) from None
        raise


def non_finite_tensors(checkpoint: Any) -> Dict[str, Tuple[int, int]]:
    """The floating-point tensors of a checkpoint's state dict (``checkpoint['state_dict']``, or the checkpoint
    itself, as mmengine reads it) that hold NaN or inf.

    Returns:
        Key -> (number of non-finite values, number of values).
    """
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    found = {}
    for key, value in (state.items() if isinstance(state, dict) else ()):
        if (isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex())
                and value.device.type != 'meta' and not bool(torch.isfinite(value).all())):
            found[str(key)] = (int((~torch.isfinite(value)).sum()), value.numel())
    return found


def _warn_non_finite(checkpoint: Any, shown: str) -> None:
    found = non_finite_tensors(checkpoint)
    if found:
        listed = ', '.join(f'{key} ({bad} of {total})' for key, (bad, total) in list(found.items())[:5])
        more = f' and {len(found) - 5} more' if len(found) > 5 else ''
        print_log(f'checkpoint {shown}: {len(found)} tensor(s) of its state dict hold NaN or inf: {listed}{more}. '
                  'A model loaded from it predicts nonsense (often one class everywhere); the run that saved it had '
                  'probably diverged', logger='current', level=logging.WARNING)


def load_from_local_weights_only(filename: str, map_location: Optional[Any] = None,
                                 source: Optional[str] = None) -> Any:
    """``torch.load`` a local checkpoint with ``weights_only=True`` and the allowlist above.

    A checkpoint whose state dict holds NaN or inf is loaded with a warning that names the tensors.

    Args:
        filename: The local file.
        map_location: As ``torch.load``'s.
        source: Where the file came from (the URL ``filename`` was downloaded from), for messages.

    Raises:
        FileNotFoundError: No such file.
        pickle.UnpicklingError: The file needs globals outside the allowlist, or calls ``getattr`` on anything
            but ``HistoryBuffer``'s statistics methods (it could run code), and the escape hatch
            ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` is not set.
        ValueError: The file cannot be read (truncated, empty, not a checkpoint).
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    shown = f'{source} ({filename})' if source else filename
    checkpoint = _torch_load(filename, shown, map_location)
    _warn_non_finite(checkpoint, shown)
    return checkpoint


def _history_buffer_getstate(self: HistoryBuffer) -> dict:
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)  # functions pickle through builtins.getattr
    return state


def _replaceable(loader: Callable) -> bool:
    """mmengine's own loader or one of the plugin's: anything else a user registered is kept."""
    return getattr(loader, '__module__', None) in ('mmengine.runner.checkpoint', __name__,
                                                   f'{__package__}.remote_checkpoint_loading')


def install() -> None:
    """Apply both fixes (idempotent): the weights-only loader for local paths and, through
    :mod:`.remote_checkpoint_loading`, for every remote scheme mmengine registers.

    A loader registered before the plugin for one of these prefixes by anyone but mmengine is kept, with a warning
    naming it: the plugin never silently replaces a user's loader.
    """
    from .remote_checkpoint_loading import REMOTE_LOADERS
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    for prefixes, loader in [(('', ), load_from_local_weights_only)] + REMOTE_LOADERS:
        for prefix in prefixes:
            current = CheckpointLoader._schemes.get(prefix)
            if current is None or _replaceable(current):
                CheckpointLoader.register_scheme(prefixes=prefix, loader=loader, force=True)
                continue
            name = f'{getattr(current, "__module__", "?")}.{getattr(current, "__qualname__", repr(current))}'
            print_log(f'rass_mmseg.compat.checkpoint_loading: keeping the checkpoint loader {name} registered for '
                      f'prefix {prefix!r}; the files it loads are not checked by the plugin (weights-only, no code '
                      'runs from a file). Register it after importing rass_mmseg to silence this, or remove it to '
                      'use the plugin\'s loader', logger='current', level=logging.WARNING)
