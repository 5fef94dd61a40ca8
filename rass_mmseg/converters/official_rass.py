"""Key mapping from the public RASS checkpoint (a detectron2 ``MaskFormer_rass`` state dict) to our RASS model.

The layout, read from the public code (github.com/Ka1Guan/RASS):

- ``rass/rass.py`` (``MaskFormer_rass``): modules ``backbone``, ``sem_seg_head``, ``criterion``.
- ``rass/modeling/backbone/rass_backbone.py`` (``RASS``): ``backbone.feature_extractor`` (the projection, below)
  and ``backbone.jpeger`` (basicsr's ``DiffJPEG``, whose fixed JPEG tables are parameters).
- ``rass/modeling/backbone/feature_projection.py`` (``FeatureProjection``): ``feature_projections.<i>`` =
  ``nn.Sequential(*ResNet.make_stage(BottleneckBlock, 1, ..., norm='GN'))``, so detectron2 ``BottleneckBlock``
  ``0.{conv1,conv2,conv3,shortcut}`` (``Conv2d`` without bias, its GroupNorm as ``.norm``; no ``shortcut`` when
  in == out channels); ``sd`` (the SD generator, below); ``ram`` and ``dape`` (the RAM / DAPE taggers).
- ``restoration_adaptation/ras.py`` (``Generator_with_pretrain``): ``sd.vae``, ``sd.text_encoder``, ``sd.unet``. The
  SCR LoRA is merged into the UNet (``merge_and_unload``) and three Seg LoRA adapters are added by diffusers/peft,
  ``default_encoder_s2`` (modules whose parameter names hold ``down_blocks`` or ``conv_in``),
  ``default_decoder_s2`` (``up_blocks``) and ``default_others_s2`` (the rest), rank ``lora_rank_unet`` (4), peft's
  default ``lora_alpha`` (8), on the same module-name patterns as ours; ``conv_in`` trains in full
  (``conv_in.base_layer``). Keys: ``<module>.lora_A.<adapter>.weight``, ``<module>.lora_B.<adapter>.weight``.
- ``rass/modeling/pixel_decoder/msdeformattn.py`` (``MSDeformAttnPixelDecoder``) and
  ``rass/modeling/transformer_decoder/mask2former_transformer_decoder.py`` (``MultiScaleMaskedTransformerDecoder``)
  under ``sem_seg_head.pixel_decoder`` and ``sem_seg_head.predictor``; ``rass/modeling/criterion.py`` registers the
  buffer ``criterion.empty_weight``.

Our model: ``backbone`` (:class:`~rass_mmseg.models.backbones.RASSBackbone`, one peft adapter ``seg`` on the union
of the three module sets, which all share rank and alpha, so the sum is the same LoRA), ``neck``
(:class:`~rass_mmseg.models.necks.FeatureProjection`, ``blocks.<i>.{reduce,conv,expand,shortcut}`` mmcv
``ConvModule``s with ``.conv`` and ``.gn``) and ``decode_head`` (mmseg's ``Mask2FormerHead`` on mmdet's
``MSDeformAttnPixelDecoder``). Both heads keep ``nn.MultiheadAttention``'s packed ``in_proj_weight`` and
multi-scale deformable attention's ``sampling_offsets`` / ``attention_weights`` / ``value_proj`` / ``output_proj``
with the same (heads, levels, points, xy) layout and level order (lowest resolution first), so every tensor is
copied unchanged; only names differ.

Dropped: the frozen Stable Diffusion weights (the VAE and text encoder are SD 2.1-base's, from ``pretrained``; the
UNet, SD 2.1-base with the SCR LoRA merged, is either written as a diffusers UNet by
:mod:`rass_mmseg.converters.official_unet` or rebuilt from SD 2.1-base + ``merge_adapters``), the taggers (our
prompt comes from a prompt source), the JPEG tables and the loss buffer (a config setting). Any other key is an
error: nothing is guessed.
"""
import re
from collections import OrderedDict
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from torch import Tensor

__all__ = ['ConversionReport', 'DROPPED_PREFIXES', 'LORA_GROUPS', 'convert_rass_state_dict', 'lora_group_of',
           'check_against_expected']

