"""The SCR backbone: Stable Diffusion as a one-step restorer (stage 1 of RASS, after OSEDiff).

LQ image in [-1, 1] -> VAE encoder -> latent z_L -> UNet (SCR LoRA, text prompt) at a fixed timestep t -> the
clean latent z_H predicted in one step, z_H = (z_L - sqrt(1 - a_t) * eps) / sqrt(a_t) for an epsilon-predicting
UNet (a_t: the schedule's cumulative alpha product). :class:`~rass_mmseg.models.heads.SCRHead` decodes z_H with its
VAE decoder. Trainable: the SCR LoRA adapter and ``conv_in``; VAE, text encoder and UNet base weights are frozen.

With ``regularizer`` the backbone also owns the regulariser of OSEDiff's variational score distillation (VSD, see
:class:`~rass_mmseg.models.losses.VariationalScoreDistillationLoss`): a second LoRA adapter (``vsd``) on the same UNet,
which trains with an optimizer of its own (:meth:`SCRBackbone.regularizer_parameters`). One UNet then serves three
models (:mod:`~rass_mmseg.models.adapters.adapter_views`): the restorer (``forward``: the SCR adapter and the trained
``conv_in``), the frozen pretrained model (:meth:`SCRBackbone.pretrained_noise`: no adapter, the original
``conv_in``) and the regulariser (:meth:`SCRBackbone.regularizer_noise`: the ``vsd`` adapter, the original
``conv_in``).
"""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from diffusers import DDPMScheduler
from mmseg.registry import MODELS
from torch import Tensor, nn

from ..adapters.adapter_views import active_adapters, call_with_weights
from ..adapters.lora_adapters import DEFAULT_LORA_TARGETS, add_lora_adapter, lora_parameter_names
from ..utils.cross_attention_capture import (
    CrossAttentionStore,
    cross_attention_layers_at_strides,
    install_cross_attention_capture,
)
from .stable_diffusion_backbone import StableDiffusionBackbone

__all__ = ['SCRBackbone', 'SD21_BASE_SCHEDULER']

#: DDPM schedule of Stable Diffusion 2.1-base (its ``scheduler/scheduler_config.json``).
SD21_BASE_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                           beta_schedule='scaled_linear', prediction_type='epsilon', clip_sample=False,
                           steps_offset=1)

#: Options of the VSD regulariser's LoRA and their defaults (OSEDiff: the restorer's rank and targets).
REGULARIZER_DEFAULTS = dict(lora_rank=4, lora_alpha=8.0, lora_targets=DEFAULT_LORA_TARGETS)


