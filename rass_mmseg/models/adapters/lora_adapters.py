"""LoRA adapters on the diffusers UNet: add, export, merge; the hand-over from SCR (stage 1) to RASS (stage 2).

SCR trains a LoRA adapter on the Stable Diffusion UNet and exports it as a folder; RASS merges that folder into the
UNet weights and adds a fresh adapter of its own. The LoRA work is diffusers' ``PeftAdapterMixin`` on the UNet
(``add_adapter``, ``fuse_lora`` + ``unload_lora``) over peft's layers; what it lacks is here:

- reading an adapter folder checked whole before any layer is built, and building the layers on the meta device so
  a merge consumes no random numbers and no memory for LoRA weights that the file replaces (:func:`merge_lora_adapter`);
- modules trained in full beside the LoRA (SCR trains the UNet's ``conv_in``; their weights replace the base weights
  before the LoRA is merged) and a digest of the base UNet weights the adapter was trained on
  (:func:`base_weights_fingerprint`), so merging into another base model fails with a clear error.

Folders are written so that plain peft (``PeftModel.from_pretrained``), a plain diffusers pipeline
(``load_lora_weights``) and :func:`merge_lora_adapter` all load them as they are; see
:mod:`rass_mmseg.models.adapters.adapter_folder` for the layout and why it holds the LoRA twice. Adapters are only
ever read as safetensors, so loading one cannot run code.
"""
from typing import Dict, Iterable, Sequence

import torch
from diffusers import UNet2DConditionModel
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from ..utils.frozen_weights import fingerprint_tensors
from .adapter_folder import read_adapter_folder, write_adapter_folder

__all__ = ['DEFAULT_LORA_TARGETS', 'add_lora_adapter', 'save_lora_adapter', 'merge_lora_adapter',
           'merge_injected_adapter', 'lora_parameter_names', 'base_weights_fingerprint']

#: Module-name suffixes that get LoRA in the public RASS code (``conv_out`` is left out).
DEFAULT_LORA_TARGETS = ('to_k', 'to_q', 'to_v', 'to_out.0', 'conv', 'conv1', 'conv2', 'conv_in', 'conv_shortcut',
                        'proj_out', 'proj_in', 'ff.net.2', 'ff.net.0.proj')


def make_lora_config(rank: int, alpha: float, targets: Sequence[str]) -> LoraConfig:
    """LoRA config with B initialised to zero, so a new adapter leaves the model output unchanged."""
    if rank < 1:
        raise ValueError(f'lora rank must be >= 1, got {rank}')
    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), init_lora_weights='gaussian')


def add_lora_adapter(unet: UNet2DConditionModel, name: str, rank: int, alpha: float, targets: Sequence[str]) -> None:
    """Add a trainable LoRA adapter ``name`` to ``unet`` in place (diffusers' ``add_adapter``, which makes it the only
    active adapter of every LoRA layer)."""
    unet.add_adapter(make_lora_config(rank, alpha, targets), adapter_name=name)


def lora_parameter_names(model: nn.Module, name: str) -> Iterable[str]:
    """Names of the parameters that belong to adapter ``name``."""
    return [n for n, _ in model.named_parameters() if f'.{name}.' in n and ('lora_A' in n or 'lora_B' in n)]


def _base_weights(model: nn.Module, skip_modules: Sequence[str] = ()) -> Dict[str, torch.Tensor]:
    """Base (non-LoRA) parameters and buffers by the names they have in a model without LoRA layers."""
    weights = {}
    for name, tensor in model.state_dict().items():
        if 'lora_' in name:
            continue
        name = name.replace('.base_layer', '')
        if any(name == m or name.startswith(m + '.') for m in skip_modules):
            continue
        weights[name] = tensor
    return weights


def base_weights_fingerprint(model: nn.Module, skip_modules: Sequence[str] = ()) -> str:
    """:func:`~rass_mmseg.models.utils.frozen_weights.fingerprint_tensors` of the base weights of ``model``, equal
    with or without injected LoRA layers.

    Args:
        model: The (possibly LoRA-injected) model.
        skip_modules: Module names whose weights are left out (modules trained beside the adapter).
    """
    return fingerprint_tensors(_base_weights(model, skip_modules))


def save_lora_adapter(model: nn.Module, name: str, out_dir: str, trained_modules: Sequence[str] = ()) -> None:
    """Write adapter ``name`` of ``model`` as an adapter folder that peft, diffusers and
    :func:`merge_lora_adapter` load (layout: :mod:`rass_mmseg.models.adapters.adapter_folder`).

    Args:
        model: A model holding adapter ``name``.
        name: The adapter to write.
        out_dir: Output folder (created; existing adapter files in it are replaced).
        trained_modules: Names of modules (e.g. ``'conv_in'``) trained with the adapter whose full base weights
            are written to ``trained_modules.safetensors``.
    """
    state = get_peft_model_state_dict(model, adapter_name=name)
    base = _base_weights(model)
    full = {}
    for module in trained_modules:
        found = {k: v for k, v in base.items() if k.startswith(module + '.')}
        if not found:
            raise ValueError(f'save_lora_adapter: trained module {module!r} has no weights in this model')
        full.update(found)
    write_adapter_folder(out_dir, model.peft_config[name], state, full, trained_modules,
                         base_weights_fingerprint(model, trained_modules))