_SD = 'backbone.feature_extractor.sd.'
#: Source prefixes that are left out on purpose, with the reason printed by the tool.
DROPPED_PREFIXES = OrderedDict([
    (_SD + 'vae.', 'frozen SD VAE (rebuilt from pretrained)'),
    (_SD + 'text_encoder.', 'frozen SD text encoder (rebuilt from pretrained)'),
    ('backbone.feature_extractor.ram.', 'RAM tagger (our prompt comes from prompt_source)'),
    ('backbone.feature_extractor.dape.', 'DAPE tagger (our prompt comes from prompt_source)'),
    ('backbone.jpeger.', 'fixed JPEG tables of the training-time degradation'),
    ('criterion.empty_weight', 'loss class weights (no-object weight 0.1 is a config setting)'),
])
_FROZEN_UNET = ('frozen SD UNet with the SCR LoRA merged (written as a UNet folder with --sd21-base, or rebuilt from '
                'SD + the SCR adapter)')
#: The public code's three Seg LoRA adapters and how it assigns a UNet module to one (``ras.py``, ``unet_lora``).
LORA_GROUPS = ('default_encoder_s2', 'default_decoder_s2', 'default_others_s2')
OUR_ADAPTER = 'seg'


class ConversionReport(NamedTuple):
    """What the conversion did: ``mapped`` source -> target keys, and ``dropped`` reason -> number of keys."""
    mapped: Dict[str, str]
    dropped: Dict[str, int]


def lora_group_of(module: str, suffix: str = '') -> str:
    """The public code's adapter for a UNet module: the first of its tests that the parameter name passes
    (``down_blocks``/``conv_in`` -> encoder, ``up_blocks``/``conv_out`` -> decoder, else others)."""
    name = module + suffix
    if 'down_blocks' in name or 'conv_in' in name:
        return 'default_encoder_s2'
    if 'up_blocks' in name or 'conv_out' in name:
        return 'default_decoder_s2'
    return 'default_others_s2'


def _rules(table: List[Tuple[str, str]]) -> List[Tuple[re.Pattern, Callable]]:
    return [(re.compile(pattern), replacement) for pattern, replacement in table]


_PROJECTION_PARTS = {'conv1': 'reduce', 'conv2': 'conv', 'conv3': 'expand', 'shortcut': 'shortcut'}
_NORM_PARAMS = r'(weight|norm\.weight|norm\.bias)'


def _projection(match: re.Match) -> str:
    block, part, param = match.groups()
    param = 'conv.weight' if param == 'weight' else param.replace('norm.', 'gn.')
    return f'neck.blocks.{block}.{_PROJECTION_PARTS[part]}.{param}'


def _fpn(kind: str) -> Callable[[re.Match], str]:
    """detectron2 ``adapter_<k>`` / ``layer_<k>`` (k from 1, res2 first) -> mmdet ``lateral_convs.<k-1>`` /
    ``output_convs.<k-1>`` (mmdet's forward applies ``lateral_convs[i]`` to input level i)."""
    def rename(match: re.Match) -> str:
        index, param = int(match.group(1)) - 1, match.group(2)
        param = {'weight': 'conv.weight', 'bias': 'conv.bias'}.get(param, param.replace('norm.', 'gn.'))
        return f'decode_head.pixel_decoder.{kind}.{index}.{param}'
    return rename


