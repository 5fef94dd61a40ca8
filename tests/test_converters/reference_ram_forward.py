"""Hand-written forward pass of the public RAM tagger (``RAMLora.generate_tag``) in plain torch ops, on its own key
names, with LoRA applied UNMERGED (``x A^T B^T / r``, loralib's train-mode forward).

It follows ``restoration_adaptation/ram/models/swin_transformer_lora.py`` (original Swin: windows, relative position
bias, cyclic shift with the -100 region mask, patch merging at the end of a stage, final norm, mean token first) and
``bert_lora.py`` in ``'tagging'`` mode (cross-attention only, then the feed-forward block), written from the
formulas; it shares no code with timm, transformers or our modules.
"""
import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

State = Dict[str, Tensor]


def stage_window(resolution: int, window: int, block: int) -> Tuple[int, int]:
    """(window, shift) of block ``block`` of a stage: no partition and no shift when the stage fits one window."""
    if resolution <= window:
        return resolution, 0
    return window, (window // 2 if block % 2 else 0)


def relative_position_index(window: int) -> Tensor:
    """(w^2, w^2): row offset and column offset of each token pair, shifted to >= 0, as one table index."""
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing='ij')
    rows, cols = rows.flatten(), cols.flatten()
    d_row = rows[:, None] - rows[None, :] + window - 1
    d_col = cols[:, None] - cols[None, :] + window - 1
    return d_row * (2 * window - 1) + d_col


def _windows(x: Tensor, window: int) -> Tensor:
    n, h, w, c = x.shape
    x = x.view(n, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def shift_mask(resolution: int, window: int, shift: int) -> Tensor:
    """(windows, w^2, w^2): -100 between tokens of different regions of the rolled image, else 0."""
    region = torch.zeros(1, resolution, resolution, 1)
    bounds = ((0, resolution - window), (resolution - window, resolution - shift), (resolution - shift, resolution))
    label = 0
    for top, bottom in bounds:
        for left, right in bounds:
            region[:, top:bottom, left:right] = label
            label += 1
    labels = _windows(region, window).squeeze(-1)
    differ = labels[:, None, :] != labels[:, :, None]
    return torch.zeros(differ.shape).masked_fill(differ, -100.0)


def linear(x: Tensor, s: State, name: str, lora: bool = False) -> Tensor:
    out = x @ s[name + '.weight'].T
    if name + '.bias' in s:
        out = out + s[name + '.bias']
    if lora and name + '.lora_A' in s:
        a, b = s[name + '.lora_A'], s[name + '.lora_B']
        out = out + x @ a.T @ b.T / a.shape[0]
    return out


def qkv(x: Tensor, s: State, name: str, lora: bool) -> Tensor:
    """The q/v MergedLinear: A's first r rows and B's first dim rows are q's, the rest v's; k has none."""
    out = linear(x, s, name)
    if lora:
        a, b = s[name + '.lora_A'], s[name + '.lora_B']
        r, dim = a.shape[0] // 2, b.shape[0] // 2
        q = x @ a[:r].T @ b[:dim].T / r
        v = x @ a[r:].T @ b[dim:].T / r
        out = out + torch.cat((q, torch.zeros_like(q), v), dim=-1)
    return out


def layer_norm(x: Tensor, s: State, name: str, eps: float = 1e-5) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], s[name + '.weight'], s[name + '.bias'], eps)


