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
models: :class:`~rass_mmseg.models.backbones.SCRBackbone` with ``regularizer`` owns the regulariser adapter and its
views (``pretrained_noise``, ``regularizer_noise``) instead of OSEDiff's three UNet copies. This loss holds no
parameters and no state: both terms are functions of the backbone and the latents they are given.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor, nn

__all__ = ['VariationalScoreDistillationLoss']


@MODELS.register_module()
class VariationalScoreDistillationLoss(nn.Module):
    """VSD loss of a one-step SD restorer and the diffusion loss of its regulariser LoRA.

    Both terms take the :class:`~rass_mmseg.models.backbones.SCRBackbone` built with ``regularizer=dict(...)``,
    whose adapter the second term trains.

    Args:
        loss_weight: Weight of the VSD term (OSEDiff's ``lambda_vsd``).
        regularizer_weight: Weight of the regulariser's diffusion loss (``lambda_vsd_lora``).
        guidance_scale: Classifier-free guidance of the pretrained prediction (``cfg_vsd``).
        timestep_range: [low, high) of the VSD timesteps.
        negative_prompt: The unconditional prompt of the guidance (OSEDiff's ``neg_prompt``).
        loss_name: Key of the VSD term in the losses dict.
    """

    def __init__(self,
                 loss_weight: float = 1.0,
                 regularizer_weight: float = 1.0,
                 guidance_scale: float = 7.5,
                 timestep_range: Tuple[int, int] = (20, 980),
                 negative_prompt: str = '',
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
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        """Key of the VSD term in the losses dict."""
        return self._loss_name

    def check_backbone(self, backbone: nn.Module) -> None:
        """Raise a one-line error unless ``backbone`` has the regulariser and the timesteps this loss draws."""
        if not getattr(backbone, 'has_regularizer', False):
            raise ValueError('VariationalScoreDistillationLoss needs the regulariser LoRA of the backbone: set '
                             'model.backbone.regularizer=dict() (keys lora_rank, lora_alpha, lora_targets)')
        if backbone.num_train_timesteps < self.timestep_range[1]:
            raise ValueError(f'VariationalScoreDistillationLoss timestep_range {self.timestep_range} exceeds the '
                             f"scheduler's {backbone.num_train_timesteps} timesteps")

    def guided_noise(self, backbone: nn.Module, noisy: Tensor, timesteps: Tensor, conditioning: Tensor,
                     mask: Optional[Tensor]) -> Tensor:
        """The frozen pretrained UNet's noise prediction with classifier-free guidance."""
        unconditional = backbone.encode_prompt([self.negative_prompt]).embeddings.to(conditioning)
        unconditional = unconditional.expand(noisy.shape[0], -1, -1)
        uncond = backbone.pretrained_noise(noisy, timesteps, unconditional)
        cond = backbone.pretrained_noise(noisy, timesteps, conditioning, mask)
        return uncond + self.guidance_scale * (cond - uncond)

    def forward(self, backbone: nn.Module, latents: Tensor, conditioning: Tensor,
                mask: Optional[Tensor] = None) -> Tensor:
        """The weighted VSD term of restored latents ``latents`` (N, C, h, w), differentiable w.r.t. them.

        Args:
            backbone: The SCR backbone with a regulariser (its UNet views, schedule and prompt encoder).
            latents: The restorer's clean latents (scaled, as the UNet sees them).
            conditioning: The restorer's prompt embeddings, (N, L, D).
            mask: Their (N, L) attention mask, or None.
        """
        timesteps = torch.randint(*self.timestep_range, (latents.shape[0], ), device=latents.device)
        noise = torch.randn_like(latents)
        noisy = backbone.scheduler.add_noise(latents.detach(), noise, timesteps)
        conditioning = conditioning.to(device=latents.device, dtype=backbone.unet.dtype)
        with torch.no_grad():
            noisy_input = noisy.to(backbone.unet.dtype)
            pretrained = backbone.clean_latents(noisy, self.guided_noise(backbone, noisy_input, timesteps,
                                                                         conditioning, mask).float(), timesteps)
            regularizer = backbone.clean_latents(noisy, backbone.regularizer_noise(noisy_input, timesteps,
                                                                                   conditioning, mask).float(),
                                                 timesteps)
            weighting = (latents.detach().float() - pretrained).abs().mean(dim=(1, 2, 3), keepdim=True)
            grad = (regularizer - pretrained) / weighting.clamp_min(1e-8)
        latents = latents.float()
        return self.loss_weight * F.mse_loss(latents, (latents - grad).detach())

    def regularizer_loss(self, backbone: nn.Module, latents: Tensor, conditioning: Tensor,
                         mask: Optional[Tensor] = None) -> Tensor:
        """The weighted diffusion loss that trains the backbone's regulariser adapter on the restorer's detached
        latents (arguments as :meth:`forward`)."""
        latents = latents.detach()
        timesteps = torch.randint(0, backbone.num_train_timesteps, (latents.shape[0], ), device=latents.device)
        noise = torch.randn_like(latents)
        noisy = backbone.scheduler.add_noise(latents, noise, timesteps).to(backbone.unet.dtype)
        prediction = backbone.regularizer_noise(noisy, timesteps, conditioning.detach().to(noisy), mask)
        return self.regularizer_weight * F.mse_loss(prediction.float(), noise.float())