_PD = r'^sem_seg_head\.pixel_decoder\.'
_OUT_PD = 'decode_head.pixel_decoder.'
_ENC = r'transformer\.encoder\.layers\.(\d+)\.'
_WB = r'(weight|bias)$'
_HEAD_RULES = _rules([
    (r'^backbone\.feature_extractor\.feature_projections\.(\d+)\.0\.(conv1|conv2|conv3|shortcut)\.' + _NORM_PARAMS
     + '$', _projection),
    (_PD + r'input_proj\.(\d+)\.0\.' + _WB, lambda m: f'{_OUT_PD}input_convs.{m[1]}.conv.{m[2]}'),
    (_PD + r'input_proj\.(\d+)\.1\.' + _WB, lambda m: f'{_OUT_PD}input_convs.{m[1]}.gn.{m[2]}'),
    (_PD + r'transformer\.level_embed$', lambda m: f'{_OUT_PD}level_encoding.weight'),
    (_PD + _ENC + r'self_attn\.(sampling_offsets|attention_weights|value_proj|output_proj)\.' + _WB,
     lambda m: f'{_OUT_PD}encoder.layers.{m[1]}.self_attn.{m[2]}.{m[3]}'),
    (_PD + _ENC + r'norm1\.' + _WB, lambda m: f'{_OUT_PD}encoder.layers.{m[1]}.norms.0.{m[2]}'),
    (_PD + _ENC + r'norm2\.' + _WB, lambda m: f'{_OUT_PD}encoder.layers.{m[1]}.norms.1.{m[2]}'),
    (_PD + _ENC + r'linear1\.' + _WB, lambda m: f'{_OUT_PD}encoder.layers.{m[1]}.ffn.layers.0.0.{m[2]}'),
    (_PD + _ENC + r'linear2\.' + _WB, lambda m: f'{_OUT_PD}encoder.layers.{m[1]}.ffn.layers.1.{m[2]}'),
    (_PD + r'adapter_(\d+)\.(weight|bias|norm\.weight|norm\.bias)$', _fpn('lateral_convs')),
    (_PD + r'layer_(\d+)\.(weight|bias|norm\.weight|norm\.bias)$', _fpn('output_convs')),
    (_PD + r'mask_features\.' + _WB, lambda m: f'{_OUT_PD}mask_feature.{m[1]}'),
])
_PR = r'^sem_seg_head\.predictor\.'
_OUT_TD = 'decode_head.transformer_decoder.'
_ATTN = r'(in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)$'
_HEAD_RULES += _rules([
    (_PR + r'transformer_self_attention_layers\.(\d+)\.self_attn\.' + _ATTN,
     lambda m: f'{_OUT_TD}layers.{m[1]}.self_attn.attn.{m[2]}'),
    (_PR + r'transformer_self_attention_layers\.(\d+)\.norm\.' + _WB,
     lambda m: f'{_OUT_TD}layers.{m[1]}.norms.1.{m[2]}'),
    (_PR + r'transformer_cross_attention_layers\.(\d+)\.multihead_attn\.' + _ATTN,
     lambda m: f'{_OUT_TD}layers.{m[1]}.cross_attn.attn.{m[2]}'),
    (_PR + r'transformer_cross_attention_layers\.(\d+)\.norm\.' + _WB,
     lambda m: f'{_OUT_TD}layers.{m[1]}.norms.0.{m[2]}'),
    (_PR + r'transformer_ffn_layers\.(\d+)\.linear1\.' + _WB,
     lambda m: f'{_OUT_TD}layers.{m[1]}.ffn.layers.0.0.{m[2]}'),
    (_PR + r'transformer_ffn_layers\.(\d+)\.linear2\.' + _WB, lambda m: f'{_OUT_TD}layers.{m[1]}.ffn.layers.1.{m[2]}'),
    (_PR + r'transformer_ffn_layers\.(\d+)\.norm\.' + _WB, lambda m: f'{_OUT_TD}layers.{m[1]}.norms.2.{m[2]}'),
    (_PR + r'decoder_norm\.' + _WB, lambda m: f'{_OUT_TD}post_norm.{m[1]}'),
    (_PR + r'(query_feat|query_embed|level_embed)\.weight$', lambda m: f'decode_head.{m[1]}.weight'),
    (_PR + r'input_proj\.(\d+)\.' + _WB, lambda m: f'decode_head.decoder_input_projs.{m[1]}.{m[2]}'),
    (_PR + r'class_embed\.' + _WB, lambda m: f'decode_head.cls_embed.{m[1]}'),
    (_PR + r'mask_embed\.layers\.(\d+)\.' + _WB, lambda m: f'decode_head.mask_embed.{2 * int(m[1])}.{m[2]}'),
])
_UNET = 'backbone.feature_extractor.sd.unet.'
_LORA = re.compile(r'^(.+)\.(lora_A|lora_B)\.([^.]+)\.weight$')
_CONV_IN = re.compile(r'^conv_in\.(?:base_layer\.)?(weight|bias)$')


