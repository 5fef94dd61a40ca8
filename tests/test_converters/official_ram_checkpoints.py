"""Synthetic RAM / DAPE tagger weights in the layout of the public RASS release (``RAMLora.state_dict()``).

Key names and shapes follow our reading of ``restoration_adaptation/ram/models/{ram_lora,swin_transformer_lora,
bert_lora}.py`` (original Swin layout with persistent buffers, loralib ``MergedLinear`` q/v LoRA on ``attn.qkv``,
loralib ``Linear`` LoRA on BERT ``query``/``key``), written independently of the converter. Values are seeded random
(``Maker``) or meta shapes.
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from tests.test_converters.reference_ram_forward import relative_position_index, shift_mask, stage_window


@dataclass
class TaggerArch:
    """Sizes of a public ``RAMLora`` (defaults: RAM Swin-L 384 and q2l_config)."""
    image_size: int = 384
    patch: int = 4
    embed_dim: int = 192
    depths: Sequence[int] = (2, 2, 18, 2)
    heads: Sequence[int] = (6, 12, 24, 48)
    window: int = 12
    label_dim: int = 512
    hidden: int = 768
    head_heads: int = 4
    intermediate: int = 3072
    layers: int = 2
    num_tags: int = 4585
    rank: int = 8

    def swin_cfg(self) -> dict:
        return dict(patch_size=self.patch, embed_dim=self.embed_dim, depths=tuple(self.depths),
                    num_heads=tuple(self.heads), window_size=self.window)

    def head_cfg(self) -> dict:
        return dict(hidden_size=self.hidden, num_heads=self.head_heads, intermediate_size=self.intermediate,
                    num_layers=self.layers)


PAPER_TAGGER = TaggerArch()
#: Three stages so the last one (4 x 4 tokens, window 4) is not shifted, as Swin-L's last stage at 384.
TINY_TAGGER = TaggerArch(image_size=64, embed_dim=16, depths=(2, 2, 2), heads=(2, 4, 8), window=4, label_dim=24,
                         hidden=32, head_heads=2, intermediate=64, num_tags=7, rank=4)


def _linear(state: dict, name: str, out: int, inp: int, make, bias: bool = True) -> None:
    state[name + '.weight'] = make(out, inp)
    if bias:
        state[name + '.bias'] = make(out)


def _norm(state: dict, name: str, dim: int, make) -> None:
    state[name + '.weight'] = 1 + make(dim)
    state[name + '.bias'] = make(dim)


def _lora(state: dict, name: str, a_rows: int, inp: int, b_rows: int, rank: int, make, trained: bool) -> None:
    state[name + '.lora_A'] = make(a_rows, inp)
    state[name + '.lora_B'] = make(b_rows, rank) if trained else torch.zeros_like(make(b_rows, rank))


def _long(make, tensor: Tensor) -> Tensor:
    return torch.empty(tensor.shape, dtype=torch.long, device='meta') if make.device == 'meta' else tensor


def official_tagger_state_dict(arch: TaggerArch, make, trained_lora: bool) -> 'OrderedDict[str, Tensor]':
    """``RAMLora.state_dict()``: RAM (``trained_lora=False``, LoRA B zero) or DAPE (trained, nonzero B)."""
    state, r = OrderedDict(), arch.rank
    ve = 'visual_encoder.'
    state[ve + 'patch_embed.proj.weight'] = make(arch.embed_dim, 3, arch.patch, arch.patch)
    state[ve + 'patch_embed.proj.bias'] = make(arch.embed_dim)
    _norm(state, ve + 'patch_embed.norm', arch.embed_dim, make)
    resolution = arch.image_size // arch.patch
    for i, (depth, heads) in enumerate(zip(arch.depths, arch.heads)):
        dim = arch.embed_dim * 2 ** i
        for j in range(depth):
            window, shift = stage_window(resolution, arch.window, j)
            block = f'{ve}layers.{i}.blocks.{j}.'
            _norm(state, block + 'norm1', dim, make)
            state[block + 'attn.relative_position_bias_table'] = make((2 * window - 1) ** 2, heads)
            state[block + 'attn.relative_position_index'] = _long(make, relative_position_index(window))
            _linear(state, block + 'attn.qkv', 3 * dim, dim, make)
            _lora(state, block + 'attn.qkv', 2 * r, dim, 2 * dim, r, make, trained_lora)
            _linear(state, block + 'attn.proj', dim, dim, make)
            _norm(state, block + 'norm2', dim, make)
            _linear(state, block + 'mlp.fc1', 4 * dim, dim, make)
            _linear(state, block + 'mlp.fc2', dim, 4 * dim, make)
            if shift:  # a persistent buffer in the public Swin
                mask = shift_mask(resolution, window, shift)
                state[block + 'attn_mask'] = torch.empty(mask.shape, device='meta') if make.device == 'meta' else mask
        if i < len(arch.depths) - 1:
            _norm(state, f'{ve}layers.{i}.downsample.norm', 4 * dim, make)
            _linear(state, f'{ve}layers.{i}.downsample.reduction', 2 * dim, 4 * dim, make, bias=False)
            resolution //= 2
    features = arch.embed_dim * 2 ** (len(arch.depths) - 1)
    _norm(state, ve + 'norm', features, make)
    _linear(state, 'image_proj', arch.label_dim, features, make)
    state['label_embed'] = make(arch.num_tags, arch.label_dim)
    if arch.hidden != arch.label_dim:
        _linear(state, 'wordvec_proj', arch.hidden, arch.label_dim, make)
    _linear(state, 'fc', 1, arch.hidden, make)
    h = arch.hidden
    for layer in range(arch.layers):
        prefix = f'tagging_head.encoder.layer.{layer}.'
        _linear(state, prefix + 'crossattention.self.query', h, h, make)
        _lora(state, prefix + 'crossattention.self.query', r, h, h, r, make, trained_lora)
        _linear(state, prefix + 'crossattention.self.key', h, arch.label_dim, make)
        _lora(state, prefix + 'crossattention.self.key', r, arch.label_dim, h, r, make, trained_lora)
        _linear(state, prefix + 'crossattention.self.value', h, arch.label_dim, make)
        _linear(state, prefix + 'crossattention.output.dense', h, h, make)
        _norm(state, prefix + 'crossattention.output.LayerNorm', h, make)
        _linear(state, prefix + 'intermediate.dense', arch.intermediate, h, make)
        _linear(state, prefix + 'output.dense', h, arch.intermediate, make)
        _norm(state, prefix + 'output.LayerNorm', h, make)
    # captioning parts (dropped): a sample of their keys, the tied tagging layers included
    for key in [k for k in state if k.startswith('tagging_head.encoder.layer.0.')]:
        if key.endswith(('.weight', '.bias')):  # tied: the same tensors
            state[key.replace('tagging_head.', 'tag_encoder.')] = state[key]
        else:  # each module keeps its own LoRA; tag_encoder's is never trained by tagging (B zero)
            state[key.replace('tagging_head.', 'tag_encoder.')] = make(*state[key].shape) * key.endswith('lora_A')
    state['tag_encoder.embeddings.word_embeddings.weight'] = make(10, h)
    _linear(state, 'tag_encoder.encoder.layer.0.attention.self.query', h, h, make)
    _lora(state, 'tag_encoder.encoder.layer.0.attention.self.query', r, h, h, r, make, trained_lora)
    _linear(state, 'text_decoder.bert.encoder.layer.0.attention.self.query', h, h, make)
    state['text_decoder.cls.predictions.bias'] = make(10)
    return state
