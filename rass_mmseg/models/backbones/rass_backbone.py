"""The RASS backbone: a frozen Stable Diffusion VAE encoder + UNet with LoRA, read out by forward hooks.

RASS (Restoration Adaptation for Semantic Segmentation on low-quality images, arXiv 2602.14042),
stage 2: a low-quality image in [-1, 1] is encoded by the VAE encoder, its latent is run once through
the UNet at a small timestep (default 1) with a text prompt, and six feature maps are taken: two
VAE-encoder down-block outputs and the four UNet up-block outputs. The features are read with forward
hooks on the unmodified diffusers modules. The restoration (SCR) LoRA adapters are merged into the UNet
weights; a fresh segmentation LoRA and ``conv_in`` are the only trainable weights.
"""
import math
import os
import os.path as osp
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor

from ..utils.lora import (DEFAULT_LORA_TARGETS, add_lora_adapter, lora_parameter_names, merge_injected_adapter,
                          merge_lora_adapter, save_lora_adapter)
from ..utils.sd_components import build_sd_components
from ..utils.text_encoding import PromptEncoding, encode_phrases

__all__ = ['RASSBackbone']

SEG_ADAPTER = 'seg'


def _store_tap_output(module: torch.nn.Module, args: tuple, output: Tensor) -> None:
    """Forward hook: keep the block's output on the block itself (survives deepcopy, e.g. for EMA)."""
    module._rass_tap_output = output