def _unet_key(key: str) -> Optional[str]:
    """Target of a key under ``sd.unet.``: LoRA and ``conv_in`` are mapped, other base weights are frozen (None).

    Raises:
        ValueError: A LoRA key of another adapter, or of a module the public code puts in another adapter.
    """
    name = key[len(_UNET):]
    match = _LORA.match(name)
    if match:
        module, kind, adapter = match.groups()
        if adapter not in LORA_GROUPS:
            raise ValueError(f'official RASS checkpoint: {key} belongs to LoRA adapter {adapter!r}; the public code '
                             f'trains {", ".join(LORA_GROUPS)} (an unmerged SCR adapter or another code version?)')
        if lora_group_of(module, '.weight') != adapter:
            raise ValueError(f'official RASS checkpoint: {key} is in adapter {adapter!r}, the public code puts module '
                             f'{module!r} in {lora_group_of(module, ".weight")!r}; unknown checkpoint layout')
        return f'backbone.unet.{module}.{kind}.{OUR_ADAPTER}.weight'
    if 'lora_' in name:
        raise ValueError(f'official RASS checkpoint: unknown LoRA tensor {key} (expected <module>.lora_A/lora_B.'
                         '<adapter>.weight)')
    match = _CONV_IN.match(name)
    if match:
        return f'backbone.unet.conv_in.base_layer.{match[1]}'
    return None


def convert_rass_state_dict(state_dict: Dict[str, Tensor]) -> Tuple['OrderedDict[str, Tensor]', ConversionReport]:
    """Rename the trained tensors of a public RASS state dict to our model's keys; leave the frozen ones out.

    Args:
        state_dict: The detectron2 model state dict (``checkpoint['model']``).

    Returns:
        (converted state dict, report). Tensors are the source's own objects (no copy, any device).

    Raises:
        ValueError: Unknown keys (one line naming the first ones), two keys mapped to one target, or LoRA tensors of
            mixed ranks.
    """
    converted: 'OrderedDict[str, Tensor]' = OrderedDict()
    mapped: Dict[str, str] = {}
    dropped: Dict[str, int] = {}
    unknown: List[str] = []
    for key, value in state_dict.items():
        target = None
        if key.startswith(_UNET):
            target = _unet_key(key)
            if target is None:
                dropped[_FROZEN_UNET] = dropped.get(_FROZEN_UNET, 0) + 1
                continue
        else:
            reason = next((why for prefix, why in DROPPED_PREFIXES.items() if key.startswith(prefix)), None)
            if reason is not None:
                dropped[reason] = dropped.get(reason, 0) + 1
                continue
            for pattern, rename in _HEAD_RULES:
                match = pattern.match(key)
                if match:
                    target = rename(match)
                    break
        if target is None:
            unknown.append(key)
            continue
        if target in converted:
            source = next(k for k, t in mapped.items() if t == target)
            raise ValueError(f'official RASS checkpoint: {source} and {key} both map to {target}')
        converted[target] = value
        mapped[key] = target
    if unknown:
        raise ValueError(f'official RASS checkpoint: {len(unknown)} keys of unknown layout, e.g. {unknown[:3]}; '
                         'expected the MaskFormer_rass state dict of github.com/Ka1Guan/RASS')
    ranks = {value.shape[0] for key, value in converted.items() if '.lora_A.' in key}
    if len(ranks) > 1:
        raise ValueError(f'official RASS checkpoint: Seg LoRA tensors of ranks {sorted(ranks)}; one rank expected')
    return converted, ConversionReport(mapped, dropped)


def check_against_expected(converted: Dict[str, Tensor], expected: Dict[str, Tuple[int, ...]], what: str) -> None:
    """Raise a one-line ``ValueError`` unless ``converted`` holds exactly the keys of ``expected`` with its shapes.

    Args:
        converted: The converted state dict.
        expected: Key -> shape of every tensor the target model trains.
        what: What ``expected`` describes (named in the error, e.g. the config file).
    """
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    if missing or unexpected:
        raise ValueError(f'converted checkpoint does not fit {what}: {len(missing)} missing keys (e.g. '
                         f'{missing[:3]}) and {len(unexpected)} unexpected keys (e.g. {unexpected[:3]})')
    wrong = [(k, tuple(v.shape), tuple(expected[k])) for k, v in converted.items()
             if tuple(v.shape) != tuple(expected[k])]
    if wrong:
        key, got, want = wrong[0]
        raise ValueError(f'converted checkpoint does not fit {what}: {len(wrong)} tensors of other shapes, e.g. {key} '
                         f'{got} where the model has {want}')
