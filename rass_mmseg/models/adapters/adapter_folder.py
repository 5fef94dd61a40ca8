"""On-disk layout of the LoRA adapter folders written by ``save_lora_adapter`` and read by ``merge_lora_adapter``.

A folder holds one adapter's LoRA in two layouts, each loaded as it is and with no warning by the library it
is for, and our metadata beside them:

- ``adapter_config.json`` + ``adapter_model.safetensors``: peft's own layout, as ``PeftModel.save_pretrained``
  writes it (config written by peft's ``LoraConfig.save_pretrained``; weight keys prefixed with
  ``base_model.model.``, the path of the UNet inside a ``PeftModel``). Read by
  ``PeftModel.from_pretrained(unet, folder)`` and by our ``merge_lora_adapter``.
- ``pytorch_lora_weights.safetensors``: diffusers' LoRA layout for Stable Diffusion, written by diffusers' own
  ``StableDiffusionLoraLoaderMixin.save_lora_weights`` (keys prefixed with ``unet.``, the LoRA config in the
  file's ``lora_adapter_metadata`` header, so ``lora_alpha`` is read back exactly instead of guessed). Read by
  ``pipeline.load_lora_weights(folder)`` and ``unet.load_lora_adapter(folder, prefix='unet',
  use_safetensors=True)``.
- ``rass_adapter.json`` (+ ``trained_modules.safetensors``): our additions, beside peft's files so that peft
  sees a clean config: the base-weights fingerprint and the modules trained in full beside the LoRA (SCR
  trains ``conv_in``), whose weights are in ``trained_modules.safetensors`` with the UNet's own key names.
  peft and diffusers load the LoRA only; with plain libraries, load these weights first with
  ``unet.load_state_dict(load_file(...), strict=False)`` (``merge_lora_adapter`` does it itself).

Why two LoRA files: peft reads only ``adapter_model.safetensors`` and expects ``base_model.model.`` keys, while a
diffusers pipeline keeps only the keys under ``unet.`` (and finds ``pytorch_lora_weights.safetensors`` among
several safetensors files by that name). No key prefix satisfies both, and a file with the wrong prefix is not
refused by either loader: it leaves a random (peft) or no (diffusers) LoRA behind a warning. The LoRA is small
next to the UNet (about 15 MiB in float32 at rank 4 on all default targets of SD 2.1-base, whose UNet has 3.5 GB),
so holding it twice costs little.

Plain peft folders (no ``rass_adapter.json``) are read too: no modules trained in full, no fingerprint.

Reading checks the folder in itself before anything is built from it, each problem a one-line ``ValueError``
naming the file and the key: every LoRA key has peft's ``base_model.model.`` prefix, ``r`` is a positive integer
equal to the rank of every LoRA weight in the file (so a wrong ``r`` cannot make peft allocate layers of that rank),
``lora_alpha`` a finite positive number, no peft option that
:func:`~rass_mmseg.models.adapters.lora_adapters.merge_lora_adapter` would ignore (per-module ranks or alphas,
rsLoRA, DoRA) is set, every tensor is floating point and finite, and ``trained_modules.safetensors`` holds weights
of exactly the modules the metadata lists (the base-weights fingerprint leaves those out, so any other key would
replace weights the fingerprint vouches for).
"""
import copy
import json
import math
import os
import os.path as osp
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch
from diffusers.loaders import StableDiffusionLoraLoaderMixin
from peft import LoraConfig
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

__all__ = ['ADAPTER_CONFIG', 'ADAPTER_WEIGHTS', 'DIFFUSERS_WEIGHTS', 'RASS_METADATA', 'TRAINED_MODULES',
           'PEFT_KEY_PREFIX', 'AdapterFiles', 'write_adapter_folder', 'read_adapter_folder']

