"""Synthetic checkpoints in the layout of the public RASS release, generated from our reading of its code.

Nothing here is copied from a released file: the key names and shapes follow the module definitions of
github.com/Ka1Guan/RASS (``rass/modeling/...``, ``restoration_adaptation/ras.py``) as described in
:mod:`rass_mmseg.converters.official_rass` and :mod:`rass_mmseg.converters.official_scr`, re-derived here
independently (e.g. the LoRA module selection is the public code's parameter-name rule, not peft's matching).
Tensors are random (seeded) or, with ``device='meta'``, shapes only.
"""
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import Tensor, nn
from transformers import CLIPTextConfig, CLIPTextModel

#: The public code's LoRA name patterns (restoration_adaptation/ras.py, unet_lora).
PATTERNS = ('to_k', 'to_q', 'to_v', 'to_out.0', 'conv', 'conv1', 'conv2', 'conv_in', 'conv_shortcut', 'proj_out',
            'proj_in', 'ff.net.2', 'ff.net.0.proj')


@dataclass
class OfficialArch:
    """Sizes of the detectron2 model (MODEL.FEATURE_PROJECTION, SEM_SEG_HEAD, MASK_FORMER settings)."""
    feature_dims: Sequence[int] = (256, 512, 1280, 1280, 640, 320)
    projection_dim: int = 512
    bottleneck: int = 128  # projection_dim // 4 in the public code
    conv_dim: int = 256
    mask_dim: int = 256
    enc_layers: int = 6
    enc_heads: int = 8
    enc_points: int = 4
    enc_ffn: int = 1024  # hard-coded in MSDeformAttnPixelDecoder.from_config
    levels: int = 3
    dec_layers: int = 9  # MASK_FORMER.DEC_LAYERS - 1
    dec_ffn: int = 2048
    queries: int = 100
    classes: int = 150
    fpn_levels: int = 1  # log2(min transformer stride 8) - log2(common stride 4)
    rank: int = 4


PAPER = OfficialArch()
#: The sizes of configs/_base_/models/rass_tiny-sd_mask2former.py.
TINY = OfficialArch(feature_dims=(32, 32, 64, 64, 32, 32), projection_dim=64, bottleneck=32, conv_dim=32, mask_dim=32,
                    enc_layers=1, enc_heads=2, enc_ffn=64, dec_layers=2, dec_ffn=64, queries=10, classes=8)


@dataclass
class Maker:
    """Makes tensors: seeded normal values on the CPU in ``dtype``, or empty meta tensors."""
    device: str = 'cpu'
    seed: int = 0
    dtype: torch.dtype = torch.float32
    generator: torch.Generator = field(init=False)

    def __post_init__(self):
        self.generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, *shape: int) -> Tensor:
        if self.device == 'meta':
            return torch.empty(shape, device='meta')
        return (torch.randn(shape, generator=self.generator) * 0.2).to(self.dtype)


def lora_groups(unet: nn.Module, names: Tuple[str, str, str]) -> Dict[str, List[str]]:
    """The public code's selection: parameter names (no bias/norm) holding a pattern, grouped by where they are."""
    groups = {name: [] for name in names}
    for param_name, _ in unet.named_parameters():
        if 'bias' in param_name or 'norm' in param_name:
            continue
        for pattern in PATTERNS:
            if pattern not in param_name:
                continue
            module = param_name.replace('.weight', '')
            if 'down_blocks' in param_name or 'conv_in' in param_name:
                groups[names[0]].append(module)
            elif 'up_blocks' in param_name or 'conv_out' in param_name:
                groups[names[1]].append(module)
            else:
                groups[names[2]].append(module)
            break
    for modules in groups.values():
        if 'conv_out' in modules:
            modules.remove('conv_out')
    return groups


