"""The SCR backbone: Stable Diffusion as a one-step restorer (stage 1 of RASS, after OSEDiff).

LQ image in [-1, 1] -> VAE encoder -> latent z_L -> UNet (SCR LoRA, text prompt) at a fixed timestep ->
one scheduler step to the predicted clean latent z_H. The VAE decoder (kept here, unlike in
:class:`RASSBackbone`) turns z_H into the restored image in :class:`~rass_mmseg.models.heads.SCRHead`.
Trainable: the SCR LoRA adapter and ``conv_in``; VAE, text encoder and UNet base weights are frozen.
"""
import os.path as osp
from typing import List, Optional, Sequence

import torch
from diffusers import DDPMScheduler
from mmseg.registry import MODELS
from torch import Tensor

from ..utils.cross_attention_capture import (CrossAttentionStore, cross_attention_layers_at_strides,
                                             install_cross_attention_capture)
from ..utils.lora import DEFAULT_LORA_TARGETS
from .rass_backbone import RASSBackbone

__all__ = ['SCRBackbone']

SCR_ADAPTER = 'scr'

#: DDPM schedule of Stable Diffusion 2.1-base (its ``scheduler/scheduler_config.json``).
SD21_BASE_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                           beta_schedule='scaled_linear', prediction_type='epsilon', clip_sample=False,
                           steps_offset=1)