@MODELS.register_module()
class RASSBackbone(BaseModule):
    """Stable Diffusion feature backbone of RASS.

    Input: images in [-1, 1], shape (N, 3, H, W), any H and W (padded internally to a multiple of
    ``size_divisor`` and cropped back, so a feature of stride s has size ceil(H / s) x ceil(W / s)).
    Output: a list of feature maps, the VAE taps first then the UNet taps; with Stable Diffusion 2.1-base
    channels [256, 512, 1280, 1280, 640, 320] at strides [4, 8, 32, 16, 8, 8] (see ``feature_channels``
    and ``feature_strides``).

    Args:
        pretrained: Local diffusers Stable Diffusion folder (vae/, unet/, text_encoder/, tokenizer/).
        vae: ``diffusers.AutoencoderKL`` keyword arguments, for random initialisation without ``pretrained``.
        unet: ``diffusers.UNet2DConditionModel`` keyword arguments, likewise.
        text_encoder: ``transformers.CLIPTextConfig`` keyword arguments, likewise.
        tokenizer: Options of the offline byte-level CLIP tokenizer used without ``pretrained``.
        timestep: UNet timestep of the single forward pass.
        latent_mode: ``'mode'`` (deterministic mean of the VAE posterior) or ``'sample'`` (a sample
            while training, the mode in eval).
        vae_feature_indices: Which VAE encoder down blocks are tapped.
        unet_feature_indices: Which UNet up blocks are tapped.
        lora_rank: Rank of the segmentation LoRA.
        lora_alpha: LoRA scaling numerator; defaults to ``lora_rank`` (scale 1).
        lora_targets: Module-name suffixes that get LoRA (peft ``target_modules``).
        merge_adapters: Adapter folders (SCR LoRA) written by ``export_adapter``, in this layout or the earlier
            one, or plain peft adapter folders; merged into the UNet before the segmentation LoRA is added.
        train_conv_in: Also train the UNet's ``conv_in``, as RASS does.
        gradient_checkpointing: Recompute UNet activations in the backward pass to save memory.
        deploy: Build the UNet without LoRA layers, to load a checkpoint whose Seg LoRA was merged by
            ``tools/merge_lora.py`` (no peft at inference).
        attention: ``'sdpa'`` (PyTorch scaled_dot_product_attention) or ``'eager'`` (plain matmul+softmax).
        init_cfg: mmengine init config; keep None so pretrained SD weights are not re-initialised.
    """

    #: Name of the trainable LoRA adapter.
    adapter_name = SEG_ADAPTER
    #: RASS never decodes; the SCR restorer (a subclass) keeps the VAE decoder.
    keeps_vae_decoder = False
    #: Whether the backbone returns intermediate features (``SCRBackbone`` returns the UNet's output only, so
    #: its ``*_feature_indices`` are not used nor checked against the VAE's and UNet's depth).
    taps_features = True

    def __init__(self,
                 pretrained: Optional[str] = None,
                 vae: Optional[dict] = None,
                 unet: Optional[dict] = None,
                 text_encoder: Optional[dict] = None,
                 tokenizer: Optional[dict] = None,
                 timestep: int = 1,
                 latent_mode: str = 'mode',
                 vae_feature_indices: Sequence[int] = (1, 3),
                 unet_feature_indices: Sequence[int] = (0, 1, 2, 3),
                 lora_rank: int = 4,
                 lora_alpha: Optional[float] = None,
                 lora_targets: Sequence[str] = DEFAULT_LORA_TARGETS,
                 merge_adapters: Sequence[str] = (),
                 train_conv_in: bool = True,
                 gradient_checkpointing: bool = False,
                 attention: str = 'sdpa',
                 deploy: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if latent_mode not in ('mode', 'sample'):
            raise ValueError(f"RASSBackbone latent_mode must be 'mode' or 'sample', got {latent_mode!r}")
        if attention not in ('sdpa', 'eager'):
            raise ValueError(f"RASSBackbone attention must be 'sdpa' or 'eager', got {attention!r}")
        self.vae, self.unet, self.text_encoder, self.tokenizer = build_sd_components(
            pretrained, vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer)
        if not self.keeps_vae_decoder:
            self.vae.decoder = None
            self.vae.post_quant_conv = None
        self.timestep = timestep
        self.latent_mode = latent_mode
        self.vae_feature_indices, self.unet_feature_indices = [], []
        if self.taps_features:
            self.vae_feature_indices = self._check_indices('vae_feature_indices', vae_feature_indices,
                                                           len(self.vae.encoder.down_blocks))
            self.unet_feature_indices = self._check_indices('unet_feature_indices', unet_feature_indices,
                                                            len(self.unet.up_blocks))
        self.unet.set_attn_processor(AttnProcessor2_0() if attention == 'sdpa' else AttnProcessor())

        self.requires_grad_(False)
        for index, path in enumerate(merge_adapters):
            self.unet = merge_lora_adapter(self.unet, path, name=f'merged{index}')
        self.deploy = deploy
        if not deploy:
            add_lora_adapter(self.unet, self.adapter_name, lora_rank, lora_alpha or lora_rank, lora_targets)
        seg_lora = set(lora_parameter_names(self.unet, self.adapter_name))
        for name, param in self.unet.named_parameters():
            param.requires_grad = name in seg_lora
        self.train_conv_in = train_conv_in and not deploy
        if self.train_conv_in:
            conv_in = self.unet.conv_in.get_base_layer() if hasattr(self.unet.conv_in, 'get_base_layer') \
                else self.unet.conv_in
            conv_in.requires_grad_(True)
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()

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

    @property
    def latent_stride(self) -> int:
        """Pixel stride of the VAE latent (8 for Stable Diffusion)."""
        return 2 ** sum(1 for b in self.vae.encoder.down_blocks if b.downsamplers is not None)

    @property
    def size_divisor(self) -> int:
        """Inputs are padded to a multiple of this so every UNet level has an integer size."""
        unet_down = sum(1 for b in self.unet.down_blocks if getattr(b, 'downsamplers', None) is not None)
        return self.latent_stride * 2 ** unet_down

    def _tap_geometry(self):
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

    def merge_seg_lora(self) -> None:
        """Fold the trainable LoRA into the UNet weights and drop the LoRA layers (then ``deploy`` is True)."""
        merge_injected_adapter(self.unet, self.adapter_name)
        self.unet.requires_grad_(False)
        self.deploy = True

    def export_adapter(self, out_dir: str) -> None:
        """Write the trainable LoRA (and ``conv_in`` when it is trained) as an adapter folder that
        ``merge_adapters``, plain peft and plain diffusers accept (see :func:`save_lora_adapter`). Refuses a
        folder that already holds files."""
        if self.deploy:
            raise ValueError(f'{type(self).__name__}: deploy=True holds no LoRA adapter to export')
        if osp.isdir(out_dir) and os.listdir(out_dir):
            raise FileExistsError(f'adapter folder {out_dir} is not empty; choose a new folder')
        save_lora_adapter(self.unet, self.adapter_name, out_dir, trained_modules=('conv_in', ) if self.train_conv_in
                          else ())

    def encode_prompt(self, phrases: Sequence[str]) -> PromptEncoding:
        """Encode prompt phrases with the frozen text encoder, in windows (never truncated)."""
        return encode_phrases(phrases, self.tokenizer, self.text_encoder)

    def train(self, mode: bool = True) -> 'RASSBackbone':
        """Only the UNet follows ``mode``; the frozen VAE and text encoder always stay in eval mode."""
        super().train(mode)
        self.vae.eval()
        self.text_encoder.eval()
        return self

    def encode_latents(self, images: Tensor) -> Tensor:
        """VAE-encode images in [-1, 1] into scaled latents."""
        posterior = self.vae.encode(images).latent_dist
        use_sample = self.latent_mode == 'sample' and self.training
        latents = posterior.sample() if use_sample else posterior.mode()
        return latents * self.vae.config.scaling_factor

    def _check_and_pad(self, images: Tensor) -> Tensor:
        """Check shape and values of an input batch and pad it (replicate) to a multiple of ``size_divisor``."""
        name = type(self).__name__
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f'{name} expects images of shape (N, 3, H, W), got {tuple(images.shape)}')
        finite = torch.isfinite(images)
        if not finite.all():
            raise ValueError(f'{name}: the input batch holds {int((~finite).sum())} NaN/inf values; '
                             'check the images and the data preprocessor')
        height, width = images.shape[-2:]
        divisor = self.size_divisor
        pad_h, pad_w = (-height) % divisor, (-width) % divisor
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h), mode='replicate')
        return images

    def forward(self, images: Tensor, encoder_hidden_states: Tensor) -> List[Tensor]:
        """Extract the RASS features.

        Args:
            images: (N, 3, H, W) in [-1, 1].
            encoder_hidden_states: Prompt embeddings, (N, L, D) or (1, L, D) broadcast to the batch.

        Returns:
            Feature maps in tap order (VAE taps, then UNet taps), each (N, C_i, ceil(H/s_i), ceil(W/s_i)).
        """
        height, width = images.shape[-2:]
        images = self._check_and_pad(images)
        dtype = self.unet.dtype
        if encoder_hidden_states.shape[0] == 1 and images.shape[0] > 1:
            encoder_hidden_states = encoder_hidden_states.expand(images.shape[0], -1, -1)
        blocks = self._tapped_blocks()
        try:
            with torch.no_grad():
                latents = self.encode_latents(images.to(self.vae.dtype))
            timesteps = torch.full((images.shape[0], ), self.timestep, device=images.device, dtype=torch.long)
            self.unet(latents.to(dtype), timesteps, encoder_hidden_states=encoder_hidden_states.to(dtype))
            features = [block._rass_tap_output for block in blocks]
        finally:
            for block in blocks:
                block.__dict__.pop('_rass_tap_output', None)
        return [f[..., :math.ceil(height / s), :math.ceil(width / s)] for f, s in zip(features, self.feature_strides)]
