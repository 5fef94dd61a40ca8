"""Checkpoints without the frozen Stable Diffusion weights, verified by a fingerprint when they are loaded.

At paper size a full state dict holds the frozen SD 2.1-base weights (~1.3 billion numbers, ~5 GB) next to ~28M that
train. A module that rebuilds its frozen weights from files at construction time (``pretrained=...``) can leave them
out of its state dict: :func:`leave_frozen_weights_out_of_checkpoints` registers three hooks on it.

- ``state_dict()`` omits the frozen keys and adds one uint8 tensor, ``<prefix>frozen_weights_fingerprint``, a digest
  of the frozen tensors (:func:`fingerprint_tensors`).
- ``load_state_dict()`` of a state dict with that key checks the digest against the module's own frozen weights and
  raises a one-line error when they differ (a checkpoint loaded onto other base weights); the frozen keys it lacks
  are then not reported as missing, so ``strict=True`` loading, mmseg's ``load_from``, ``--resume`` and
  ``tools/test.py`` work unchanged.
- A full state dict (no fingerprint key, e.g. a checkpoint written before this existed) loads as before: every key
  is expected.

What is saved and loaded goes through ``state_dict`` and ``load_state_dict`` only, so mmengine's checkpoint code and
every tool that uses it need no change.
"""
import hashlib
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

__all__ = ['FINGERPRINT_KEY', 'fingerprint_tensors', 'leave_frozen_weights_out_of_checkpoints', 'persistent_state']

FINGERPRINT_KEY = 'frozen_weights_fingerprint'


def fingerprint_tensors(tensors: Dict[str, Tensor]) -> str:
    """A short digest of named tensors: each name, shape and first and last 16 values (as float32).

    It tells two sets of weights apart in practice at a negligible cost even for the 866M-parameter UNet.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        flat = tensor.detach().reshape(-1).float().cpu()
        sample = torch.cat([flat[:16], flat[-16:]]) if flat.numel() > 32 else flat
        digest.update(f'{name}:{tuple(tensor.shape)}:'.encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:32]


def persistent_state(module: nn.Module) -> Dict[str, Tensor]:
    """The tensors ``module.state_dict()`` would hold, by the same names, read without calling its hooks."""
    state = {}
    for module_name, child in module.named_modules():
        prefix = f'{module_name}.' if module_name else ''
        for name, param in child._parameters.items():
            if param is not None:
                state[prefix + name] = param
        for name, buffer in child._buffers.items():
            if buffer is not None and name not in child._non_persistent_buffers_set:
                state[prefix + name] = buffer
    return state


def _encode(fingerprint: str) -> Tensor:
    return torch.tensor(list(fingerprint.encode()), dtype=torch.uint8)


def _decode(tensor: Tensor) -> str:
    return bytes(tensor.to(torch.uint8).cpu().tolist()).decode(errors='replace')


def _frozen_state(module: nn.Module) -> Dict[str, Tensor]:
    state = persistent_state(module)
    return {key: state[key] for key in module.frozen_state_keys()}


def _drop_frozen(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    frozen = _frozen_state(module)
    for key in frozen:
        state_dict.pop(prefix + key, None)
    state_dict[prefix + FINGERPRINT_KEY] = _encode(fingerprint_tensors(frozen))


def _check_fingerprint(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
                       missing_keys: List[str], unexpected_keys: List[str], error_msgs: List[str]) -> None:
    saved: Optional[Tensor] = state_dict.pop(prefix + FINGERPRINT_KEY, None)
    if saved is None:
        return
    expected, actual = _decode(saved), fingerprint_tensors(_frozen_state(module))
    if expected != actual:
        raise ValueError(f'{type(module).__name__}: the checkpoint was trained on other frozen weights than this '
                         f'model was built from ({module.frozen_weights_source()}): fingerprint {expected}, this '
                         f'model {actual}; build it from the weights and adapters it was trained with')
    module._frozen_weights_slim_load = prefix


def _forgive_missing_frozen(module: nn.Module, incompatible_keys) -> None:
    prefix = module.__dict__.pop('_frozen_weights_slim_load', None)
    if prefix is None:
        return
    frozen = {prefix + key for key in module.frozen_state_keys()}
    incompatible_keys.missing_keys[:] = [key for key in incompatible_keys.missing_keys if key not in frozen]


def leave_frozen_weights_out_of_checkpoints(module: nn.Module) -> None:
    """Register the state-dict hooks described in the module docstring on ``module``.

    Args:
        module: A module with ``frozen_state_keys()`` (the keys, relative to it, of the tensors rebuilt at
            construction) and ``frozen_weights_source()`` (what they are built from, for the error message). The
            hooks are plain functions of the module they are called with, so copies of the module keep working.
    """
    for method in ('frozen_state_keys', 'frozen_weights_source'):
        if not callable(getattr(module, method, None)):
            raise TypeError(f'{type(module).__name__} needs a {method}() method to leave frozen weights out of '
                            'checkpoints')
    module.register_state_dict_post_hook(_drop_frozen)
    module.register_load_state_dict_pre_hook(_check_fingerprint)
    module.register_load_state_dict_post_hook(_forgive_missing_frozen)
