"""VSD: OSEDiff's variational score distillation, the third term of the one-step restorer's loss (optional in SCR).

OSEDiff (arXiv 2406.08177) regularises its one-step restorer with the score of the frozen pretrained Stable
Diffusion model: the restored latent z is noised to a random timestep t, and the clean latent predicted by the
frozen UNet (classifier-free guidance with a negative prompt) is compared with the one predicted by a *regulariser*,
the same UNet with its own LoRA, trained by the ordinary diffusion loss on the restorer's (detached) outputs:

    grad = (x0_regulariser(z_t) - x0_pretrained(z_t)) / mean|z - x0_pretrained(z_t)|
    loss_vsd = mean((z - stopgrad(z - grad)) ** 2)          (its gradient w.r.t. z is 2 * grad / numel)
    loss_vsd_reg = mean((eps_regulariser(z_t') - eps) ** 2)  on z.detach(), t' over all timesteps

Facts from the OSEDiff code: t in [20, 980) for VSD, [0, 1000) for the regulariser's loss, guidance 7.5, both loss
weights 1, the regulariser's LoRA of the restorer's rank and targets, its own AdamW. Here one UNet serves the three
models (the SCR adapter, no adapter, the ``vsd`` adapter; see :mod:`~rass_mmseg.models.utils.adapter_views`) instead
of OSEDiff's three UNet copies; the pretrained views use the original ``conv_in`` (the generator trains its own).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import Tensor, nn

from ..utils.adapter_views import active_adapters, call_with_weights
from ..utils.lora import DEFAULT_LORA_TARGETS, add_lora_adapter, lora_parameter_names

__all__ = ['VariationalScoreDistillationLoss', 'REGULARIZER_ADAPTER']

REGULARIZER_ADAPTER = 'vsd'


@MODELS.register_module()
class VariationalScoreDistillationLoss(nn.Module):
    """VSD loss of a one-step SD restorer and the diffusion loss of its regulariser LoRA.

    Call :meth:`attach` once with the :class:`~rass_mmseg.models.backbones.SCRBackbone` (the segmentor does): it
    adds the regulariser adapter to the backbone's UNet and keeps the original weights of the modules the generator
    trains in full.

    Args:
        loss_weight: Weight of the VSD term (OSEDiff's ``lambda_vsd``).
        regularizer_weight: Weight of the regulariser's diffusion loss (``lambda_vsd_lora``).
        guidance_scale: Classifier-free guidance of the pretrained prediction (``cfg_vsd``).
        timestep_range: [low, high) of the VSD timesteps.
        negative_prompt: The unconditional prompt of the guidance (OSEDiff's ``neg_prompt``).
        lora_rank: Rank of the regulariser's LoRA.
        lora_alpha: Its scaling numerator.
        lora_targets: Its target modules.
        loss_name: Key of the VSD term in the losses dict.
    """

    def __init__(self,
                 loss_weight: float = 1.0,
                 regularizer_weight: float = 1.0,
                 guidance_scale: float = 7.5,
                 timestep_range: Tuple[int, int] = (20, 980),
                 negative_prompt: str = '',
                 lora_rank: int = 4,
                 lora_alpha: float = 8.0,
                 lora_targets: Sequence[str] = DEFAULT_LORA_TARGETS,
                 loss_name: str = 'loss_vsd') -> None:
        super().__init__()
        low, high = timestep_range
        if not 0 <= low < high:
            raise ValueError(f'VariationalScoreDistillationLoss timestep_range must be [low, high) with 0 <= low < '
                             f'high, got {timestep_range}')
        self.loss_weight, self.regularizer_weight = loss_weight, regularizer_weight
        self.guidance_scale = guidance_scale
        self.timestep_range = (int(low), int(high))
        self.negative_prompt = negative_prompt
        self.lora_rank, self.lora_alpha, self.lora_targets = lora_rank, lora_alpha, tuple(lora_targets)
        self._loss_name = loss_name
        self._original_names: List[str] = []

    @property
    def loss_name(self) -> str:
        """Key of the VSD term in the losses dict."""
        return self._loss_name

    def attach(self, backbone: nn.Module) -> None:
        """Add the regulariser adapter to ``backbone.unet`` and keep the original weights of fully trained modules."""
        unet = backbone.unet
        if backbone.num_train_timesteps < self.timestep_range[1]:
            raise ValueError(f'VariationalScoreDistillationLoss timestep_range {self.timestep_range} exceeds the '
                             f"scheduler's {backbone.num_train_timesteps} timesteps")
        self._original_names = [name for name, param in unet.named_parameters()
                                if param.requires_grad and 'lora_' not in name]
        for index, name in enumerate(self._original_names):  # buffers follow .to(device); never saved
            original = unet.get_parameter(name).detach().clone()
            self.register_buffer(f'original_weight_{index}', original, persistent=False)
        flags = {name: param.requires_grad for name, param in unet.named_parameters()}
        active = {name: list(m.active_adapters) for name, m in unet.named_modules() if isinstance(m, BaseTunerLayer)}
        add_lora_adapter(unet, REGULARIZER_ADAPTER, self.lora_rank, self.lora_alpha, self.lora_targets)
        for name, module in unet.named_modules():  # peft activates the new adapter: the generator keeps its own
            if name in active:
                module.set_adapter(active[name])
        regularizer = set(lora_parameter_names(unet, REGULARIZER_ADAPTER))
        for name, param in unet.named_parameters():
            param.requires_grad = flags.get(name, False) or name in regularizer

    def _originals(self) -> Dict[str, Tensor]:
        return {name: getattr(self, f'original_weight_{index}') for index, name in enumerate(self._original_names)}

    def pretrained_noise(self, backbone: nn.Module, noisy: Tensor, timesteps: Tensor, conditioning: Tensor,
                         mask: Optional[Tensor]) -> Tensor:
        """The frozen pretrained UNet's noise prediction with classifier-free guidance."""
        unet = backbone.unet
        unconditional = backbone.encode_prompt([self.negative_prompt]).embeddings.to(conditioning)
        unconditional = unconditional.expand(noisy.shape[0], -1, -1)
        with active_adapters(unet, None):
            uncond = call_with_weights(unet, self._originals(), noisy, timesteps, encoder_hidden_states=unconditional)
            cond = call_with_weights(unet, self._originals(), noisy, timesteps, encoder_hidden_states=conditioning,
                                     encoder_attention_mask=mask)
        return uncond.sample + self.guidance_scale * (cond.sample - uncond.sample)

    def regularizer_noise(self, backbone: nn.Module, noisy: Tensor, timesteps: Tensor, conditioning: Tensor,
                          mask: Optional[Tensor]) -> Tensor:
        """The regulariser's (UNet + ``vsd`` adapter, original ``conv_in``) noise prediction."""
        with active_adapters(backbone.unet, [REGULARIZER_ADAPTER]):
            return call_with_weights(backbone.unet, self._originals(), noisy, timesteps,
                                     encoder_hidden_states=conditioning, encoder_attention_mask=mask).sample

    def forward(self, backbone: nn.Module, latents: Tensor, conditioning: Tensor,
                mask: Optional[Tensor] = None) -> Tensor:
        """The weighted VSD term of restored latents ``latents`` (N, C, h, w), differentiable w.r.t. them.

        Args:
            backbone: The SCR backbone (its UNet, schedule and prompt encoder).
            latents: The restorer's clean latents (scaled, as the UNet sees them).
            conditioning: The restorer's prompt embeddings, (N, L, D).
            mask: Their (N, L) attention mask, or None.
        """
        timesteps = torch.randint(*self.timestep_range, (latents.shape[0], ), device=latents.device)
        noise = torch.randn_like(latents)
        noisy = backbone.add_noise(latents.detach(), noise, timesteps)
        conditioning = conditioning.to(device=latents.device, dtype=backbone.unet.dtype)
        with torch.no_grad():
            noisy_input = noisy.to(backbone.unet.dtype)
            pretrained = backbone.clean_latents(noisy, self.pretrained_noise(backbone, noisy_input, timesteps,
                                                                            conditioning, mask).float(), timesteps)
            regularizer = backbone.clean_latents(noisy, self.regularizer_noise(backbone, noisy_input, timesteps,
                                                                              conditioning, mask).float(), timesteps)
            weighting = (latents.detach().float() - pretrained).abs().mean(dim=(1, 2, 3), keepdim=True)
            grad = (regularizer - pretrained) / weighting.clamp_min(1e-8)
        latents = latents.float()
        return self.loss_weight * F.mse_loss(latents, (latents - grad).detach())

    def regularizer_loss(self, backbone: nn.Module, latents: Tensor, conditioning: Tensor,
                         mask: Optional[Tensor] = None) -> Tensor:
        """The weighted diffusion loss that trains the regulariser adapter on the restorer's detached latents."""
        latents = latents.detach()
        timesteps = torch.randint(0, backbone.num_train_timesteps, (latents.shape[0], ), device=latents.device)
        noise = torch.randn_like(latents)
        noisy = backbone.add_noise(latents, noise, timesteps).to(backbone.unet.dtype)
        prediction = self.regularizer_noise(backbone, noisy, timesteps, conditioning.detach().to(noisy), mask)
        return self.regularizer_weight * F.mse_loss(prediction.float(), noise.float())