@MODELS.register_module()
class SCRBackbone(StableDiffusionBackbone):
    """One-step Stable Diffusion restorer with an SCR LoRA adapter and cross-attention capture.

    RASS.md describes the SCR LoRA as three adapters (down blocks + conv_in, up blocks, the rest) of the
    same rank and targets; they cover disjoint modules, so one adapter over all targets is the same model,
    and that is what is trained and exported here.

    Args:
        scheduler: ``DDPMScheduler`` keyword arguments (only its noise schedule and ``prediction_type`` are used);
            defaults to ``pretrained/scheduler`` or Stable Diffusion 2.1-base's schedule.
        timestep: The UNet's timestep; 999 as in OSEDiff.
        attention_strides: Pixel strides of the cross-attention maps captured for the alignment loss (16 and 32:
            the 32x32 and 16x16 maps of a 512x512 input); empty to capture nothing.
        regularizer: The VSD regulariser's LoRA, ``dict(lora_rank=4, lora_alpha=8.0, lora_targets=...)`` (every key
            optional; the defaults are :data:`REGULARIZER_DEFAULTS`), for a segmentor with a ``vsd_loss``; None: no
            regulariser.
        **kwargs: Everything else of :class:`StableDiffusionBackbone`.
    """

    adapter_name = 'scr'
    #: Name of the VSD regulariser's LoRA adapter.
    regularizer_adapter_name = 'vsd'

    def __init__(self,
                 scheduler: Optional[dict] = None,
                 timestep: int = 999,
                 attention_strides: Sequence[int] = (16, 32),
                 regularizer: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(timestep=timestep, **kwargs)
        with torch.device('cpu'):  # plain numbers, also when the model is built on the meta device
            schedule = self._build_scheduler(self.pretrained, scheduler)
        num_steps = schedule.config.num_train_timesteps
        if not 0 <= timestep < num_steps:
            raise ValueError(f'SCRBackbone timestep={timestep} must lie in [0, {num_steps})')
        self.prediction_type = schedule.config.prediction_type
        if self.prediction_type not in ('epsilon', 'v_prediction', 'sample'):
            raise ValueError(f'SCRBackbone: scheduler prediction_type {self.prediction_type!r} is not supported '
                             "(use 'epsilon', 'v_prediction' or 'sample')")
        if schedule.config.get('thresholding', False):
            raise ValueError('SCRBackbone: scheduler thresholding is not supported for one-step restoration')
        self.clip_sample_range = schedule.config.clip_sample_range if schedule.config.clip_sample else None
        self.num_train_timesteps = num_steps
        #: The noise schedule (diffusers' ``DDPMScheduler``); ``scheduler.add_noise`` is the forward diffusion.
        self.scheduler = schedule
        self.register_buffer('alphas_cumprod', schedule.alphas_cumprod.float(), persistent=False)
        self.capture_layers: List[str] = []
        self.attention_store: Optional[CrossAttentionStore] = None
        if attention_strides:
            self.capture_layers = cross_attention_layers_at_strides(self.unet, attention_strides, self.latent_stride)
            self.attention_store = install_cross_attention_capture(self.unet, self.capture_layers)
        self._original_names: List[str] = []
        self.has_regularizer = regularizer is not None
        if self.has_regularizer:
            self._add_regularizer(regularizer)

    def _add_regularizer(self, options: dict) -> None:
        """Add the regulariser adapter to the UNet and keep the original weights of the modules trained in full."""
        unknown = set(options) - set(REGULARIZER_DEFAULTS)
        if unknown:
            raise ValueError(f'SCRBackbone regularizer: unknown keys {sorted(unknown)}; expected some of '
                             f'{sorted(REGULARIZER_DEFAULTS)}')
        options = {**REGULARIZER_DEFAULTS, **options}
        unet = self.unet
        self._original_names = [name for name, param in unet.named_parameters()
                                if param.requires_grad and 'lora_' not in name]
        for index, name in enumerate(self._original_names):  # buffers follow .to(device); never saved
            original = unet.get_parameter(name).detach().clone()
            self.register_buffer(f'original_weight_{index}', original, persistent=False)
        flags = {name: param.requires_grad for name, param in unet.named_parameters()}
        add_lora_adapter(unet, self.regularizer_adapter_name, options['lora_rank'], options['lora_alpha'],
                         tuple(options['lora_targets']))
        if not self.deploy:  # add_adapter activates the new adapter: the restorer keeps its own
            unet.set_adapter(self.adapter_name)
        regularizer = set(lora_parameter_names(unet, self.regularizer_adapter_name))
        for name, param in unet.named_parameters():
            param.requires_grad = flags.get(name, False) or name in regularizer

    def regularizer_parameters(self) -> List[nn.Parameter]:
        """The VSD regulariser's trainable parameters (its LoRA), in the model's order; empty without one."""
        if not self.has_regularizer:
            return []
        names = set(lora_parameter_names(self.unet, self.regularizer_adapter_name))
        return [param for name, param in self.unet.named_parameters() if name in names]

    def _original_weights(self) -> Dict[str, Tensor]:
        """The weights before training of the UNet modules the restorer trains in full (``conv_in``), by name."""
        return {name: getattr(self, f'original_weight_{index}') for index, name in enumerate(self._original_names)}

    def _check_regularizer(self) -> None:
        if not self.has_regularizer:
            raise ValueError('SCRBackbone: the pretrained and regulariser views need regularizer=dict(...)')

    def pretrained_noise(self, noisy: Tensor, timesteps: Tensor, encoder_hidden_states: Tensor,
                         encoder_attention_mask: Optional[Tensor] = None) -> Tensor:
        """The frozen pretrained UNet's noise prediction (no adapter, the original ``conv_in``; no guidance).

        Args:
            noisy: Noisy latents (N, C, h, w) in the UNet's dtype.
            timesteps: Their (N, ) timesteps.
            encoder_hidden_states: Prompt embeddings (N, L, D).
            encoder_attention_mask: Their (N, L) attention mask, or None.
        """
        self._check_regularizer()
        with active_adapters(self.unet, None):
            return call_with_weights(self.unet, self._original_weights(), noisy, timesteps,
                                     encoder_hidden_states=encoder_hidden_states,
                                     encoder_attention_mask=encoder_attention_mask).sample

    def regularizer_noise(self, noisy: Tensor, timesteps: Tensor, encoder_hidden_states: Tensor,
                          encoder_attention_mask: Optional[Tensor] = None) -> Tensor:
        """The regulariser's noise prediction (UNet + ``vsd`` adapter, the original ``conv_in``); arguments as
        :meth:`pretrained_noise`."""
        self._check_regularizer()
        with active_adapters(self.unet, [self.regularizer_adapter_name]):
            return call_with_weights(self.unet, self._original_weights(), noisy, timesteps,
                                     encoder_hidden_states=encoder_hidden_states,
                                     encoder_attention_mask=encoder_attention_mask).sample

    def conditioning(self, batch_size: int, encoder_hidden_states: Optional[Tensor], device) -> Tensor:
        """The prompt embeddings (N, L, D) that :meth:`forward` gives the UNet for a batch of ``batch_size`` images:
        ``encoder_hidden_states`` ((N, L, D) or (1, L, D)), or None for the prompt source's, in the UNet's dtype."""
        return self._conditioning(batch_size, encoder_hidden_states, device)

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

    def _alpha_prods(self, timesteps: Tensor, like: Tensor) -> Tuple[Tensor, Tensor]:
        """sqrt(a_t) and sqrt(1 - a_t) of per-image ``timesteps``, shaped to broadcast over ``like``."""
        alpha_prod = self.alphas_cumprod.to(like.device)[timesteps].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))
        return alpha_prod.sqrt(), (1 - alpha_prod).sqrt()

    def clean_latents(self, noisy: Tensor, prediction: Tensor, timesteps: Tensor) -> Tensor:
        """The clean latent x0 that the UNet's ``prediction`` at per-image ``timesteps`` implies for ``noisy``."""
        sqrt_alpha, sqrt_one_minus = self._alpha_prods(timesteps, noisy)
        if self.prediction_type == 'epsilon':
            clean = (noisy - sqrt_one_minus * prediction) / sqrt_alpha
        elif self.prediction_type == 'v_prediction':
            clean = sqrt_alpha * noisy - sqrt_one_minus * prediction
        else:
            clean = prediction
        if self.clip_sample_range is not None:
            clean = clean.clamp(-self.clip_sample_range, self.clip_sample_range)
        return clean

    def forward(self, inputs: Tensor, encoder_hidden_states: Optional[Tensor] = None,
                encoder_attention_mask: Optional[Tensor] = None, capture_attention: bool = False) -> Tensor:
        """Predict the clean latent of ``inputs`` in one step.

        Args:
            inputs: (N, 3, H, W) in [-1, 1]; padded (replicate) to a multiple of ``size_divisor``.
            encoder_hidden_states: Prompt embeddings (N, L, D) or (1, L, D); None uses ``prompt_source``'s.
            encoder_attention_mask: (N, L), 1 for real tokens and 0 for padding, when prompts of a batch
                have different lengths.
            capture_attention: Record the cross-attention maps of ``capture_layers`` in
                ``attention_store`` (read them with ``attention_store.stop()``).

        Returns:
            Scaled clean latents (N, C, H' / 8, W' / 8) of the padded size H' x W'.
        """
        images = self.check_and_pad(inputs)
        conditioning = self.conditioning(images.shape[0], encoder_hidden_states, images.device)
        latents = self.encode_latents(images).to(self.unet.dtype)
        if capture_attention:
            if self.attention_store is None:
                raise ValueError('SCRBackbone: capture_attention needs attention_strides')
            self.attention_store.start(tuple(latents.shape[-2:]))
        timesteps = self.timesteps(images.shape[0], images.device)
        prediction = self.run_unet(latents, timesteps, encoder_hidden_states=conditioning,
                                   encoder_attention_mask=encoder_attention_mask).sample
        return self.clean_latents(latents, prediction, timesteps)