ADAPTER_CONFIG = 'adapter_config.json'
ADAPTER_WEIGHTS = 'adapter_model.safetensors'
DIFFUSERS_WEIGHTS = 'pytorch_lora_weights.safetensors'
RASS_METADATA = 'rass_adapter.json'
TRAINED_MODULES = 'trained_modules.safetensors'
#: Key prefix of the LoRA weights in a peft ``adapter_model.safetensors`` (the model inside ``PeftModel``).
PEFT_KEY_PREFIX = 'base_model.model.'
#: Version of ``rass_adapter.json`` (an unpublished first layout, which kept our keys inside ``adapter_config.json``,
#: was version 1 and is not read).
FORMAT_VERSION = 2
#: peft config keys that change the merged weights but that a merge with one ``r`` and one ``lora_alpha`` ignores:
#: a folder setting them is refused instead of merged wrongly.
_UNSUPPORTED_CONFIG_KEYS = ('rank_pattern', 'alpha_pattern', 'use_rslora', 'use_dora')


class AdapterFiles(NamedTuple):
    """An adapter as read from its folder.

    Attributes:
        config: The LoRA config (rank, alpha, target modules).
        lora: LoRA weights keyed as ``get_peft_model_state_dict`` keys them (no prefix, no adapter name).
        trained: Full weights of the modules trained beside the LoRA, keyed as in the UNet.
        trained_modules: Names of those modules.
        fingerprint: Base-weights fingerprint the adapter was trained on, or None when none was recorded.
        metadata_file: The file holding ``fingerprint`` and ``trained_modules`` (named in errors).
    """
    config: LoraConfig
    lora: Dict[str, torch.Tensor]
    trained: Dict[str, torch.Tensor]
    trained_modules: List[str]
    fingerprint: Optional[str]
    metadata_file: str


def write_adapter_folder(out_dir: str, config: LoraConfig, lora: Dict[str, torch.Tensor],
                         trained: Dict[str, torch.Tensor], trained_modules: Sequence[str], fingerprint: str) -> None:
    """Write one adapter in the layout of this module's docstring.

    Args:
        out_dir: Output folder (created; existing adapter files in it are replaced; a stale
            ``trained_modules.safetensors`` is left but not read, ``rass_adapter.json`` lists no trained modules).
        config: The adapter's LoRA config.
        lora: LoRA weights as ``get_peft_model_state_dict`` returns them for the bare UNet.
        trained: Full weights of ``trained_modules``, keyed as in the UNet.
        trained_modules: Names of the modules trained beside the LoRA.
        fingerprint: Base-weights fingerprint of the UNet the adapter was trained on.
    """
    lora = {key: value.detach().contiguous().cpu() for key, value in lora.items()}
    config = copy.deepcopy(config)
    config.target_modules = sorted(config.target_modules)  # a set would be written in hash order
    os.makedirs(out_dir, exist_ok=True)
    config.save_pretrained(out_dir)  # peft's own writer
    save_file({PEFT_KEY_PREFIX + key: value for key, value in lora.items()}, osp.join(out_dir, ADAPTER_WEIGHTS),
              metadata={'format': 'pt'})
    with open(osp.join(out_dir, ADAPTER_CONFIG)) as f:
        config_dict = json.load(f)  # JSON types only, as diffusers stores them in the file header
    StableDiffusionLoraLoaderMixin.save_lora_weights(out_dir, unet_lora_layers=lora,
                                                     unet_lora_adapter_metadata=config_dict,
                                                     weight_name=DIFFUSERS_WEIGHTS)
    if trained:
        save_file({key: value.detach().contiguous().cpu() for key, value in trained.items()},
                  osp.join(out_dir, TRAINED_MODULES), metadata={'format': 'pt'})
    metadata = dict(format_version=FORMAT_VERSION, base_fingerprint=fingerprint,
                    trained_modules=list(trained_modules))
    with open(osp.join(out_dir, RASS_METADATA), 'w') as f:
        json.dump(metadata, f, indent=2)


