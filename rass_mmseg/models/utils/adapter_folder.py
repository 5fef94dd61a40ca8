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

Folders written before this layout (``adapter_model.safetensors`` with unprefixed keys,
``rass_trained_modules`` and ``rass_base_fingerprint`` inside ``adapter_config.json``) are still read, as are
plain peft folders with neither.
"""
import copy
import json
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
#: Version of ``rass_adapter.json``; version 1 is the old layout (our keys inside ``adapter_config.json``).
FORMAT_VERSION = 2
#: Our keys inside ``adapter_config.json`` in folders of format version 1.
_OLD_TRAINED_KEY, _OLD_FINGERPRINT_KEY = 'rass_trained_modules', 'rass_base_fingerprint'


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


def _lora_config(config_file: str, raw: dict) -> LoraConfig:
    try:
        return LoraConfig(r=int(raw['r']), lora_alpha=float(raw['lora_alpha']),
                          target_modules=list(raw['target_modules']), init_lora_weights='gaussian')
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f'LoRA adapter {config_file}: not a LoRA adapter config ({error!r}); expected '
                         'keys r, lora_alpha, target_modules') from None


def _our_metadata(folder: str, config_file: str, raw_config: dict) -> tuple:
    """(trained_modules, fingerprint, file holding them) from ``rass_adapter.json`` or an old-layout config."""
    metadata_file = osp.join(folder, RASS_METADATA)
    if osp.isfile(metadata_file):
        data = _read_json(metadata_file)
        version = data.get('format_version')
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(f'LoRA adapter {metadata_file}: format_version {version!r} is not one this rass_mmseg '
                             f'reads (<= {FORMAT_VERSION}); update rass_mmseg')
        trained, fingerprint = data.get('trained_modules') or [], data.get('base_fingerprint')
    else:  # format version 1 (or a plain peft folder, which has neither key)
        metadata_file = config_file
        trained, fingerprint = raw_config.get(_OLD_TRAINED_KEY) or [], raw_config.get(_OLD_FINGERPRINT_KEY)
    if not (isinstance(trained, list) and all(isinstance(m, str) for m in trained)):
        raise ValueError(f'LoRA adapter {metadata_file}: trained modules must be a list of module names, got '
                         f'{trained!r}')
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise ValueError(f'LoRA adapter {metadata_file}: the base fingerprint must be a string, got {fingerprint!r}')
    return trained, fingerprint, metadata_file


def _strip_peft_prefix(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Keys as ``get_peft_model_state_dict`` gives them for the bare UNet; old-layout keys have no prefix."""
    if state and all(key.startswith(PEFT_KEY_PREFIX) for key in state):
        return {key[len(PEFT_KEY_PREFIX):]: value for key, value in state.items()}
    return state


def read_adapter_folder(path: str) -> AdapterFiles:
    """Read the adapter at ``path``: a folder of either layout, or its ``adapter_model.safetensors``.

    Only safetensors and JSON files are read, so reading an adapter cannot run code.

    Raises:
        FileNotFoundError: peft's files, or the trained-module weights the metadata lists, are missing.
        ValueError: A file is unreadable or not of the expected kind (the message names it).
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
    trained_modules, fingerprint, metadata_file = _our_metadata(folder, config_file, raw)
    lora = _strip_peft_prefix(_load_safetensors(weights))
    trained = {}
    if trained_modules:
        trained_file = osp.join(folder, TRAINED_MODULES)
        if not osp.isfile(trained_file):
            raise FileNotFoundError(f'LoRA adapter {path!r}: {metadata_file} lists trained modules '
                                    f'{trained_modules} but {trained_file} is missing')
        trained = _load_safetensors(trained_file)
    return AdapterFiles(config, lora, trained, list(trained_modules), fingerprint, metadata_file)
