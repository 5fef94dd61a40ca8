"""ODISE-style projection of the RASS backbone features onto a feature pyramid (res2..res5).

Each backbone feature goes through its own bottleneck residual block (1x1 reduce, 3x3, 1x1 expand, with
GroupNorm and a projected shortcut), and the projected features of one stride are summed. With the Stable
Diffusion 2.1-base taps (strides 4, 8, 32, 16, 8, 8) this gives res2 = VAE #1, res3 = VAE #3 + UNet up #2
+ UNet up #3, res4 = UNet up #1 and res5 = UNet up #0, ``out_channels`` each.
"""
from typing import Dict, List, Sequence, Tuple, Union

import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor, nn

__all__ = ['FeatureProjection']


class BottleneckResidualBlock(nn.Module):
    """1x1 -> 3x3 -> 1x1 bottleneck with GroupNorm and a 1x1 projected shortcut when channels change.

    Args:
        in_channels: Input channels.
        bottleneck_channels: Channels of the inner 3x3 convolution.
        out_channels: Output channels.
        norm_cfg: mmcv norm config.
    """

    def __init__(self, in_channels: int, bottleneck_channels: int, out_channels: int, norm_cfg: dict) -> None:
        super().__init__()
        act = dict(type='ReLU')
        self.reduce = ConvModule(in_channels, bottleneck_channels, 1, norm_cfg=norm_cfg, act_cfg=act)
        self.conv = ConvModule(bottleneck_channels, bottleneck_channels, 3, padding=1, norm_cfg=norm_cfg, act_cfg=act)
        self.expand = ConvModule(bottleneck_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None)
        self.shortcut = None if in_channels == out_channels else ConvModule(
            in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.expand(self.conv(self.reduce(x))) + identity)


@MODELS.register_module()
class FeatureProjection(BaseModule):
    """Project multi-stride backbone features to one pyramid level per output stride.

    Args:
        in_channels: Channels of each backbone feature, e.g. [256, 512, 1280, 1280, 640, 320].
        in_strides: Stride of each backbone feature, e.g. [4, 8, 32, 16, 8, 8].
        out_strides: Strides of the outputs, smallest first (res2..res5 = 4, 8, 16, 32). Every output
            stride needs at least one input at that stride, and every input stride must be an output stride.
        out_channels: Channels of the outputs: one number for all, or one per output stride (e.g. the
            ``in_channels`` of an mmseg head written for a ResNet or MiT backbone, so that head needs no change).
        bottleneck_channels: Inner channels of each bottleneck block.
        norm_cfg: mmcv norm config of the blocks.
        init_cfg: mmengine init config.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 in_strides: Sequence[int],
                 out_strides: Sequence[int] = (4, 8, 16, 32),
                 out_channels: Union[int, Sequence[int]] = 512,
                 bottleneck_channels: int = 128,
                 norm_cfg: dict = dict(type='GN', num_groups=32, requires_grad=True),
                 init_cfg: dict = dict(type='Kaiming', layer='Conv2d', a=1, mode='fan_in',
                                       nonlinearity='leaky_relu')) -> None:
        super().__init__(init_cfg=init_cfg)
        if len(in_channels) != len(in_strides):
            raise ValueError(f'FeatureProjection: in_channels has {len(in_channels)} entries but in_strides has '
                             f'{len(in_strides)}')
        unknown = sorted(set(in_strides) - set(out_strides))
        empty = sorted(set(out_strides) - set(in_strides))
        if unknown or empty:
            raise ValueError(f'FeatureProjection: in_strides {list(in_strides)} and out_strides {list(out_strides)} '
                             f'must cover each other (inputs at no output stride: {unknown}; outputs with no input: '
                             f'{empty})')
        if isinstance(out_channels, int):
            out_channels_per_level = [out_channels] * len(out_strides)
        else:
            out_channels_per_level = list(out_channels)
            if len(out_channels_per_level) != len(out_strides):
                raise ValueError(f'FeatureProjection: out_channels {out_channels_per_level} must give one number per '
                                 f'out_stride {list(out_strides)}')
        self.in_channels = list(in_channels)
        self.in_strides = list(in_strides)
        self.out_strides = list(out_strides)
        self.out_channels = out_channels
        self.out_channels_per_level = out_channels_per_level
        level_of_stride = {s: i for i, s in enumerate(out_strides)}
        self.blocks = nn.ModuleList(
            BottleneckResidualBlock(c, bottleneck_channels, out_channels_per_level[level_of_stride[s]], norm_cfg)
            for c, s in zip(in_channels, in_strides))
        self.groups: Dict[int, List[int]] = {s: [i for i, t in enumerate(in_strides) if t == s] for s in out_strides}

    def forward(self, features: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Project and sum.

        Args:
            features: Backbone features in the order of ``in_channels``.

        Returns:
            One tensor per output stride, (N, C_s, H_s, W_s) with C_s its ``out_channels``, where H_s is the size of
            the first input of that stride (the others are resized to it bilinearly when they differ).
        """
        if len(features) != len(self.blocks):
            raise ValueError(f'FeatureProjection expects {len(self.blocks)} features, got {len(features)}')
        for i, (feature, channels) in enumerate(zip(features, self.in_channels)):
            if feature.shape[1] != channels:
                raise ValueError(f'FeatureProjection: feature {i} has {feature.shape[1]} channels, in_channels[{i}] '
                                 f'is {channels}')
        outputs = []
        for stride in self.out_strides:
            indices = self.groups[stride]
            size = features[indices[0]].shape[-2:]
            level = None
            for i in indices:
                projected = self.blocks[i](features[i])
                if projected.shape[-2:] != size:
                    projected = F.interpolate(projected, size=size, mode='bilinear', align_corners=False)
                level = projected if level is None else level + projected
            outputs.append(level)
        return tuple(outputs)
