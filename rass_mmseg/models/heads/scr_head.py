"""The SCR head: decode the restored latent with the frozen VAE decoder, and the restoration loss."""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor, nn

__all__ = ['SCRHead']


@MODELS.register_module()
class SCRHead(BaseModule):
    """Decodes clean latents into images and computes L_res = w_l2 * L2 + w_lpips * LPIPS (OSEDiff's loss).

    The VAE belongs to the backbone (it is one Stable Diffusion VAE); the head receives it per call and
    owns no copy, so checkpoints hold the VAE once. The L2 term is the mean squared error of images in
    [-1, 1] (the scale OSEDiff's weights were chosen for); LPIPS sees images in [0, 1].

    Args:
        l2_weight: Weight of the L2 term.
        lpips_weight: Weight of the LPIPS term; 0 builds no LPIPS network.
        lpips_net: LPIPS backbone, ``'vgg'`` (OSEDiff) or ``'alex'``/``'squeeze'``.
        lpips_weights: Local LPIPS weights (safetensors, see ``tools/convert_lpips_weights.py``). Without it
            the LPIPS network is randomly initialised and a warning is logged: fine for tests, useless as a
            perceptual loss.
        init_cfg: mmengine init config.
    """

    def __init__(self, l2_weight: float = 1.0, lpips_weight: float = 2.0, lpips_net: str = 'vgg',
                 lpips_weights: Optional[str] = None, init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if l2_weight < 0 or lpips_weight < 0:
            raise ValueError(f'SCRHead weights must be >= 0, got l2_weight={l2_weight}, lpips_weight={lpips_weight}')
        self.l2_weight = l2_weight
        self.lpips_weight = lpips_weight
        self.lpips: Optional[nn.Module] = None
        if lpips_weight > 0:
            from ..utils.lpips_network import build_lpips
            if lpips_weights is None:
                print_log('SCRHead: LPIPS is randomly initialised (lpips_weights=None); set lpips_weights to a '
                          'converted LPIPS file for a perceptual loss', logger='current', level=30)
            self.lpips = build_lpips(lpips_net, lpips_weights)
            self.lpips.requires_grad_(False)

    def train(self, mode: bool = True) -> 'SCRHead':
        """The LPIPS network stays in eval mode."""
        super().train(mode)
        if self.lpips is not None:
            self.lpips.eval()
        return self

    def forward(self, latents: Tensor, vae: nn.Module) -> Tensor:
        """Decode scaled latents (N, 4, h, w) into images (N, 3, 8h, 8w) in [0, 1] (not clamped)."""
        decoded = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
        return (decoded.float() + 1) / 2

    def loss(self, restored: Tensor, target: Tensor) -> Dict[str, Tensor]:
        """Restoration losses of ``restored`` against ``target``, both (N, 3, H, W) in [0, 1]."""
        if restored.shape != target.shape:
            raise ValueError(f'SCRHead.loss: restored {tuple(restored.shape)} and target {tuple(target.shape)} differ')
        losses = {'loss_l2': self.l2_weight * F.mse_loss(restored * 2 - 1, target * 2 - 1)}
        if self.lpips is not None:
            losses['loss_lpips'] = self.lpips_weight * self.lpips(restored, target).mean()
        return losses

    @torch.no_grad()
    def predict(self, latents: Tensor, vae: nn.Module) -> Tensor:
        """Decode and clamp to [0, 1]."""
        return self.forward(latents, vae).clamp(0, 1)