@MODELS.register_module()
class SCRBackbone(RASSBackbone):
    """One-step Stable Diffusion restorer with an SCR LoRA adapter and cross-attention capture.

    RASS.md describes the SCR LoRA as three adapters (down blocks + conv_in, up blocks, the rest) of the
    same rank and targets; they cover disjoint modules, so one adapter over all targets is the same model,
    and that is what is trained and exported here.

    Args:
        pretrained: Local diffusers Stable Diffusion folder; its ``scheduler/`` is read too.
        vae: ``AutoencoderKL`` keyword arguments for random initialisation.
        unet: ``UNet2DConditionModel`` keyword arguments for random initialisation.
        text_encoder: ``CLIPTextConfig`` keyword arguments for random initialisation.
        tokenizer: Options of the offline tokenizer used without ``pretrained``.
        scheduler: ``DDPMScheduler`` keyword arguments; defaults to ``pretrained/scheduler`` or Stable
            Diffusion 2.1-base's schedule.
        timestep: The UNet's timestep; 999 as in OSEDiff.
        latent_mode: ``'mode'`` or ``'sample'`` of the VAE posterior (see :class:`RASSBackbone`).
        lora_rank: Rank of the SCR LoRA.
        lora_alpha: LoRA scaling numerator; defaults to ``lora_rank``.
        lora_targets: Module-name suffixes that get LoRA.
        merge_adapters: Adapter folders (as for ``RASSBackbone``) merged into the UNet first.
        train_conv_in: Also train the UNet's ``conv_in``.
        gradient_checkpointing: Recompute UNet activations in the backward pass.
        attention: ``'sdpa'`` or ``'eager'`` for the layers that are not captured.
        attention_strides: Pixel strides of the cross-attention maps captured for the alignment loss
            (16 and 32: the 32x32 and 16x16 maps of a 512x512 input); empty to capture nothing.
        deploy: Build without LoRA layers, for a checkpoint whose SCR LoRA was merged.
        init_cfg: mmengine init config.
    """

    adapter_name = SCR_ADAPTER
    keeps_vae_decoder = True
    taps_features = False

    def __init__(self,
                 pretrained: Optional[str] = None,
                 vae: Optional[dict] = None,
                 unet: Optional[dict] = None,
                 text_encoder: Optional[dict] = None,
                 tokenizer: Optional[dict] = None,
                 scheduler: Optional[dict] = None,
                 timestep: int = 999,
                 latent_mode: str = 'mode',
                 lora_rank: int = 4,
                 lora_alpha: Optional[float] = None,
                 lora_targets: Sequence[str] = DEFAULT_LORA_TARGETS,
                 merge_adapters: Sequence[str] = (),
                 train_conv_in: bool = True,
                 gradient_checkpointing: bool = False,
                 attention: str = 'sdpa',
                 attention_strides: Sequence[int] = (16, 32),
                 deploy: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(pretrained=pretrained, vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer,
                         timestep=timestep, latent_mode=latent_mode, lora_rank=lora_rank, lora_alpha=lora_alpha,
                         lora_targets=lora_targets, merge_adapters=merge_adapters, train_conv_in=train_conv_in,
                         gradient_checkpointing=gradient_checkpointing, attention=attention, deploy=deploy,
                         init_cfg=init_cfg)
        self.scheduler = self._build_scheduler(pretrained, scheduler)
        num_steps = self.scheduler.config.num_train_timesteps
        if not 0 <= timestep < num_steps:
            raise ValueError(f'SCRBackbone timestep={timestep} must lie in [0, {num_steps})')
        self.capture_layers: List[str] = []
        self.attention_store: Optional[CrossAttentionStore] = None
        if attention_strides:
            self.capture_layers = cross_attention_layers_at_strides(self.unet, attention_strides, self.latent_stride)
            self.attention_store = install_cross_attention_capture(self.unet, self.capture_layers)

    @staticmethod
    def _build_scheduler(pretrained: Optional[str], scheduler: Optional[dict]) -> DDPMScheduler:
        if scheduler is not None:
            return DDPMScheduler(**scheduler)
        if pretrained is not None:
            config_file = osp.join(pretrained, 'scheduler', 'scheduler_config.json')
            if not osp.isfile(config_file):
                raise FileNotFoundError(f'SCRBackbone pretrained={pretrained!r}: missing {config_file} (or give '
                                        'scheduler=dict(...))')
            return DDPMScheduler.from_pretrained(pretrained, subfolder='scheduler', local_files_only=True)
        return DDPMScheduler(**SD21_BASE_SCHEDULER)

    def forward(self, images: Tensor, encoder_hidden_states: Tensor, encoder_attention_mask: Optional[Tensor] = None,
                capture_attention: bool = False) -> Tensor:
        """Predict the clean latent of ``images`` in one step.

        Args:
            images: (N, 3, H, W) in [-1, 1]; padded (replicate) to a multiple of ``size_divisor``.
            encoder_hidden_states: Prompt embeddings (N, L, D) or (1, L, D).
            encoder_attention_mask: (N, L), 1 for real tokens and 0 for padding, when prompts of a batch
                have different lengths.
            capture_attention: Record the cross-attention maps of ``capture_layers`` in
                ``attention_store`` (read them with ``attention_store.stop()``).

        Returns:
            Scaled clean latents (N, 4, H' / 8, W' / 8) of the padded size H' x W'.
        """
        images = self._check_and_pad(images)
        if encoder_hidden_states.shape[0] == 1 and images.shape[0] > 1:
            encoder_hidden_states = encoder_hidden_states.expand(images.shape[0], -1, -1)
        with torch.no_grad():
            latents = self.encode_latents(images.to(self.vae.dtype))
        dtype = self.unet.dtype
        latents = latents.to(dtype)
        if capture_attention:
            if self.attention_store is None:
                raise ValueError('SCRBackbone: capture_attention needs attention_strides')
            self.attention_store.start(tuple(latents.shape[-2:]))
        timesteps = torch.full((images.shape[0], ), self.timestep, device=images.device, dtype=torch.long)
        prediction = self.unet(latents, timesteps, encoder_hidden_states=encoder_hidden_states.to(dtype),
                               encoder_attention_mask=encoder_attention_mask).sample
        # pred_original_sample is the deterministic part of the step; the noise the DDPM step adds for
        # prev_sample is not used (a one-step restorer goes straight to t = 0).
        generator = torch.Generator(device=latents.device).manual_seed(0)
        return self.scheduler.step(prediction, self.timestep, latents, generator=generator).pred_original_sample
