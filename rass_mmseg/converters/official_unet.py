"""The UNet inside the public RASS checkpoint (SD 2.1-base with the SCR LoRA merged) as a Stable Diffusion folder.

``rass.pth`` (the ``MaskFormer_rass`` state dict, see :mod:`rass_mmseg.converters.official_rass`) holds the whole
model. The public code builds its UNet from SD 2.1-base, merges the SCR LoRA into it (``merge_and_unload``,
``restoration_adaptation/ras.py``) and adds the three Seg LoRA adapters, so under
``backbone.feature_extractor.sd.unet.`` the modules that carry LoRA keep their weights as
``<module>.base_layer.<param>`` (next to ``<module>.lora_A/lora_B.<adapter>.weight``) and the others as
``<module>.<param>``. Without the LoRA tensors and the
``base_layer`` step this is exactly the UNet the Seg LoRA was trained on, the released bits themselves: no
``scr.pkl`` is needed to rebuild it. Its ``conv_in`` is the one trained in stage 2; our model loads that one from the
converted checkpoint anyway (``conv_in`` is trained, not frozen).

:func:`write_unet_folder` writes it as ``unet/`` (``diffusion_pytorch_model.safetensors`` + the ``config.json`` of
SD 2.1-base's UNet) of a new folder whose other parts (``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``,
``model_index.json``, ...) are symbolic links to the SD 2.1-base folder: a diffusers Stable Diffusion folder for
``model.backbone.pretrained`` (with ``merge_adapters=[]``) that adds one UNet (3.5 GB in float32) to the disk.
"""
import json
import os
import os.path as osp
import shutil
from collections import OrderedDict
from typing import Dict, List

import torch
from safetensors.torch import save_file
from torch import Tensor

__all__ = ['OFFICIAL_UNET_PREFIX', 'merged_unet_state_dict', 'check_unet_state', 'write_unet_folder']

#: Where the public checkpoint keeps its UNet.
OFFICIAL_UNET_PREFIX = 'backbone.feature_extractor.sd.unet.'
_UNET_WEIGHTS = 'diffusion_pytorch_model.safetensors'
#: Parts of the Stable Diffusion folder the backbone reads besides the UNet.
_REQUIRED_PARTS = (osp.join('vae', 'config.json'), osp.join('text_encoder', 'config.json'), 'tokenizer')


def merged_unet_state_dict(state_dict: Dict[str, Tensor], source: str = 'official RASS checkpoint'
                           ) -> 'OrderedDict[str, Tensor]':
    """The UNet of a public RASS state dict without its Seg LoRA: diffusers ``UNet2DConditionModel`` keys.

    Args:
        state_dict: The detectron2 model state dict (``checkpoint['model']``).
        source: Its name, for errors.

    Returns:
        Key -> tensor (the source's own objects); empty when the checkpoint holds no frozen UNet weights (a
        checkpoint stripped to what trains).

    Raises:
        ValueError: A weight present both as ``<module>.<param>`` and ``<module>.base_layer.<param>``.
    """
    unet: 'OrderedDict[str, Tensor]' = OrderedDict()
    frozen = 0
    for key, value in state_dict.items():
        if not key.startswith(OFFICIAL_UNET_PREFIX) or '.lora_' in key:
            continue
        name = key[len(OFFICIAL_UNET_PREFIX):].replace('.base_layer.', '.')
        if name in unet:
            raise ValueError(f'{source}: UNet weight {name} is stored twice (with and without base_layer)')
        unet[name] = value
        frozen += not name.startswith('conv_in.')
    return unet if frozen else OrderedDict()


def check_unet_state(unet_state: Dict[str, Tensor], unet_config: dict, what: str) -> None:
    """Raise a one-line ``ValueError`` unless ``unet_state`` has exactly the tensors of the UNet ``unet_config``
    describes (a diffusers ``unet/config.json``), with their shapes (built on the meta device: no memory)."""
    from diffusers import UNet2DConditionModel
    with torch.device('meta'):
        expected = {k: tuple(v.shape) for k, v in UNet2DConditionModel.from_config(unet_config).state_dict().items()}
    missing = sorted(set(expected) - set(unet_state))
    unexpected = sorted(set(unet_state) - set(expected))
    if missing or unexpected:
        raise ValueError(f'the UNet of the official RASS checkpoint does not fit {what}: {len(missing)} missing keys '
                         f'(e.g. {missing[:3]}) and {len(unexpected)} unexpected keys (e.g. {unexpected[:3]})')
    wrong = [(k, tuple(v.shape), expected[k]) for k, v in unet_state.items() if tuple(v.shape) != expected[k]]
    if wrong:
        key, got, want = wrong[0]
        raise ValueError(f'the UNet of the official RASS checkpoint does not fit {what}: {len(wrong)} tensors of other '
                         f'shapes, e.g. {key} {got} where that UNet has {want}')


def write_unet_folder(unet_state: Dict[str, Tensor], sd21_base: str, out_dir: str) -> List[str]:
    """Write ``unet_state`` as the UNet of a new Stable Diffusion folder whose other parts link to ``sd21_base``.

    Everything is checked before anything is written: ``sd21_base`` is a diffusers Stable Diffusion folder, the
    UNet fits its ``unet/config.json``, and ``out_dir`` does not exist.

    Args:
        unet_state: From :func:`merged_unet_state_dict`.
        sd21_base: The local SD 2.1-base diffusers folder (its VAE, text encoder and tokenizer are used).
        out_dir: The folder to create.

    Returns:
        The names linked to ``sd21_base``.

    Raises:
        FileNotFoundError: ``sd21_base`` lacks a part the backbone reads.
        FileExistsError: ``out_dir`` exists.
        ValueError: The UNet does not fit ``sd21_base``'s UNet config.
        OSError: Symbolic links cannot be created here (the partial folder is removed).
    """
    config_file = osp.join(sd21_base, 'unet', 'config.json')
    for part in (osp.join('unet', 'config.json'), ) + _REQUIRED_PARTS:
        if not osp.exists(osp.join(sd21_base, part)):
            raise FileNotFoundError(f'--sd21-base {sd21_base}: missing {part}; expected the local diffusers folder of '
                                    'stable-diffusion-2-1-base (vae/, unet/, text_encoder/, tokenizer/)')
    if osp.lexists(out_dir):
        raise FileExistsError(f'{out_dir} exists; choose a new folder for the UNet of the official checkpoint')
    with open(config_file) as f:
        config = json.load(f)
    check_unet_state(unet_state, config, config_file)
    source = osp.abspath(sd21_base)
    linked = sorted(name for name in os.listdir(source)
                    if name != 'unet' and not name.startswith('.')
                    and (osp.isdir(osp.join(source, name)) or name == 'model_index.json'))
    os.makedirs(osp.join(out_dir, 'unet'))
    try:
        for name in linked:
            os.symlink(osp.join(source, name), osp.join(out_dir, name))
        shutil.copyfile(config_file, osp.join(out_dir, 'unet', 'config.json'))
        tensors = {key: value.detach().cpu().contiguous() for key, value in unet_state.items()}
        save_file(tensors, osp.join(out_dir, 'unet', _UNET_WEIGHTS), metadata={'format': 'pt'})
    except BaseException:
        shutil.rmtree(out_dir)  # the folder made here; its links are unlinked, never followed
        raise
    return linked