def swin_block(x: Tensor, s: State, prefix: str, resolution: int, heads: int, window: int, shift: int,
               lora: bool) -> Tensor:
    n, length, c = x.shape
    shortcut = x
    x = layer_norm(x, s, prefix + 'norm1').view(n, resolution, resolution, c)
    if shift:
        x = torch.roll(x, (-shift, -shift), dims=(1, 2))
    tokens = _windows(x, window)  # (n * windows, w^2, c)
    q, k, v = qkv(tokens, s, prefix + 'attn.qkv', lora).view(tokens.shape[0], window ** 2, 3, heads, -1).unbind(2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (n * windows, heads, w^2, d)
    attn = (q * (c // heads) ** -0.5) @ k.transpose(-1, -2)
    table = s[prefix + 'attn.relative_position_bias_table']
    attn = attn + table[relative_position_index(window).flatten()].view(window ** 2, window ** 2, -1).permute(2, 0, 1)
    if shift:
        mask = shift_mask(resolution, window, shift).to(attn)
        attn = (attn.view(n, -1, heads, window ** 2, window ** 2) + mask[None, :, None]).flatten(0, 1)
    out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(tokens.shape[0], window ** 2, c)
    out = linear(out, s, prefix + 'attn.proj')
    per_side = resolution // window
    out = out.view(n, per_side, per_side, window, window, c).permute(0, 1, 3, 2, 4, 5).reshape(
        n, resolution, resolution, c)
    if shift:
        out = torch.roll(out, (shift, shift), dims=(1, 2))
    x = shortcut + out.reshape(n, length, c)
    hidden = F.gelu(linear(layer_norm(x, s, prefix + 'norm2'), s, prefix + 'mlp.fc1'))
    return x + linear(hidden, s, prefix + 'mlp.fc2')


def patch_merging(x: Tensor, s: State, prefix: str, resolution: int) -> Tensor:
    n, _, c = x.shape
    x = x.view(n, resolution, resolution, c)
    x = torch.cat((x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]), dim=-1)
    return linear(layer_norm(x.view(n, -1, 4 * c), s, prefix + 'norm'), s, prefix + 'reduction')


def swin(images: Tensor, s: State, patch: int, depths, heads, window: int, lora: bool) -> Tensor:
    """(N, 3, S, S) normalised images -> (N, 1 + L, C): the mean token, then the final tokens."""
    ve = 'visual_encoder.'
    x = F.conv2d(images, s[ve + 'patch_embed.proj.weight'], s[ve + 'patch_embed.proj.bias'], stride=patch)
    resolution = x.shape[-1]
    x = layer_norm(x.flatten(2).transpose(1, 2), s, ve + 'patch_embed.norm')
    for i, (depth, num_heads) in enumerate(zip(depths, heads)):
        for j in range(depth):
            size, shift = stage_window(resolution, window, j)
            x = swin_block(x, s, f'{ve}layers.{i}.blocks.{j}.', resolution, num_heads, size, shift, lora)
        if f'{ve}layers.{i}.downsample.reduction.weight' in s:
            x = patch_merging(x, s, f'{ve}layers.{i}.downsample.', resolution)
            resolution //= 2
    x = layer_norm(x, s, ve + 'norm')
    return torch.cat((x.mean(1, keepdim=True), x), dim=1)


def tagging_head(image_embeds: Tensor, s: State, heads: int, layers: int, lora: bool) -> Tensor:
    """Label queries cross-attending to the image tokens, BERT feed-forward, fc -> (N, tags) logits."""
    queries = s['label_embed']
    if 'wordvec_proj.weight' in s:
        queries = linear(queries, s, 'wordvec_proj')
    x = F.relu(queries).expand(image_embeds.shape[0], -1, -1)
    for layer in range(layers):
        p = f'tagging_head.encoder.layer.{layer}.'

        def split(t: Tensor) -> Tensor:
            return t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)

        q = split(linear(x, s, p + 'crossattention.self.query', lora))
        k = split(linear(image_embeds, s, p + 'crossattention.self.key', lora))
        v = split(linear(image_embeds, s, p + 'crossattention.self.value'))
        context = ((q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])).softmax(-1) @ v
        context = context.transpose(1, 2).reshape(x.shape)
        x = layer_norm(linear(context, s, p + 'crossattention.output.dense') + x, s,
                       p + 'crossattention.output.LayerNorm', 1e-12)
        hidden = F.gelu(linear(x, s, p + 'intermediate.dense'))
        x = layer_norm(linear(hidden, s, p + 'output.dense') + x, s, p + 'output.LayerNorm', 1e-12)
    return linear(x, s, 'fc').squeeze(-1)


def scores(images: Tensor, s: State, arch, lora: bool = True, prefix: Optional[str] = None) -> Tensor:
    """Sigmoid tag scores of normalised (N, 3, S, S) images; ``prefix`` strips a state-dict prefix first."""
    if prefix is not None:
        s = {key[len(prefix):]: value for key, value in s.items() if key.startswith(prefix)}
    tokens = swin(images, s, arch.patch, arch.depths, arch.heads, arch.window, lora)
    return torch.sigmoid(tagging_head(linear(tokens, s, 'image_proj'), s, arch.head_heads, arch.layers, lora))
