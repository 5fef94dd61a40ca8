"""Key mapping from the public RAM / DAPE taggers (inside the public ``rass.pth``) to our
:class:`~rass_mmseg.models.taggers.RAMTagger`.

The layout, read from the public code (github.com/Ka1Guan/RASS, ``restoration_adaptation/ram/models/``):

- ``ram_lora.py`` (``RAMLora``): ``visual_encoder`` (Swin), ``image_proj``, ``label_embed``, ``wordvec_proj``,
  ``tagging_head`` (a 2-layer BERT whose embeddings and self-attention are deleted), ``fc``; and, unused by tagging,
  ``tag_encoder`` (12-layer BERT, whose two lowest layers' cross-attention and feed-forward weights are tied to
  ``tagging_head``'s) and ``text_decoder`` (the captioning decoder).
- ``swin_transformer_lora.py``: Microsoft's original Swin layout (``layers.<i>.downsample`` at the END of stage i,
  persistent ``relative_position_index`` / ``attn_mask`` buffers); ``attn.qkv`` is loralib's
  ``MergedLinear(dim, 3 dim, r=8, enable_lora=[True, False, True])``: LoRA on q and v, not k.
- ``bert_lora.py``: attention ``query`` and ``key`` are loralib ``Linear(..., r=8)``.

loralib's ``lora_alpha`` defaults to 1 (the public code does not set it), so the LoRA scale is 1 / r; a module's
weight is ``W + B A / r`` (for ``MergedLinear``, ``A`` holds the enabled parts' ``r`` rows each and ``B`` their
output rows each, loralib's grouped conv1d). The checkpoint does not record whether the stored weight already holds
that product: detectron2 saves during training, when loralib keeps weights unmerged, so ``lora='merge'`` (default)
adds it. Note that the public ``--eval-only`` path builds the model (which calls ``.eval()``, marking every LoRA
layer merged) BEFORE loading the checkpoint, so loralib never adds the loaded ``B A``: that run tags with the stored
weights alone, which ``lora='drop'`` reproduces. RAM's ``B`` is zero (never trained), so only DAPE differs.
``tag_encoder``'s lowest layers share their weight tensors with ``tagging_head`` (``tie_encoder_decoder_weights``)
but keep their own LoRA, and loralib's ``.eval()`` merges each module's LoRA into the shared tensor, so in eval mode
the tagging ``query``/``key`` weights are ``W + B A / r`` of both modules: ``'merge'`` adds both (zero when
``tag_encoder``'s ``B`` is, i.e. never trained).

Our layout: ``swin.*`` (timm's ``SwinTransformer``, remapped by timm's own ``checkpoint_filter_fn``),
``image_proj.*``, ``head.label_embed``, ``head.wordvec_proj.*``, ``head.layers.<i>.*`` (the ``tagging_head``
layer's own names), ``head.fc.*``. Every key under the prefix is used, merged or dropped for a stated reason;
anything else is an error.
"""
import math
import os.path as osp
import re
from collections import Counter, OrderedDict
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

__all__ = ['DROPPED', 'TAGGER_PREFIXES', 'convert_official_tagger', 'convert_official_tagger_with_report',
           'official_taggers', 'save_tagger']

#: Where the public RASS model keeps its taggers (``rass/modeling/backbone/feature_projection.py``).
TAGGER_PREFIXES = OrderedDict([('ram', 'backbone.feature_extractor.ram.'),
                               ('dape', 'backbone.feature_extractor.dape.')])
#: Parts of the public tagger that tagging does not use, with the reason.
DROPPED = OrderedDict([
    ('tag_encoder.', 'image-tag interaction encoder (captioning only; its tied tagging layers are read from '
                     'tagging_head)'),
    ('text_decoder.', 'image-tag-text decoder (captioning only)'),
])
_BUFFERS = 'Swin relative_position_index / attn_mask buffers (recomputed from the window size)'
_HEAD_LAYER = re.compile(r'^tagging_head\.encoder\.layer\.(\d+)\.((?:crossattention\.(?:self\.(?:query|key|value)|'
                         r'output\.(?:dense|LayerNorm))|intermediate\.dense|output\.(?:dense|LayerNorm))\.'
                         r'(?:weight|bias))$')
