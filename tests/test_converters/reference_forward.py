"""Hand-written forward passes of the public RASS (detectron2) modules, in plain torch ops on its own tensor names.

They follow the computations of ``rass/modeling/backbone/feature_projection.py`` (detectron2 ``BottleneckBlock``),
``rass/modeling/pixel_decoder/msdeformattn.py`` (+ ``ops/modules/ms_deform_attn.py``) and
``rass/modeling/transformer_decoder/mask2former_transformer_decoder.py``, written batch-first from the formulas, and
read every weight by its detectron2 key. A converted checkpoint is right when our modules, loaded with it, give
the same numbers.
"""
import math
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

State = Dict[str, Tensor]


def conv(x: Tensor, s: State, name: str, padding: int = 0) -> Tensor:
    return F.conv2d(x, s[name + '.weight'], s.get(name + '.bias'), padding=padding)


def group_norm(x: Tensor, s: State, name: str, groups: int) -> Tensor:
    return F.group_norm(x, groups, s[name + '.weight'], s[name + '.bias'])


def layer_norm(x: Tensor, s: State, name: str) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], s[name + '.weight'], s[name + '.bias'])


def linear(x: Tensor, s: State, name: str) -> Tensor:
    return x @ s[name + '.weight'].T + s[name + '.bias']


def bottleneck(x: Tensor, s: State, prefix: str, groups: int) -> Tensor:
    """detectron2 ``BottleneckBlock`` (stride 1, GN): 1x1 -> 3x3 -> 1x1, projected shortcut when channels change."""
    out = F.relu(group_norm(conv(x, s, prefix + 'conv1'), s, prefix + 'conv1.norm', groups))
    out = F.relu(group_norm(conv(out, s, prefix + 'conv2', padding=1), s, prefix + 'conv2.norm', groups))
    out = group_norm(conv(out, s, prefix + 'conv3'), s, prefix + 'conv3.norm', groups)
    shortcut = x
    if prefix + 'shortcut.weight' in s:
        shortcut = group_norm(conv(x, s, prefix + 'shortcut'), s, prefix + 'shortcut.norm', groups)
    return F.relu(out + shortcut)


