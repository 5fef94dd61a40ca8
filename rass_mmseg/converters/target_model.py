"""What a converted checkpoint must fit: the trained tensors of a config's model, and its frozen-weights fingerprint.

:func:`trainable_state_shapes` builds the model on the meta device (no memory, no weights: a config whose backbone
reads ``pretrained`` is built from the config's architecture dicts, e.g. ``sd21_base_vae``, by
:func:`rass_mmseg.utils.model_without_weights`) and lists every key a checkpoint of it holds except the frozen Stable
Diffusion weights. :func:`frozen_weights_fingerprint` builds the backbone from real weights and returns the
``frozen_weights_fingerprint`` tensor its checkpoints carry (:mod:`rass_mmseg.models.utils.frozen_weights`), so a
converted checkpoint loads strictly and is refused on other base weights (e.g. without the SCR adapter merged).
"""
import copy
from typing import Dict, Sequence, Tuple

import torch
from mmengine.config import Config
from mmseg.registry import MODELS
from torch import Tensor

from ..models.adapters.lora_adapters import base_weights_fingerprint
from ..models.utils.frozen_weights import FINGERPRINT_KEY
from ..utils.without_weights import model_without_weights

__all__ = ['trainable_state_shapes', 'frozen_weights_fingerprint', 'unet_base_fingerprint']

_COMPONENTS = ('vae', 'unet', 'text_encoder')


def trainable_state_shapes(cfg: Config, config_file: str) -> Dict[str, Tuple[int, ...]]:
    """Key -> shape of every tensor in a checkpoint of ``cfg.model`` except the backbone's frozen weights.

    Args:
        cfg: A model config (mmseg scope, ``custom_imports`` already imported).
        config_file: The config's file, for errors.
    """
    model_cfg = (model_without_weights(cfg, config_file)
                 if cfg.model.backbone.get('pretrained') else copy.deepcopy(cfg.model))
    with torch.device('meta'):
        model = MODELS.build(model_cfg)
    frozen = {f'backbone.{key}' for key in model.backbone.frozen_state_keys()}
    return {key: tuple(value.shape) for key, value in model.state_dict().items() if key not in frozen}


def frozen_weights_fingerprint(cfg: Config, pretrained: str, merge_adapters: Sequence[str]) -> Tensor:
    """The ``backbone.frozen_weights_fingerprint`` tensor of ``cfg.model`` built from ``pretrained`` with
    ``merge_adapters`` merged (loads the Stable Diffusion weights: minutes and several GB at paper size)."""
    backbone_cfg = copy.deepcopy(cfg.model.backbone)
    for key in _COMPONENTS + ('tokenizer', ):
        backbone_cfg.pop(key, None)
    backbone_cfg.update(pretrained=pretrained, merge_adapters=list(merge_adapters), save_frozen_weights=False)
    backbone = MODELS.build(backbone_cfg)
    return backbone.state_dict()[FINGERPRINT_KEY].clone()


def unet_base_fingerprint(pretrained: str) -> str:
    """``base_weights_fingerprint`` of the UNet of a local diffusers folder, ``conv_in`` left out (SCR trains it)."""
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel.from_pretrained(pretrained, subfolder='unet', local_files_only=True,
                                                use_safetensors=True)
    return base_weights_fingerprint(unet, ['conv_in'])
