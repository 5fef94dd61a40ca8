"""Build a Stable Diffusion based model from a config's architecture dicts instead of its weights folder.

One helper for every place that needs a paper-size model without the weights (tools/analysis_tools/benchmark.py's
``--without-weights``, :mod:`rass_mmseg.converters.target_model`): the config's ``sd21_base_vae``, ``sd21_base_unet``
and ``sd21_base_text_encoder`` dicts replace ``model.backbone.pretrained`` (and an SCR head's VAE folder and LPIPS
weights file), randomly initialised: same shapes and cost, meaningless outputs.
"""
import copy

from mmengine.config import Config, ConfigDict

from ..models.utils.sd_components import without_weights

__all__ = ['SD21_ARCHITECTURE_KEYS', 'model_without_weights']

#: Component -> the config key of its architecture dict.
SD21_ARCHITECTURE_KEYS = dict(vae='sd21_base_vae', unet='sd21_base_unet', text_encoder='sd21_base_text_encoder')


def model_without_weights(cfg: Config, config_file: str) -> ConfigDict:
    """A copy of ``cfg.model`` that builds Stable Diffusion from the config's ``sd21_base_*`` architecture dicts.

    Args:
        cfg: The loaded config (left unchanged).
        config_file: Its path, for the error message.

    Returns:
        The model config, ``model.backbone.pretrained`` replaced by the architecture dicts.

    Raises:
        ValueError: The config has no ``model.backbone.pretrained`` or lacks one of the architecture dicts.
    """
    keys = SD21_ARCHITECTURE_KEYS.values()
    missing = [key for key in keys if key not in cfg]
    backbone = cfg.model.get('backbone')
    if missing or backbone is None or 'pretrained' not in backbone:
        raise ValueError(f'{config_file} needs model.backbone.pretrained and the keys {", ".join(keys)} to build '
                         f'without weights; missing: {", ".join(missing) or "model.backbone.pretrained"}')
    model = copy.deepcopy(cfg.model)
    without_weights(model, *(cfg[key] for key in keys))
    return model
