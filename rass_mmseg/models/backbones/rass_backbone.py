"""The RASS backbone: Stable Diffusion VAE-encoder and UNet features of a low-quality image, read by forward hooks.

RASS (Restoration Adaptation for Semantic Segmentation on low-quality images, arXiv 2602.14042), stage 2: a
low-quality image is encoded by the VAE encoder, its latent is run once through the UNet at a small timestep
(default 1) with the text prompt, and six feature maps are taken: two VAE-encoder down-block outputs and the four
UNet up-block outputs. The features are read with forward hooks on the unmodified diffusers modules. The
restoration (SCR) LoRA adapters are merged into the UNet weights; a fresh segmentation LoRA and ``conv_in`` are the
only trainable weights.

It honours mmseg's backbone contract (``forward(inputs) -> features``), so it drops into any mmseg segmentor
(``EncoderDecoder`` included) with a neck that maps its six features to what the head expects
(:class:`~rass_mmseg.models.necks.FeatureProjection`).
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
from mmseg.registry import MODELS
from torch import Tensor

from .stable_diffusion_backbone import StableDiffusionBackbone

__all__ = ['RASSBackbone']


def _store_tap_output(module: torch.nn.Module, args: tuple, output: Tensor) -> None:
    """Forward hook: keep the block's output on the block itself (survives deepcopy, e.g. for EMA)."""
    module._rass_tap_output = output


@MODELS.register_module()
class RASSBackbone(StableDiffusionBackbone):
    """Stable Diffusion feature backbone of RASS.

    Input: images (N, 3, H, W) in [-1, 1] (or normalised as ``input_normalization`` says), any H and W (padded
    internally to a multiple of ``size_divisor`` and cropped back, so a feature of stride s has size
    ceil(H / s) x ceil(W / s)). Output: a list of feature maps, the VAE taps first then the UNet taps; with Stable
    Diffusion 2.1-base channels [256, 512, 1280, 1280, 640, 320] at strides [4, 8, 32, 16, 8, 8] (see
    ``feature_channels`` and ``feature_strides``).

    Args:
        vae_feature_indices: Which VAE encoder down blocks are tapped.
        unet_feature_indices: Which UNet up blocks are tapped.
        timestep: UNet timestep of the single forward pass (1 in RASS).
        **kwargs: Everything else of :class:`StableDiffusionBackbone` (``pretrained`` or the component dicts,
            ``prompt_source``, LoRA settings, ``merge_adapters``, ...).
    """

    adapter_name = 'seg'

    def __init__(self,
                 vae_feature_indices: Sequence[int] = (1, 3),
                 unet_feature_indices: Sequence[int] = (0, 1, 2, 3),
                 timestep: int = 1,
                 **kwargs) -> None:
        super().__init__(timestep=timestep, **kwargs)
        self.vae_feature_indices = self._check_indices('vae_feature_indices', vae_feature_indices,
                                                       len(self.vae.encoder.down_blocks))
        self.unet_feature_indices = self._check_indices('unet_feature_indices', unet_feature_indices,
                                                        len(self.unet.up_blocks))
        for block in self._tapped_blocks():
            block.register_forward_hook(_store_tap_output)
        self.feature_channels, self.feature_strides = self._tap_geometry()

    @staticmethod
    def _check_indices(key: str, indices: Sequence[int], count: int) -> List[int]:
        indices = list(indices)
        if not indices or any(not 0 <= i < count for i in indices):
            raise ValueError(f'RASSBackbone {key}={indices} must be non-empty indices in [0, {count})')
        return indices

    def _tapped_blocks(self) -> List[torch.nn.Module]:
        return ([self.vae.encoder.down_blocks[i] for i in self.vae_feature_indices] +
                [self.unet.up_blocks[i] for i in self.unet_feature_indices])

    def _tap_geometry(self) -> Tuple[List[int], List[int]]:
        channels, strides = [], []
        for i in self.vae_feature_indices:
            block = self.vae.encoder.down_blocks[i]
            channels.append(block.resnets[-1].out_channels)
            strides.append(2 ** sum(1 for b in self.vae.encoder.down_blocks[:i + 1] if b.downsamplers is not None))
        unet_down = self.size_divisor // self.latent_stride
        for i in self.unet_feature_indices:
            block = self.unet.up_blocks[i]
            channels.append(block.resnets[-1].out_channels)
            ups = sum(1 for b in self.unet.up_blocks[:i + 1] if getattr(b, 'upsamplers', None) is not None)
            strides.append(self.latent_stride * unet_down // 2 ** ups)
        return channels, strides

    def forward(self, inputs: Tensor, encoder_hidden_states: Optional[Tensor] = None) -> List[Tensor]:
        """Extract the RASS features.

        Args:
            inputs: (N, 3, H, W) images in [-1, 1].
            encoder_hidden_states: Prompt embeddings (N, L, D) or (1, L, D); None uses ``prompt_source``'s (with
                ``ImageTagsPrompt``: the tags of ``inputs`` themselves, :meth:`image_prompt_embeddings`).

        Returns:
            Feature maps in tap order (VAE taps, then UNet taps), each (N, C_i, ceil(H/s_i), ceil(W/s_i)).
        """
        height, width = inputs.shape[-2:]
        if encoder_hidden_states is None and self.prompts_with_images:
            encoder_hidden_states = self.image_prompt_embeddings(inputs)
        images = self.check_and_pad(inputs)
        conditioning = self._conditioning(images.shape[0], encoder_hidden_states, images.device)
        blocks = self._tapped_blocks()
        try:
            latents = self.encode_latents(images)
            self.run_unet(latents.to(self.unet.dtype), self.timesteps(images.shape[0], images.device),
                          encoder_hidden_states=conditioning)
            features = [block._rass_tap_output for block in blocks]
        finally:
            for block in blocks:
                block.__dict__.pop('_rass_tap_output', None)
        return [f[..., :math.ceil(height / s), :math.ceil(width / s)] for f, s in zip(features, self.feature_strides)]