def _load_safetensors(path: str) -> Dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as error:
        raise ValueError(f'LoRA adapter {path}: not a readable safetensors file ({error})') from None


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f'LoRA adapter {path}: not a readable JSON file ({error})') from None
    if not isinstance(data, dict):
        raise ValueError(f'LoRA adapter {path}: expected a JSON object, got {type(data).__name__}')
    return data


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_module_name(value) -> bool:
    return isinstance(value, str) and value != '' and not value.startswith('.') and not value.endswith('.')


def _lora_config(config_file: str, raw: dict) -> LoraConfig:
    """The LoRA config of ``adapter_config.json``, each value checked (one line naming the file and the key)."""
    missing = [key for key in ('r', 'lora_alpha', 'target_modules') if key not in raw]
    if missing:
        raise ValueError(f'LoRA adapter {config_file}: not a LoRA adapter config (no {missing[0]!r}); expected '
                         'keys r, lora_alpha, target_modules')
    rank, alpha, targets = raw['r'], raw['lora_alpha'], raw['target_modules']
    if not (isinstance(rank, int) and not isinstance(rank, bool) and rank >= 1):
        raise ValueError(f"LoRA adapter {config_file}: 'r' must be a positive integer, got {rank!r}")
    if not (_is_number(alpha) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"LoRA adapter {config_file}: 'lora_alpha' must be a finite number > 0, got {alpha!r}")
    names_ok = isinstance(targets, list) and targets and all(isinstance(t, str) and t for t in targets)
    if not (names_ok or (isinstance(targets, str) and targets)):  # a string is a regex over module names (peft)
        raise ValueError(f"LoRA adapter {config_file}: 'target_modules' must be a list of module names or a regex, "
                         f'got {targets!r}')
    for key in _UNSUPPORTED_CONFIG_KEYS:
        if raw.get(key):
            raise ValueError(f'LoRA adapter {config_file}: {key!r} is set ({raw[key]!r}), which merge_lora_adapter '
                             "does not apply (one 'r' and one 'lora_alpha' for every module)")
    return LoraConfig(r=rank, lora_alpha=float(alpha), target_modules=targets if isinstance(targets, str) else
                      list(targets), init_lora_weights='gaussian')


def _our_metadata(folder: str) -> tuple:
    """(trained_modules, fingerprint, file holding them) from ``rass_adapter.json``; none for a plain peft folder."""
    metadata_file = osp.join(folder, RASS_METADATA)
    if not osp.isfile(metadata_file):
        return [], None, metadata_file
    data = _read_json(metadata_file)
    version = data.get('format_version')
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f'LoRA adapter {metadata_file}: format_version {version!r} is not one this rass_mmseg '
                         f'reads (<= {FORMAT_VERSION}); update rass_mmseg')
    trained, fingerprint = data.get('trained_modules') or [], data.get('base_fingerprint')
    if not (isinstance(trained, list) and all(_is_module_name(m) for m in trained)):
        raise ValueError(f'LoRA adapter {metadata_file}: trained modules must be a list of module names, got '
                         f'{trained!r}')
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise ValueError(f'LoRA adapter {metadata_file}: the base fingerprint must be a string, got {fingerprint!r}')
    return trained, fingerprint, metadata_file


def _strip_peft_prefix(weights_file: str, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Keys as ``get_peft_model_state_dict`` gives them for the bare UNet; a key without peft's prefix is refused."""
    for key in state:
        if not key.startswith(PEFT_KEY_PREFIX):
            raise ValueError(f'LoRA adapter {weights_file}: key {key!r} lacks the {PEFT_KEY_PREFIX!r} prefix of a '
                             'peft adapter file (expected a folder written by save_lora_adapter or '
                             'PeftModel.save_pretrained)')
    return {key[len(PEFT_KEY_PREFIX):]: value for key, value in state.items()}


def _check_tensor(file: str, key: str, value: torch.Tensor) -> None:
    """One-line error for a weight that is not floating point or holds NaN or inf."""
    if not value.is_floating_point():
        raise ValueError(f'LoRA adapter {file}: {key} must be a floating-point tensor, got {value.dtype}')
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f'LoRA adapter {file}: {key} holds NaN or infinite values')