def sine_position(batch: int, height: int, width: int, num_feats: int, dtype) -> Tensor:
    """``PositionEmbeddingSine(num_feats, normalize=True)`` without a mask: (N, 2 * num_feats, H, W)."""
    y = torch.arange(1, height + 1, dtype=dtype)[:, None].expand(height, width) / (height + 1e-6) * 2 * math.pi
    x = torch.arange(1, width + 1, dtype=dtype)[None, :].expand(height, width) / (width + 1e-6) * 2 * math.pi
    dim_t = 10000 ** (2 * (torch.arange(num_feats, dtype=dtype) // 2) / num_feats)

    def encode(coordinate: Tensor) -> Tensor:
        angles = coordinate[..., None] / dim_t
        return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)

    return torch.cat((encode(y), encode(x)), dim=-1).permute(2, 0, 1).expand(batch, -1, -1, -1)


def ms_deform_attn(query: Tensor, source: Tensor, reference: Tensor, shapes: Sequence[Tuple[int, int]], s: State,
                   prefix: str, heads: int, points: int) -> Tensor:
    """``MSDeformAttn``: query (N, Lq, C), source (N, sum HW, C), reference (N, Lq, levels, 2) in [0, 1] (x, y)."""
    n, lq, c = query.shape
    levels, head_dim = len(shapes), c // heads
    value = linear(source, s, prefix + 'value_proj').view(n, -1, heads, head_dim)
    offsets = linear(query, s, prefix + 'sampling_offsets').view(n, lq, heads, levels, points, 2)
    weights = linear(query, s, prefix + 'attention_weights').view(n, lq, heads, levels * points).softmax(-1)
    weights = weights.view(n, lq, heads, levels, points)
    size = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype)  # offsets are in pixels of each level
    locations = reference[:, :, None, :, None, :] + offsets / size[None, None, None, :, None, :]
    out = torch.zeros(n, lq, heads, head_dim, dtype=query.dtype)
    start = 0
    for level, (h, w) in enumerate(shapes):
        level_value = value[:, start:start + h * w].permute(0, 2, 3, 1).reshape(n * heads, head_dim, h, w)
        grid = (2 * locations[:, :, :, level] - 1).permute(0, 2, 1, 3, 4).reshape(n * heads, lq, points, 2)
        sampled = F.grid_sample(level_value, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
        sampled = sampled.view(n, heads, head_dim, lq, points)
        level_weights = weights[:, :, :, level].permute(0, 2, 1, 3)[:, :, None]  # (N, heads, 1, Lq, points)
        out += (sampled * level_weights).sum(-1).permute(0, 3, 1, 2)
        start += h * w
    return linear(out.reshape(n, lq, c), s, prefix + 'output_proj')


def pixel_decoder(features: Dict[str, Tensor], s: State, groups: int, heads: int, points: int, layers: int
                  ) -> Tuple[Tensor, List[Tensor]]:
    """``MSDeformAttnPixelDecoder.forward_features`` on res2..res5: (mask features, 3 multi-scale maps res5..res3)."""
    p = 'sem_seg_head.pixel_decoder.'
    names = ['res5', 'res4', 'res3']  # low resolution first
    n, dtype = features['res2'].shape[0], features['res2'].dtype
    srcs, positions, shapes = [], [], []
    for i, name in enumerate(names):
        x = features[name]
        src = group_norm(conv(x, s, p + f'input_proj.{i}.0'), s, p + f'input_proj.{i}.1', groups)
        pos = sine_position(n, *x.shape[-2:], src.shape[1] // 2, dtype)
        srcs.append(src.flatten(2).transpose(1, 2))
        positions.append(pos.flatten(2).transpose(1, 2) + s[p + 'transformer.level_embed'][i])
        shapes.append(tuple(x.shape[-2:]))
    src, pos = torch.cat(srcs, 1), torch.cat(positions, 1)
    centres = []
    for h, w in shapes:
        cy, cx = torch.meshgrid((torch.arange(h, dtype=dtype) + 0.5) / h, (torch.arange(w, dtype=dtype) + 0.5) / w,
                                indexing='ij')
        centres.append(torch.stack((cx.reshape(-1), cy.reshape(-1)), -1))
    reference = torch.cat(centres, 0)[None, :, None].expand(n, -1, len(shapes), -1)
    for j in range(layers):
        prefix = p + f'transformer.encoder.layers.{j}.'
        attended = ms_deform_attn(src + pos, src, reference, shapes, s, prefix + 'self_attn.', heads, points)
        src = layer_norm(src + attended, s, prefix + 'norm1')
        ffn = linear(F.relu(linear(src, s, prefix + 'linear1')), s, prefix + 'linear2')
        src = layer_norm(src + ffn, s, prefix + 'norm2')
    outs, start = [], 0
    for h, w in shapes:
        outs.append(src[:, start:start + h * w].transpose(1, 2).reshape(n, -1, h, w))
        start += h * w
    lateral = group_norm(conv(features['res2'], s, p + 'adapter_1'), s, p + 'adapter_1.norm', groups)
    y = lateral + F.interpolate(outs[-1], size=lateral.shape[-2:], mode='bilinear', align_corners=False)
    outs.append(F.relu(group_norm(conv(y, s, p + 'layer_1', padding=1), s, p + 'layer_1.norm', groups)))
    return conv(outs[-1], s, p + 'mask_features'), outs[:3]


def attention(query: Tensor, key: Tensor, value: Tensor, s: State, prefix: str, heads: int,
              mask: Tensor = None) -> Tensor:
    """``nn.MultiheadAttention`` from its packed ``in_proj_weight``, batch-first; ``mask`` True = not attended."""
    c = query.shape[-1]
    weight, bias = s[prefix + 'in_proj_weight'], s[prefix + 'in_proj_bias']
    q, k, v = (x @ weight[i * c:(i + 1) * c].T + bias[i * c:(i + 1) * c] for i, x in enumerate((query, key, value)))

    def split(x: Tensor) -> Tensor:
        return x.view(x.shape[0], x.shape[1], heads, c // heads).transpose(1, 2)

    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(c // heads)
    if mask is not None:
        scores = scores.masked_fill(mask, float('-inf'))
    out = (scores.softmax(-1) @ split(v)).transpose(1, 2).reshape(query.shape)
    return linear(out, s, prefix + 'out_proj')


def predictor(multi_scale: List[Tensor], mask_features: Tensor, s: State, heads: int, layers: int
              ) -> List[Tuple[Tensor, Tensor]]:
    """``MultiScaleMaskedTransformerDecoder``: (class logits, mask logits) of the query features and of each layer."""
    p = 'sem_seg_head.predictor.'
    n, dtype = mask_features.shape[0], mask_features.dtype
    srcs, positions, sizes = [], [], []
    for i, x in enumerate(multi_scale):
        positions.append(sine_position(n, *x.shape[-2:], x.shape[1] // 2, dtype).flatten(2).transpose(1, 2))
        srcs.append(x.flatten(2).transpose(1, 2) + s[p + 'level_embed.weight'][i])
        sizes.append(tuple(x.shape[-2:]))
    query_pos = s[p + 'query_embed.weight'][None].expand(n, -1, -1)
    output = s[p + 'query_feat.weight'][None].expand(n, -1, -1)

    def predict(output: Tensor, size: Tuple[int, int]) -> Tuple[Tensor, Tensor, Tensor]:
        decoded = layer_norm(output, s, p + 'decoder_norm')
        classes = linear(decoded, s, p + 'class_embed')
        embed = decoded
        for i in range(3):
            embed = linear(embed, s, p + f'mask_embed.layers.{i}')
            embed = F.relu(embed) if i < 2 else embed
        masks = torch.einsum('bqc,bchw->bqhw', embed, mask_features)
        blocked = F.interpolate(masks, size=size, mode='bilinear', align_corners=False).sigmoid().flatten(2) < 0.5
        return classes, masks, blocked[:, None].expand(-1, heads, -1, -1)

    classes, masks, blocked = predict(output, sizes[0])
    predictions = [(classes, masks)]
    for i in range(layers):
        level = i % len(multi_scale)
        blocked = blocked & ~blocked.all(-1, keepdim=True)  # a query that sees nothing sees everything
        prefix = p + f'transformer_cross_attention_layers.{i}.'
        attended = attention(output + query_pos, srcs[level] + positions[level], srcs[level], s,
                             prefix + 'multihead_attn.', heads, blocked)
        output = layer_norm(output + attended, s, prefix + 'norm')
        prefix = p + f'transformer_self_attention_layers.{i}.'
        attended = attention(output + query_pos, output + query_pos, output, s, prefix + 'self_attn.', heads)
        output = layer_norm(output + attended, s, prefix + 'norm')
        prefix = p + f'transformer_ffn_layers.{i}.'
        output = layer_norm(output + linear(F.relu(linear(output, s, prefix + 'linear1')), s, prefix + 'linear2'), s,
                            prefix + 'norm')
        classes, masks, blocked = predict(output, sizes[(i + 1) % len(multi_scale)])
        predictions.append((classes, masks))
    return predictions