def lora_shapes(module: nn.Module, rank: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """peft's lora_A / lora_B weight shapes for a Linear or Conv2d."""
    if isinstance(module, nn.Linear):
        return (rank, module.in_features), (module.out_features, rank)
    if isinstance(module, nn.Conv2d):
        return (rank, module.in_channels, *module.kernel_size), (module.out_channels, rank, 1, 1)
    raise TypeError(f'no LoRA for {type(module).__name__}')


def unet_with_lora(unet: nn.Module, groups: Dict[str, List[str]], rank: int, make: Maker,
                   base: Optional[Dict[str, Tensor]] = None) -> 'OrderedDict[str, Tensor]':
    """The state dict of ``unet`` after diffusers' ``add_adapter`` of ``groups``: targets hold ``base_layer``.
    The base weights are ``base``'s (diffusers names) when given, else made by ``make``."""
    owner = {module: adapter for adapter, modules in groups.items() for module in modules}
    state = OrderedDict()
    for name, param in unet.named_parameters():
        module, _, kind = name.rpartition('.')
        value = base[name] if base is not None else make(*param.shape)
        if module in owner:
            state[f'{module}.base_layer.{kind}'] = value
            if kind == 'weight':
                shape_a, shape_b = lora_shapes(unet.get_submodule(module), rank)
                state[f'{module}.lora_A.{owner[module]}.weight'] = make(*shape_a)
                state[f'{module}.lora_B.{owner[module]}.weight'] = make(*shape_b)
        else:
            state[name] = value
    return state


def merge_scr_by_hand(unet_state: Dict[str, Tensor], scr: dict, alpha: float = 8.0) -> 'OrderedDict[str, Tensor]':
    """What ``load_ckpt_from_state_dict`` + ``merge_and_unload`` of the public code make of a UNet (diffusers names):
    ``conv_in`` replaced by the checkpoint's, then every listed module's weight plus (alpha / rank) * B A (for a
    convolution, B's 1x1 kernel applied to A's kernel)."""
    scale = alpha / scr['rank_unet']
    lora = scr['state_dict_unet']
    merged = OrderedDict((name, value.clone()) for name, value in unet_state.items())
    for param in ('weight', 'bias'):
        merged[f'conv_in.{param}'] = lora[f'conv_in.base_layer.{param}'].clone()
    for adapter, key in (('default_encoder', 'unet_lora_encoder_modules'),
                         ('default_decoder', 'unet_lora_decoder_modules'),
                         ('default_others', 'unet_lora_others_modules')):
        for module in scr[key]:
            a, b = lora[f'{module}.lora_A.{adapter}.weight'], lora[f'{module}.lora_B.{adapter}.weight']
            delta = b @ a if a.dim() == 2 else torch.einsum('or,rikl->oikl', b[:, :, 0, 0], a)
            merged[f'{module}.weight'] = merged[f'{module}.weight'] + scale * delta
    return merged


def _gn(state: dict, prefix: str, channels: int, make: Maker) -> None:
    state[prefix + 'weight'] = make(channels)
    state[prefix + 'bias'] = make(channels)


def _linear(state: dict, prefix: str, out: int, inp: int, make: Maker) -> None:
    state[prefix + 'weight'] = make(out, inp)
    state[prefix + 'bias'] = make(out)


def head_state_dict(arch: OfficialArch, make: Maker) -> 'OrderedDict[str, Tensor]':
    """``backbone.feature_extractor.feature_projections`` + ``sem_seg_head`` + ``criterion`` keys."""
    state = OrderedDict()
    proj, neck = arch.projection_dim, arch.bottleneck
    for i, channels in enumerate(arch.feature_dims):
        prefix = f'backbone.feature_extractor.feature_projections.{i}.0.'
        if channels != proj:
            state[prefix + 'shortcut.weight'] = make(proj, channels, 1, 1)
            _gn(state, prefix + 'shortcut.norm.', proj, make)
        convs = dict(conv1=(neck, channels, 1), conv2=(neck, neck, 3), conv3=(proj, neck, 1))
        for name, (out, inp, k) in convs.items():
            state[prefix + f'{name}.weight'] = make(out, inp, k, k)
            _gn(state, prefix + f'{name}.norm.', out, make)
    d, pd = arch.conv_dim, 'sem_seg_head.pixel_decoder.'
    for i in range(arch.levels):
        state[pd + f'input_proj.{i}.0.weight'] = make(d, proj, 1, 1)
        state[pd + f'input_proj.{i}.0.bias'] = make(d)
        _gn(state, pd + f'input_proj.{i}.1.', d, make)
    state[pd + 'transformer.level_embed'] = make(arch.levels, d)
    samples = arch.enc_heads * arch.levels * arch.enc_points
    for j in range(arch.enc_layers):
        prefix = pd + f'transformer.encoder.layers.{j}.'
        _linear(state, prefix + 'self_attn.sampling_offsets.', samples * 2, d, make)
        _linear(state, prefix + 'self_attn.attention_weights.', samples, d, make)
        _linear(state, prefix + 'self_attn.value_proj.', d, d, make)
        _linear(state, prefix + 'self_attn.output_proj.', d, d, make)
        _gn(state, prefix + 'norm1.', d, make)
        _linear(state, prefix + 'linear1.', arch.enc_ffn, d, make)
        _linear(state, prefix + 'linear2.', d, arch.enc_ffn, make)
        _gn(state, prefix + 'norm2.', d, make)
    state[pd + 'mask_features.weight'] = make(arch.mask_dim, d, 1, 1)
    state[pd + 'mask_features.bias'] = make(arch.mask_dim)
    for k in range(1, arch.fpn_levels + 1):
        state[pd + f'adapter_{k}.weight'] = make(d, proj, 1, 1)
        _gn(state, pd + f'adapter_{k}.norm.', d, make)
        state[pd + f'layer_{k}.weight'] = make(d, d, 3, 3)
        _gn(state, pd + f'layer_{k}.norm.', d, make)
    pr = 'sem_seg_head.predictor.'
    for i in range(arch.dec_layers):
        for module, attn in (('transformer_self_attention_layers', 'self_attn'),
                             ('transformer_cross_attention_layers', 'multihead_attn')):
            prefix = pr + f'{module}.{i}.'
            state[prefix + f'{attn}.in_proj_weight'] = make(3 * d, d)
            state[prefix + f'{attn}.in_proj_bias'] = make(3 * d)
            _linear(state, prefix + f'{attn}.out_proj.', d, d, make)
            _gn(state, prefix + 'norm.', d, make)
    for i in range(arch.dec_layers):
        prefix = pr + f'transformer_ffn_layers.{i}.'
        _linear(state, prefix + 'linear1.', arch.dec_ffn, d, make)
        _linear(state, prefix + 'linear2.', d, arch.dec_ffn, make)
        _gn(state, prefix + 'norm.', d, make)
    _gn(state, pr + 'decoder_norm.', d, make)
    state[pr + 'query_feat.weight'] = make(arch.queries, d)
    state[pr + 'query_embed.weight'] = make(arch.queries, d)
    state[pr + 'level_embed.weight'] = make(arch.levels, d)
    _linear(state, pr + 'class_embed.', arch.classes + 1, d, make)
    for i, out in enumerate((d, d, arch.mask_dim)):
        _linear(state, pr + f'mask_embed.layers.{i}.', out, d, make)
    state['criterion.empty_weight'] = make(arch.classes + 1)
    return state


def _prefixed(prefix: str, state: Dict[str, Tensor]) -> 'OrderedDict[str, Tensor]':
    return OrderedDict((prefix + key, value) for key, value in state.items())


def official_rass_state_dict(arch: OfficialArch, sd_arch: dict, make: Maker, frozen: bool = True,
                             merged_unet: Optional[Dict[str, Tensor]] = None) -> 'OrderedDict[str, Tensor]':
    """A ``MaskFormer_rass`` state dict: frozen SD (merged UNet, VAE, text encoder), Seg LoRA, taggers, head.

    Args:
        arch: Sizes of the detectron2 model.
        sd_arch: ``dict(vae=..., unet=..., text_encoder=...)`` architecture dicts (e.g. a config's tiny_sd).
        make: Tensor maker (values, or meta shapes).
        frozen: Include what never trains (SD base weights, taggers, JPEG tables); False gives a stripped release.
        merged_unet: The UNet's base weights (diffusers names, e.g. :func:`merge_scr_by_hand` of an SD UNet and an
            SCR checkpoint); None makes random ones.
    """
    with torch.device('meta'):
        unet = UNet2DConditionModel(**sd_arch['unet'])
        vae = AutoencoderKL(**sd_arch['vae'])
        text_encoder = CLIPTextModel(CLIPTextConfig(**sd_arch['text_encoder']))
    groups = lora_groups(unet, ('default_encoder_s2', 'default_decoder_s2', 'default_others_s2'))
    unet_state = unet_with_lora(unet, groups, arch.rank, make if frozen else Maker('meta'), merged_unet)
    state = OrderedDict()
    for key, value in unet_state.items():
        if frozen:
            state['backbone.feature_extractor.sd.unet.' + key] = value
        elif '.lora_' in key or key.startswith('conv_in.'):  # what trains, with values
            state['backbone.feature_extractor.sd.unet.' + key] = make(*value.shape)
    if not frozen:
        state.update(head_state_dict(arch, make))
        return state
    for prefix, part in (('vae.', vae), ('text_encoder.', text_encoder)):
        state.update(_prefixed('backbone.feature_extractor.sd.' + prefix,
                               {k: make(*v.shape) for k, v in part.state_dict().items()}))
    for tagger in ('ram', 'dape'):  # RAM Swin-L taggers; their own names do not matter, the prefix is dropped
        state[f'backbone.feature_extractor.{tagger}.visual_encoder.patch_embed.proj.weight'] = make(192, 3, 4, 4)
        state[f'backbone.feature_extractor.{tagger}.label_embed'] = make(4585, 512)
    for name, shape in (('compress.l1.0.shift', (3, )), ('compress.l1.0.matrix', (3, 3)),
                        ('compress.l2.1.tensor', (8, 8, 8, 8)), ('compress.l2.1.scale', (8, 8)),
                        ('compress.c_quantize.c_table', (8, 8)), ('compress.y_quantize.y_table', (8, 8)),
                        ('decompress.c_dequantize.c_table', (8, 8)), ('decompress.y_dequantize.y_table', (8, 8)),
                        ('decompress.idct.alpha', (8, 8)), ('decompress.idct.tensor', (8, 8, 8, 8)),
                        ('decompress.colors.shift', (3, )), ('decompress.colors.matrix', (3, 3))):
        state['backbone.jpeger.' + name] = make(*shape)  # basicsr's DiffJPEG parameters
    state.update(head_state_dict(arch, make))
    return state


def official_scr_checkpoint(unet: nn.Module, rank: int, make: Maker, with_vae: bool = True) -> dict:
    """An SCR checkpoint as OSEDiff/RASS save it: module lists, rank, UNet LoRA + conv_in (+ VAE LoRA entries)."""
    groups = lora_groups(unet, ('default_encoder', 'default_decoder', 'default_others'))
    state = unet_with_lora(unet, groups, rank, make)
    checkpoint = dict(
        unet_lora_encoder_modules=groups['default_encoder'], unet_lora_decoder_modules=groups['default_decoder'],
        unet_lora_others_modules=groups['default_others'], rank_unet=rank,
        state_dict_unet={k: v for k, v in state.items() if 'lora' in k or 'conv_in' in k})
    if with_vae:
        checkpoint.update(rank_vae=4, vae_lora_encoder_modules=['encoder.conv_in'],
                          state_dict_vae={'encoder.conv_in.lora_A.default_encoder.weight': make(4, 3, 3, 3)})
    return checkpoint