def _check_lora(weights_file: str, config_file: str, rank: int, lora: Dict[str, torch.Tensor]) -> None:
    """Every LoRA weight finite and of rank ``r``: A is ``(r, in, ...)``, B is ``(out, r, ...)``."""
    for key, value in lora.items():
        _check_tensor(weights_file, key, value)
        if not key.endswith(('lora_A.weight', 'lora_B.weight')):
            continue  # anything else is refused by the merge as a key this UNet does not have
        if value.dim() < 2:
            raise ValueError(f'LoRA adapter {weights_file}: {key} has shape {tuple(value.shape)}, not a LoRA '
                             'weight (2 or more dimensions)')
        file_rank = value.shape[0] if key.endswith('lora_A.weight') else value.shape[1]
        if file_rank != rank:
            raise ValueError(f"LoRA adapter {config_file}: 'r' is {rank} but {weights_file} holds rank-{file_rank} "
                             f'weights ({key} has shape {tuple(value.shape)}): a wrong rank in the config, or the '
                             'config of another adapter')


def _check_trained(trained_file: str, metadata_file: str, modules: List[str],
                   trained: Dict[str, torch.Tensor]) -> None:
    """The weights of exactly the listed modules, all finite."""
    for key, value in trained.items():
        if not any(key.startswith(module + '.') for module in modules):
            raise ValueError(f'LoRA adapter {trained_file}: {key} is not a weight of the trained modules {modules} '
                             f'that {metadata_file} lists (only their weights may be replaced)')
        _check_tensor(trained_file, key, value)
    for module in modules:
        if not any(key.startswith(module + '.') for key in trained):
            raise ValueError(f'LoRA adapter {trained_file}: no weights of trained module {module!r}, which '
                             f'{metadata_file} lists')


def read_adapter_folder(path: str) -> AdapterFiles:
    """Read the adapter at ``path``: a folder of this layout or a plain peft folder, or its
    ``adapter_model.safetensors``.

    Only safetensors and JSON files are read, so reading an adapter cannot run code. The folder is checked in
    itself (see the module docstring); whether it fits a model is checked by ``merge_lora_adapter``.

    Raises:
        FileNotFoundError: peft's files, or the trained-module weights the metadata lists, are missing.
        ValueError: A file is unreadable, not of the expected kind, or holds a bad value (the message names the file
            and the key).
    """
    folder = osp.dirname(path) if path.endswith('.safetensors') else path
    weights = path if path.endswith('.safetensors') else osp.join(folder, ADAPTER_WEIGHTS)
    config_file = osp.join(folder, ADAPTER_CONFIG)
    for required in (weights, config_file):
        if not osp.isfile(required):
            raise FileNotFoundError(f'LoRA adapter {path!r}: missing {required} (expected a peft adapter folder with '
                                    f'{ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})')
    raw = _read_json(config_file)
    config = _lora_config(config_file, raw)
    trained_modules, fingerprint, metadata_file = _our_metadata(folder)
    lora = _strip_peft_prefix(weights, _load_safetensors(weights))
    _check_lora(weights, config_file, config.r, lora)
    trained = {}
    if trained_modules:
        trained_file = osp.join(folder, TRAINED_MODULES)
        if not osp.isfile(trained_file):
            raise FileNotFoundError(f'LoRA adapter {path!r}: {metadata_file} lists trained modules '
                                    f'{trained_modules} but {trained_file} is missing')
        trained = _load_safetensors(trained_file)
        _check_trained(trained_file, metadata_file, trained_modules, trained)
    return AdapterFiles(config, lora, trained, list(trained_modules), fingerprint, metadata_file)
