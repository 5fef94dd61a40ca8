"""Checkpoints without a submodule whose weights come from a file of its own (an image tagger's weights file).

A frozen submodule that loads its weights from a file named in the config (e.g. the RAM tagger of an
``ImageTagsPrompt``) is rebuilt from that file whenever the model is built, as the Stable Diffusion weights are
rebuilt from ``pretrained``. Its weights are then no part of what a user's checkpoint holds:
:func:`leave_submodule_out_of_checkpoints` makes ``state_dict()`` omit them and ``load_state_dict()`` not report them
as missing, so a checkpoint trained or converted without the submodule loads with ``strict=True`` onto a model that
has it. A state dict that holds them (written by a model whose submodule had no weights file) still loads them.
"""
from typing import List

from torch import nn

__all__ = ['leave_submodule_out_of_checkpoints']


def _drop_submodule(name: str):
    def hook(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
        for key in [k for k in state_dict if k.startswith(f'{prefix}{name}.')]:
            del state_dict[key]
    return hook


def _remember_prefix(name: str):
    def hook(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
             missing_keys: List[str], unexpected_keys: List[str], error_msgs: List[str]) -> None:
        module.__dict__.setdefault('_external_weights_prefixes', []).append(f'{prefix}{name}.')
    return hook


def _forgive_missing(module: nn.Module, incompatible_keys) -> None:
    prefixes = tuple(module.__dict__.pop('_external_weights_prefixes', ()))
    if prefixes:
        incompatible_keys.missing_keys[:] = [k for k in incompatible_keys.missing_keys if not k.startswith(prefixes)]


def leave_submodule_out_of_checkpoints(module: nn.Module, name: str) -> None:
    """Leave ``module.<name>`` out of ``module``'s state dicts and never report its keys as missing on load.

    Args:
        module: The owner, e.g. a backbone.
        name: The attribute name of the submodule, e.g. ``'tagger'``.
    """
    if not isinstance(getattr(module, name, None), nn.Module):
        raise TypeError(f'{type(module).__name__}.{name} is not a submodule')
    module.register_state_dict_post_hook(_drop_submodule(name))
    module.register_load_state_dict_pre_hook(_remember_prefix(name))
    module.register_load_state_dict_post_hook(_forgive_missing)
