"""Convert the public SCR checkpoint (``preset/model/scr.pkl`` of github.com/Ka1Guan/RASS) to an adapter folder.

The layout, read from ``restoration_adaptation/ras.py`` (``Generator_with_pretrain.load_ckpt_from_state_dict``), which
follows OSEDiff's checkpoints: a dict with

- ``rank_unet``: the LoRA rank;
- ``unet_lora_encoder_modules``, ``unet_lora_decoder_modules``, ``unet_lora_others_modules``: the UNet module names of
  the three adapters ``default_encoder``, ``default_decoder``, ``default_others`` (peft ``LoraConfig`` with that rank
  and peft's default ``lora_alpha``, 8);
- ``state_dict_unet``: the UNet tensors whose names hold ``lora`` or ``conv_in``: ``<module>.lora_A.<adapter>.weight``,
  ``<module>.lora_B.<adapter>.weight`` and ``conv_in`` (trained in full; ``conv_in.base_layer.*`` when ``conv_in``
  carries LoRA).

RASS loads these three adapters and merges them into the UNet (``merge_and_unload``); OSEDiff's VAE entries
(``rank_vae``, ``vae_lora_encoder_modules``, ``state_dict_vae``) are not read by RASS and are left out here too.
The three module sets are disjoint and share rank and alpha, so they form one adapter: the folder written by
:func:`write_scr_adapter` holds it in the layout of :mod:`rass_mmseg.models.adapters.adapter_folder` (peft, diffusers
and ``merge_adapters`` load it) with ``conv_in`` as a module trained beside the LoRA.
"""
import re
from typing import Dict, List, NamedTuple, Optional

from peft import LoraConfig
from torch import Tensor

from ..models.adapters.adapter_folder import write_adapter_folder

__all__ = ['ScrAdapter', 'SCR_ADAPTERS', 'SCR_LORA_ALPHA', 'convert_scr_checkpoint', 'is_scr_checkpoint',
           'write_scr_adapter']

#: Module-list key of each adapter in the checkpoint.
SCR_ADAPTERS = {'default_encoder': 'unet_lora_encoder_modules', 'default_decoder': 'unet_lora_decoder_modules',
                'default_others': 'unet_lora_others_modules'}
#: ``LoraConfig(r=rank, ...)`` without ``lora_alpha`` in the public code: peft's default.
SCR_LORA_ALPHA = 8
_REQUIRED = ('rank_unet', 'state_dict_unet', *SCR_ADAPTERS.values())
_IGNORED = ('rank_vae', 'vae_lora_encoder_modules', 'state_dict_vae')  # OSEDiff's VAE LoRA, unused by RASS
_LORA = re.compile(r'^(.+)\.(lora_A|lora_B)\.([^.]+)\.weight$')
_CONV_IN = re.compile(r'^conv_in\.(?:base_layer\.)?(weight|bias)$')


class ScrAdapter(NamedTuple):
    """The SCR adapter as one LoRA: its config, peft state-dict weights (no adapter name), ``conv_in``'s weights."""
    config: LoraConfig
    lora: Dict[str, Tensor]
    trained: Dict[str, Tensor]


def is_scr_checkpoint(checkpoint) -> bool:
    """Whether ``checkpoint`` looks like the public SCR checkpoint (has ``state_dict_unet``)."""
    return isinstance(checkpoint, dict) and 'state_dict_unet' in checkpoint


def convert_scr_checkpoint(checkpoint: dict, source: str = 'SCR checkpoint') -> ScrAdapter:
    """Turn the public SCR checkpoint into one adapter.

    Args:
        checkpoint: The loaded ``scr.pkl`` dict.
        source: Its name, for errors.

    Raises:
        ValueError: Missing or unknown entries, a LoRA tensor of a module not in its adapter's list, a listed module
            without its LoRA pair, or no ``conv_in`` (one line naming them).
    """
    missing = [key for key in _REQUIRED if key not in checkpoint]
    unknown = sorted(set(checkpoint) - set(_REQUIRED) - set(_IGNORED))
    if missing or unknown:
        raise ValueError(f'{source}: not the public SCR checkpoint layout (missing entries {missing}, unknown entries '
                         f'{unknown}); expected {list(_REQUIRED)}')
    rank = checkpoint['rank_unet']
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f'{source}: rank_unet must be a positive int, got {rank!r}')
    modules = {adapter: list(checkpoint[key]) for adapter, key in SCR_ADAPTERS.items()}
    owner = {}
    for adapter, names in modules.items():
        for name in names:
            if name in owner:
                raise ValueError(f'{source}: module {name!r} is in both {owner[name]!r} and {adapter!r}')
            owner[name] = adapter
    lora: Dict[str, Tensor] = {}
    trained: Dict[str, Tensor] = {}
    unknown = []
    for key, value in checkpoint['state_dict_unet'].items():
        match = _LORA.match(key)
        if match:
            module, kind, adapter = match.groups()
            if owner.get(module) != adapter:
                raise ValueError(f'{source}: {key} is LoRA of adapter {adapter!r}, but '
                                 f'{SCR_ADAPTERS.get(adapter, "no list")} does not list module {module!r}')
            lora[f'{module}.{kind}.weight'] = value
            continue
        match = _CONV_IN.match(key)
        if match and f'conv_in.{match[1]}' not in trained:
            trained[f'conv_in.{match[1]}'] = value
            continue
        unknown.append(key)
    if unknown:
        raise ValueError(f'{source}: {len(unknown)} state_dict_unet tensors of unknown layout, e.g. {unknown[:3]}')
    incomplete = [m for m in owner if f'{m}.lora_A.weight' not in lora or f'{m}.lora_B.weight' not in lora]
    if incomplete:
        raise ValueError(f'{source}: {len(incomplete)} listed modules lack lora_A or lora_B weights, e.g. '
                         f'{incomplete[:3]}')
    if sorted(trained) != ['conv_in.bias', 'conv_in.weight']:
        raise ValueError(f'{source}: state_dict_unet must hold conv_in weight and bias (trained with SCR), got '
                         f'{sorted(trained)}')
    ranks = {value.shape[0] for key, value in lora.items() if '.lora_A.' in key}
    if ranks != {rank}:
        raise ValueError(f'{source}: LoRA tensors of ranks {sorted(ranks)} but rank_unet={rank}')
    config = LoraConfig(r=rank, lora_alpha=SCR_LORA_ALPHA, target_modules=sorted(owner), init_lora_weights='gaussian')
    return ScrAdapter(config, lora, trained)


def write_scr_adapter(adapter: ScrAdapter, out_dir: str, fingerprint: Optional[str] = None) -> List[str]:
    """Write ``adapter`` as an adapter folder (``merge_adapters``, peft and diffusers load it).

    Args:
        adapter: From :func:`convert_scr_checkpoint`.
        out_dir: The folder to write.
        fingerprint: ``base_weights_fingerprint(unet, ['conv_in'])`` of the Stable Diffusion UNet SCR was trained on,
            checked when the adapter is merged; None records none (the merge then cannot tell other base weights).

    Returns:
        The target modules written.
    """
    write_adapter_folder(out_dir, adapter.config, adapter.lora, adapter.trained, ['conv_in'], fingerprint)
    return list(adapter.config.target_modules)