_TIED_LORA = re.compile(r'^tag_encoder\.(encoder\.layer\.\d+\.crossattention\.self\.(?:query|key))\.lora_([AB])$')
_PLAIN = {'image_proj.weight': 'image_proj.weight', 'image_proj.bias': 'image_proj.bias',
          'label_embed': 'head.label_embed', 'wordvec_proj.weight': 'head.wordvec_proj.weight',
          'wordvec_proj.bias': 'head.wordvec_proj.bias', 'fc.weight': 'head.fc.weight', 'fc.bias': 'head.fc.bias'}
#: loralib MergedLinear parts with LoRA in the public Swin's ``attn.qkv`` (q, k, v -> q and v).
QKV_LORA_PARTS = (0, 2)


def _lora_delta(module: str, weight: Tensor, a: Tensor, b: Tensor, what: str) -> Tensor:
    """``B A / r`` laid out like ``weight`` (float64), for loralib ``Linear`` or the qkv ``MergedLinear``."""
    rank = b.shape[1]
    a, b = a.double(), b.double()
    if module.endswith('attn.qkv'):
        parts, dim = len(QKV_LORA_PARTS), weight.shape[0] // 3
        if a.shape != (rank * parts, weight.shape[1]) or b.shape != (dim * parts, rank):
            raise ValueError(f'{what}: {module}.lora_A {tuple(a.shape)} / lora_B {tuple(b.shape)} are not the public '
                             f'q,v MergedLinear LoRA of a {tuple(weight.shape)} qkv weight')
        delta = weight.new_zeros(weight.shape, dtype=torch.float64)
        for group, part in enumerate(QKV_LORA_PARTS):
            rows = slice(part * dim, (part + 1) * dim)
            delta[rows] = b[group * dim:(group + 1) * dim] @ a[group * rank:(group + 1) * rank]
        return delta / rank
    if a.shape != (rank, weight.shape[1]) or b.shape != (weight.shape[0], rank):
        raise ValueError(f'{what}: {module}.lora_A {tuple(a.shape)} / lora_B {tuple(b.shape)} do not fit its weight '
                         f'{tuple(weight.shape)}')
    return (b @ a) / rank


def _swin_arch(swin: Dict[str, Tensor], image_size: Optional[int], what: str) -> dict:
    """timm ``SwinTransformer`` arguments read from the original-layout weights (+ ``image_size``)."""
    proj = swin.get('patch_embed.proj.weight')
    if proj is None:
        raise ValueError(f'{what}: no visual_encoder.patch_embed.proj.weight; not a RAM Swin tagger')
    depths, heads = [], []
    while f'layers.{len(depths)}.blocks.0.attn.relative_position_bias_table' in swin:
        stage = len(depths)
        depths.append(len({k.split('.')[3] for k in swin if k.startswith(f'layers.{stage}.blocks.')}))
        heads.append(swin[f'layers.{stage}.blocks.0.attn.relative_position_bias_table'].shape[1])
    if not depths:
        raise ValueError(f'{what}: no visual_encoder.layers.<i>.blocks; not a RAM Swin tagger')
    window = (math.isqrt(swin['layers.0.blocks.0.attn.relative_position_bias_table'].shape[0]) + 1) // 2
    if image_size is None:  # a shifted block's mask holds (side / window)^2 windows of the first stage
        mask = next((swin[k] for k in sorted(swin) if k.startswith('layers.0.') and k.endswith('attn_mask')), None)
        if mask is None:
            raise ValueError(f'{what}: no stored attn_mask to read the image size from; pass image_size')
        image_size = math.isqrt(mask.shape[0]) * window * proj.shape[-1]
    return dict(img_size=image_size, patch_size=proj.shape[-1], embed_dim=proj.shape[0], depths=tuple(depths),
                num_heads=tuple(heads), window_size=window, num_classes=0, global_pool='', drop_path_rate=0.0)


