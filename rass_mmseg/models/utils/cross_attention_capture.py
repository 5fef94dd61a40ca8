"""Capture the UNet's cross-attention probabilities with diffusers attention processors.

The semantic-constraint loss of SCR needs the softmax probabilities of chosen cross-attention layers
(``attn2`` of the UNet's transformer blocks). :class:`CrossAttentionCaptureProcessor` is a diffusers
``AttnProcessor`` (the eager matmul + softmax path) that records them: it runs diffusers' own processor
code with a thin view of the ``Attention`` module whose ``get_attention_scores`` also hands the
probabilities to a :class:`CrossAttentionStore`. Only the chosen layers get it; every other layer keeps
its processor (SDPA), so the UNet's output is unchanged and only the captured layers pay for eager attention.
"""
import re
from typing import Dict, List, Optional, Sequence, Tuple

from diffusers.models.attention_processor import Attention, AttnProcessor
from torch import Tensor, nn

__all__ = ['CrossAttentionStore', 'CrossAttentionCaptureProcessor', 'cross_attention_layers_at_strides',
           'install_cross_attention_capture']

_BLOCK_PATTERN = re.compile(r'^(down_blocks|up_blocks)\.(\d+)\.|^mid_block\.')


class CrossAttentionStore:
    """Collects cross-attention probabilities during one UNet forward pass.

    Recording is off until :meth:`start` is called, so inference keeps no maps. Maps are stored per layer
    as (N, heads, h, w, L): batch, attention heads, the layer's spatial grid and the text tokens.
    """

    def __init__(self) -> None:
        self.active = False
        self.latent_size: Optional[Tuple[int, int]] = None
        self.maps: Dict[str, Tensor] = {}

    def start(self, latent_size: Tuple[int, int]) -> None:
        """Record the next forward pass of a UNet whose input latent is ``latent_size`` (h, w)."""
        self.active, self.latent_size, self.maps = True, tuple(latent_size), {}

    def stop(self) -> Dict[str, Tensor]:
        """Stop recording and hand over the maps recorded since :meth:`start`."""
        maps, self.active, self.maps = self.maps, False, {}
        return maps

    def record(self, layer: str, probs: Tensor, batch_size: int, heads: int) -> None:
        """Store ``probs`` (batch * heads, h * w, L) of ``layer`` as (batch, heads, h, w, L)."""
        if not self.active:
            return
        if self.latent_size is None:
            raise RuntimeError('CrossAttentionStore.start(latent_size) must be called before recording')
        latent_h, latent_w = self.latent_size
        tokens = probs.shape[1]
        factor = round((latent_h * latent_w / tokens)**0.5)
        height, width = latent_h // max(factor, 1), latent_w // max(factor, 1)
        if height * width != tokens:
            raise RuntimeError(f'cross-attention layer {layer}: {tokens} queries do not form a grid of the latent '
                               f'{latent_h}x{latent_w} downscaled by {factor}')
        self.maps[layer] = probs.reshape(batch_size, heads, height, width, probs.shape[-1])


class _RecordingAttention:
    """A view of a diffusers ``Attention`` whose ``get_attention_scores`` also reports its result."""

    def __init__(self, attn: Attention, report) -> None:
        self._attn = attn
        self._report = report

    def __getattr__(self, name: str):
        return getattr(self._attn, name)

    def get_attention_scores(self, query: Tensor, key: Tensor, attention_mask: Optional[Tensor] = None) -> Tensor:
        probs = self._attn.get_attention_scores(query, key, attention_mask)
        self._report(probs)
        return probs


class CrossAttentionCaptureProcessor(AttnProcessor):
    """diffusers' eager attention processor that records the cross-attention probabilities of its layer.

    Args:
        store: Where the probabilities go (only while ``store.active``).
        layer: Name of the layer, the key of its maps in the store.
    """

    def __init__(self, store: CrossAttentionStore, layer: str) -> None:
        super().__init__()
        self.store = store
        self.layer = layer

    def __call__(self, attn: Attention, hidden_states: Tensor, encoder_hidden_states: Optional[Tensor] = None,
                 attention_mask: Optional[Tensor] = None, temb: Optional[Tensor] = None, *args, **kwargs) -> Tensor:
        if encoder_hidden_states is None:
            raise ValueError(f'CrossAttentionCaptureProcessor on {self.layer}: not a cross-attention layer')
        batch_size = hidden_states.shape[0]

        def report(probs: Tensor) -> None:
            self.store.record(self.layer, probs, batch_size, attn.heads)

        return super().__call__(_RecordingAttention(attn, report), hidden_states, encoder_hidden_states,
                                attention_mask, temb, *args, **kwargs)


def _block_level(processor_name: str, num_levels: int) -> int:
    """Resolution level (0 = the latent's own size) of the UNet block that holds a processor."""
    match = _BLOCK_PATTERN.match(processor_name)
    if match is None:
        raise ValueError(f'cannot tell the resolution of attention processor {processor_name!r}')
    if match.group(1) is None:
        return num_levels - 1
    index = int(match.group(2))
    return index if match.group(1) == 'down_blocks' else num_levels - 1 - index


def cross_attention_layers_at_strides(unet: nn.Module, strides: Sequence[int], latent_stride: int) -> List[str]:
    """Names of the UNet's cross-attention processors whose maps have one of ``strides`` (in input pixels).

    Args:
        unet: A diffusers ``UNet2DConditionModel``.
        strides: Pixel strides of the wanted maps; for Stable Diffusion at 512x512, 16 and 32 select the
            32x32 and 16x16 maps.
        latent_stride: Pixel stride of the UNet's input latent (8 for Stable Diffusion's VAE).
    """
    num_levels = len(unet.down_blocks)
    names = [name for name in unet.attn_processors if '.attn2.' in name]
    chosen = [name for name in names if latent_stride * 2**_block_level(name, num_levels) in set(strides)]
    if not chosen:
        available = sorted({latent_stride * 2**_block_level(n, num_levels) for n in names})
        raise ValueError(f'no cross-attention layer at strides {list(strides)}; this UNet has them at {available}')
    return chosen


def install_cross_attention_capture(unet: nn.Module, layers: Sequence[str]) -> CrossAttentionStore:
    """Give ``layers`` (processor names) a :class:`CrossAttentionCaptureProcessor`; keep all others.

    Returns:
        The store the new processors report to.
    """
    store = CrossAttentionStore()
    processors = dict(unet.attn_processors)
    unknown = sorted(set(layers) - set(processors))
    if unknown:
        raise ValueError(f'install_cross_attention_capture: no attention processor named {unknown[0]!r}')
    for name in layers:
        processors[name] = CrossAttentionCaptureProcessor(store, name)
    unet.set_attn_processor(processors)
    return store

