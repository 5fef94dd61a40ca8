"""Build the Stable Diffusion components RASS uses: VAE, UNet, CLIP text encoder and tokenizer.

Either from a local diffusers pipeline folder (``stable-diffusion-2-1-base`` with ``vae/``, ``unet/``,
``text_encoder/``, ``tokenizer/``) or from config dicts for random initialisation (tests, the tiny
embedded default, and weight-free builds of the full-size model). Nothing is ever downloaded.
"""
import json
import os.path as osp
from typing import Dict, Optional, Tuple

from diffusers import AutoencoderKL, UNet2DConditionModel
from tokenizers.pre_tokenizers import ByteLevel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

__all__ = ['build_sd_components', 'build_byte_level_clip_tokenizer', 'load_sd_vae', 'without_weights',
           'PIPELINE_SUBFOLDERS']

#: Subfolders of a diffusers pipeline folder that RASS reads, and the files of which one must exist in each.
PIPELINE_SUBFOLDERS = {
    'vae': ('config.json', ),
    'unet': ('config.json', ),
    'text_encoder': ('config.json', ),
    'tokenizer': ('vocab.json', 'tokenizer.json'),
}


def build_byte_level_clip_tokenizer(model_max_length: int = 77) -> CLIPTokenizer:
    """Create a CLIP tokenizer offline, with one token per byte (no learned merges).

    Its vocabulary is CLIP's byte alphabet, each symbol also with CLIP's end-of-word suffix, plus the
    start and end tokens: 514 ids. It tokenizes any text exactly like CLIP's byte-level BPE with no
    merges, so prompts are long (one token per character), which exercises long-prompt handling.

    Args:
        model_max_length: Context length of the matching text encoder, including start/end tokens.
    """
    alphabet = sorted(ByteLevel.alphabet())
    vocab: Dict[str, int] = {}
    for symbol in alphabet + [s + '</w>' for s in alphabet] + ['<|startoftext|>', '<|endoftext|>']:
        vocab[symbol] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def _check_pipeline_folder(path: str) -> None:
    if not osp.isdir(path):
        raise FileNotFoundError(f'Stable Diffusion backbone pretrained={path!r}: no such folder; expected a local '
                                'diffusers Stable Diffusion folder (e.g. stable-diffusion-2-1-base)')
    for sub, candidates in PIPELINE_SUBFOLDERS.items():
        if not any(osp.isfile(osp.join(path, sub, name)) for name in candidates):
            raise FileNotFoundError(f'Stable Diffusion backbone pretrained={path!r} is incomplete: missing '
                                    f'{" or ".join(osp.join(sub, name) for name in candidates)} (expected a '
                                    f'diffusers pipeline folder with subfolders {", ".join(PIPELINE_SUBFOLDERS)})')


def load_sd_vae(path: str) -> AutoencoderKL:
    """The ``AutoencoderKL`` of a local diffusers Stable Diffusion folder (``path/vae``)."""
    if not osp.isfile(osp.join(path, 'vae', 'config.json')):
        raise FileNotFoundError(f'pretrained={path!r}: missing {osp.join(path, "vae", "config.json")} (expected a '
                                'local diffusers Stable Diffusion folder)')
    return AutoencoderKL.from_pretrained(path, subfolder='vae', local_files_only=True, use_safetensors=True)


def _load_from_folder(path: str) -> Tuple[AutoencoderKL, UNet2DConditionModel, CLIPTextModel, CLIPTokenizer]:
    _check_pipeline_folder(path)
    common = dict(local_files_only=True, use_safetensors=True)
    vae = load_sd_vae(path)
    unet = UNet2DConditionModel.from_pretrained(path, subfolder='unet', **common)
    text_encoder = CLIPTextModel.from_pretrained(path, subfolder='text_encoder', **common)
    tokenizer = CLIPTokenizer.from_pretrained(path, subfolder='tokenizer', local_files_only=True)
    with open(osp.join(path, 'text_encoder', 'config.json')) as f:
        tokenizer.model_max_length = json.load(f).get('max_position_embeddings', tokenizer.model_max_length)
    return vae, unet, text_encoder, tokenizer


def build_sd_components(
    pretrained: Optional[str] = None,
    vae: Optional[dict] = None,
    unet: Optional[dict] = None,
    text_encoder: Optional[dict] = None,
    tokenizer: Optional[dict] = None,
) -> Tuple[AutoencoderKL, UNet2DConditionModel, CLIPTextModel, CLIPTokenizer]:
    """Build (vae, unet, text_encoder, tokenizer).

    Args:
        pretrained: Local diffusers pipeline folder. When given, the four component dicts must be None.
        vae: Keyword arguments of ``diffusers.AutoencoderKL`` (random initialisation).
        unet: Keyword arguments of ``diffusers.UNet2DConditionModel`` (random initialisation).
        text_encoder: Keyword arguments of ``transformers.CLIPTextConfig`` (random initialisation).
        tokenizer: Keyword arguments of :func:`build_byte_level_clip_tokenizer`; defaults to a
            context length equal to the text encoder's ``max_position_embeddings``.
    """
    dicts = dict(vae=vae, unet=unet, text_encoder=text_encoder)
    if pretrained is not None:
        given = [k for k, v in dicts.items() if v is not None] + (['tokenizer'] if tokenizer else [])
        if given:
            raise ValueError(f'Stable Diffusion backbone: give either pretrained (a diffusers folder) or the component '
                             f'dicts, not both; got pretrained={pretrained!r} and {", ".join(given)}')
        return _load_from_folder(pretrained)
    missing = [k for k, v in dicts.items() if v is None]
    if missing:
        raise ValueError(f'Stable Diffusion backbone: without pretrained, the config dicts {", ".join(missing)} are '
                         'required (keyword arguments of the diffusers / transformers classes)')
    text_config = CLIPTextConfig(**text_encoder)
    tokenizer_kwargs = dict(model_max_length=text_config.max_position_embeddings)
    tokenizer_kwargs.update(tokenizer or {})
    return (AutoencoderKL(**vae), UNet2DConditionModel(**unet), CLIPTextModel(text_config),
            build_byte_level_clip_tokenizer(**tokenizer_kwargs))


def without_weights(model: dict, vae: dict, unet: dict, text_encoder: dict) -> None:
    """Point a Stable Diffusion based model config at architecture dicts instead of a weights folder, in place.

    The backbone gets ``vae``/``unet``/``text_encoder`` in place of ``pretrained``, an SCR head the ``vae`` dict,
    and an LPIPS loss no weights file: the cost and shapes of the paper-size model on a machine without weights.

    Args:
        model: A model config (``cfg.model``) whose ``backbone`` has ``pretrained``.
        vae: ``AutoencoderKL`` keyword arguments (e.g. a config's ``sd21_base_vae``).
        unet: ``UNet2DConditionModel`` keyword arguments.
        text_encoder: ``CLIPTextConfig`` keyword arguments.
    """
    backbone = model['backbone']
    backbone['pretrained'] = None
    backbone['vae'], backbone['unet'], backbone['text_encoder'] = vae, unet, text_encoder
    head = model.get('decode_head')
    if head is not None and head.get('pretrained'):
        head['pretrained'], head['vae'] = None, vae
    if head is not None and head.get('lpips_weights'):
        head['lpips_weights'] = None