def _convert_swin(swin: Dict[str, Tensor], image_size: Optional[int], what: str) -> Tuple[Dict[str, Tensor], int]:
    """Original-layout Swin weights -> timm's (timm's ``checkpoint_filter_fn``), checked against a meta model."""
    from timm.models.swin_transformer import SwinTransformer, checkpoint_filter_fn
    arch = _swin_arch(swin, image_size, what)
    with torch.device('meta'):
        model = SwinTransformer(**arch)
    ours = model.state_dict()
    buffers = dict(model.named_buffers())
    for key, value in swin.items():  # timm would silently resample a table or skip a mask of another size
        expected = buffers.get(key) if key.endswith(('attn_mask', 'relative_position_index')) else None
        if key.endswith('relative_position_bias_table'):
            expected = model.get_submodule(key[:-len('.relative_position_bias_table')]).relative_position_bias_table
        if expected is not None and tuple(value.shape) != tuple(expected.shape):
            raise ValueError(f'{what}: visual_encoder.{key} {tuple(value.shape)} does not fit a Swin of image size '
                             f'{arch["img_size"]} {arch["depths"]} window {arch["window_size"]} '
                             f'({tuple(expected.shape)})')
    converted = checkpoint_filter_fn(dict(swin), model)
    missing = sorted(set(ours) - set(converted))
    unexpected = sorted(set(converted) - set(ours))
    if missing or unexpected:
        raise ValueError(f'{what}: visual_encoder does not map onto timm Swin {arch["depths"]}: missing {missing[:3]},'
                         f' unknown {unexpected[:3]}')
    wrong = [k for k, v in converted.items() if tuple(v.shape) != tuple(ours[k].shape)]
    if wrong:
        raise ValueError(f'{what}: visual_encoder.{wrong[0]} {tuple(converted[wrong[0]].shape)} does not fit timm Swin '
                         f'({tuple(ours[wrong[0]].shape)})')
    return converted, len(swin) - len(converted)


def convert_official_tagger_with_report(
        state: Dict[str, Tensor], prefix: str, lora: str = 'merge',
        image_size: Optional[int] = None) -> Tuple['OrderedDict[str, Tensor]', Dict[str, int]]:
    """:func:`convert_official_tagger`, plus what was done: reason -> number of source keys."""
    if lora not in ('merge', 'drop'):
        raise ValueError(f"lora={lora!r}; expected 'merge' (add B A / r to the weights) or 'drop'")
    what = f'official tagger {prefix!r}'
    source = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    if not source:
        raise ValueError(f'{what}: no keys under this prefix')
    report: Counter = Counter()
    weights: Dict[str, Tensor] = {}
    loras: Dict[str, Dict[str, Tensor]] = {}
    tied = {}  # tag_encoder LoRA of the modules whose weight is tagging_head's (tie_encoder_decoder_weights)
    for key, value in source.items():
        dropped = next((why for part, why in DROPPED.items() if key.startswith(part)), None)
        match = _TIED_LORA.match(key)
        if match and f'tagging_head.{match[1]}.weight' in source:
            tied.setdefault(f'tagging_head.{match[1]}', {})[match[2]] = value
            report['LoRA of tag_encoder merged into the tied tagging_head weight' if lora == 'merge' else
                   'LoRA dropped (the stored weights alone)'] += 1
        elif dropped is not None:
            report[f'dropped: {dropped}'] += 1
        elif key.endswith(('.lora_A', '.lora_B')):
            loras.setdefault(key[:-len('.lora_A')], {})[key[-1]] = value
        else:
            weights[key] = value
    for module, pair in list(loras.items()) + list(tied.items()):
        if set(pair) != {'A', 'B'} or f'{module}.weight' not in weights:
            raise ValueError(f'{what}: {module}.lora_A/lora_B/weight are not all present')
        if module not in tied or pair is not tied[module]:
            report['LoRA merged (B A / r added to the weight)' if lora == 'merge' else
                   'LoRA dropped (the stored weights alone)'] += 2
        if lora == 'merge':
            weight = weights[f'{module}.weight']
            delta = _lora_delta(module, weight, pair['A'], pair['B'], what)
            weights[f'{module}.weight'] = (weight.double() + delta).to(weight.dtype)
    swin = {key[len('visual_encoder.'):]: value for key, value in weights.items() if key.startswith('visual_encoder.')}
    converted, buffers = _convert_swin(swin, image_size, what)
    out = OrderedDict((f'swin.{key}', value) for key, value in converted.items())
    report['used: visual_encoder'] += len(converted)
    if buffers:
        report[f'dropped: {_BUFFERS}'] += buffers
    unknown = []
    for key, value in weights.items():
        if key.startswith('visual_encoder.'):
            continue
        match = _HEAD_LAYER.match(key)
        target = f'head.layers.{match[1]}.{match[2]}' if match else _PLAIN.get(key)
        if target is None:
            unknown.append(key)
            continue
        out[target] = value
        report['used: image_proj / tagging head'] += 1
    if unknown:
        raise ValueError(f'{what}: {len(unknown)} keys of unknown layout, e.g. {unknown[:3]}; expected the RAMLora '
                         'state dict of github.com/Ka1Guan/RASS')
    missing = sorted(set(_PLAIN.values()) - set(out) - {'head.wordvec_proj.weight', 'head.wordvec_proj.bias'})
    if missing or not any(key.startswith('head.layers.') for key in out):
        raise ValueError(f'{what}: incomplete tagger, missing {missing[:3] or ["tagging_head.encoder.layer.*"]}')
    return out, dict(report)