def _check_trained_modules(model: nn.Module, path: str, trained: Dict[str, torch.Tensor]) -> None:
    """One-line error when full module weights saved beside an adapter do not fit the model's names and shapes."""
    params = _base_weights(model)
    for key, value in trained.items():
        if key not in params or tuple(params[key].shape) != tuple(value.shape):
            got = tuple(params[key].shape) if key in params else 'no such weight'
            raise ValueError(f'LoRA adapter {path!r}: trained module weight {key} {tuple(value.shape)} does not fit '
                             f'this UNet ({got})')


def _load_trained_modules(model: nn.Module, trained: Dict[str, torch.Tensor]) -> None:
    """Copy checked full module weights into the model's base weights."""
    params = _base_weights(model)  # state_dict tensors share storage with the parameters
    with torch.no_grad():
        for key, value in trained.items():
            params[key].copy_(value)


def _check_adapter_state(path: str, state: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor]) -> None:
    """Raise a one-line error when an adapter's keys or shapes do not fit the model it is merged into."""
    unexpected = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state))
    if unexpected or missing:
        key = (unexpected or missing)[0]
        raise ValueError(f'LoRA adapter {path!r} does not fit this UNet: {len(unexpected)} unexpected and '
                         f'{len(missing)} missing keys (e.g. {key!r}); was it trained for another base model '
                         'or with other target_modules?')
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ValueError(f'LoRA adapter {path!r}: {key} has shape {tuple(value.shape)}, this UNet expects '
                             f'{tuple(expected[key].shape)} (wrong rank or another base model)')


def merge_lora_adapter(unet: UNet2DConditionModel, path: str, name: str) -> UNet2DConditionModel:
    """Load the adapter at ``path`` into ``unet`` and merge it into the base weights.

    Modules trained beside the LoRA are loaded first; the LoRA is merged by diffusers' ``fuse_lora`` and its layers
    removed by ``unload_lora`` (peft's merge, as ``merge_and_unload`` does it). Returns ``unet`` itself, with merged
    weights and no LoRA layers left.

    Nothing of ``unet`` changes until everything is checked, in this order: the folder in itself
    (:func:`~rass_mmseg.models.adapters.adapter_folder.read_adapter_folder`: config values, rank against the
    weights' shapes, finite weights, trained-module keys), the base-weights fingerprint, the trained modules' names
    and shapes, and the LoRA keys and shapes against LoRA layers that peft builds on the meta device (no memory, no
    random numbers drawn).

    Args:
        unet: A UNet without adapter ``name``.
        path: An adapter folder written by :func:`save_lora_adapter`, a plain peft adapter folder, or its
            ``adapter_model.safetensors`` file.
        name: Adapter name used while merging.

    Raises:
        ValueError: The adapter folder holds a bad value, was trained on other base weights, or does not fit
            ``unet`` (one line, naming the file).
    """
    adapter = read_adapter_folder(path)
    config, state, trained = adapter.config, adapter.lora, adapter.trained
    if adapter.fingerprint is not None:
        actual = base_weights_fingerprint(unet, adapter.trained_modules)
        if actual != adapter.fingerprint:
            raise ValueError(f'LoRA adapter {path!r} was trained on another base UNet (weights fingerprint '
                             f'{adapter.fingerprint} in {adapter.metadata_file}, this UNet has {actual}); use the '
                             'Stable Diffusion weights it was trained with')
    _check_trained_modules(unet, path, trained)
    # diffusers' add_adapter cannot build the layers on the meta device: peft's injection does
    inject_adapter_in_model(config, unet, adapter_name=name, low_cpu_mem_usage=True)
    try:
        _check_adapter_state(path, state, get_peft_model_state_dict(unet, adapter_name=name))
    except ValueError:
        unet.unload_lora()
        raise
    _load_trained_modules(unet, trained)
    # assigns the file's tensors to the meta LoRA weights (moved to the base layers' device and dtype)
    set_peft_model_state_dict(unet, state, adapter_name=name, low_cpu_mem_usage=True)
    unet.fuse_lora(adapter_names=[name])
    unet.unload_lora()
    return unet


def merge_injected_adapter(unet: UNet2DConditionModel, name: str) -> UNet2DConditionModel:
    """Merge adapter ``name`` (added with :func:`add_lora_adapter`) into the base weights and remove every LoRA
    layer (diffusers' ``fuse_lora`` + ``unload_lora``), leaving plain ``nn.Linear`` / ``nn.Conv2d`` modules whose
    names equal those of a UNet that never had LoRA.

    Raises:
        ValueError: ``unet`` has no adapter ``name``, or holds other adapters that would be dropped.
    """
    layers = [m for m in unet.modules() if isinstance(m, BaseTunerLayer)]
    if not layers or any(name not in m.lora_A for m in layers):
        raise ValueError(f'no LoRA adapter {name!r} to merge')
    others = {a for m in layers for a in m.lora_A if a != name}
    if others:
        raise ValueError(f'cannot unload LoRA: adapters {sorted(others)} besides {name!r} would be lost')
    unet.fuse_lora(adapter_names=[name])
    unet.unload_lora()
    return unet