def convert_official_tagger(state: Dict[str, Tensor], prefix: str, lora: str = 'merge',
                            image_size: Optional[int] = None) -> 'OrderedDict[str, Tensor]':
    """The public RAM / DAPE weights under ``prefix`` as a :class:`~rass_mmseg.models.taggers.RAMTagger` state dict.

    Args:
        state: A state dict holding a public ``RAMLora`` under ``prefix`` (e.g. the ``model`` of ``rass.pth``).
        prefix: E.g. ``'backbone.feature_extractor.ram.'`` or ``'backbone.feature_extractor.dape.'``.
        lora: ``'merge'``: weights + B A / r (loralib's eval-mode weights); ``'drop'``: the stored weights alone
            (what the public ``--eval-only`` run computes, see the module docstring).
        image_size: The tagger's input size (RAM: 384); None reads it from the stored shifted-window masks.

    Returns:
        Our keys -> tensors (the source dtype; merged weights computed in float64, then cast back).

    Raises:
        ValueError: One line: no key under the prefix, a key of unknown layout, a LoRA pair without its weight,
            shapes that do not fit, or a part of the tagger missing.
    """
    return convert_official_tagger_with_report(state, prefix, lora, image_size)[0]


def official_taggers(state: Dict[str, Tensor], **kwargs) -> 'OrderedDict[str, OrderedDict[str, Tensor]]':
    """``{'ram': ..., 'dape': ...}``: each tagger of :data:`TAGGER_PREFIXES` that ``state`` holds, converted."""
    return OrderedDict((name, convert_official_tagger(state, prefix, **kwargs)) for name, prefix in
                       TAGGER_PREFIXES.items() if any(key.startswith(prefix) for key in state))


def save_tagger(state: Dict[str, Tensor], path: str, source: str = '') -> None:
    """Write a converted tagger as ``.safetensors`` (``path`` must not exist)."""
    from safetensors.torch import save_file
    if osp.lexists(path):
        raise FileExistsError(f'{path} exists; choose a new output path')
    folder = osp.dirname(osp.abspath(path))
    if not osp.isdir(folder):
        raise FileNotFoundError(f'{folder}: no such folder')
    save_file({key: value.contiguous() for key, value in state.items()}, path,
              metadata=dict(format='pt', layout='rass_mmseg RAMTagger', converted_from=source))
