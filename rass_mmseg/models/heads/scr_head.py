"""The SCR head: decode the restored latent with Stable Diffusion's (frozen) VAE decoder, and the restoration loss."""
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor, nn

from ..utils.frozen_weights import leave_frozen_weights_out_of_checkpoints, persistent_state
from ..utils.sd_components import load_sd_vae

__all__ = ['SCRHead']


@MODELS.register_module()
class SCRHead(BaseModule):
    """Decodes clean latents into images and computes L_res = w_l2 * L2 + w_lpips * LPIPS (OSEDiff's loss).

    The head owns the VAE decoder (and ``post_quant_conv``) of the Stable Diffusion model the backbone encodes
    with: the same ``pretrained`` folder, or the same ``vae`` dict for random initialisation. Both are frozen. The L2
    term is the mean squared error of images in [-1, 1] (the scale OSEDiff's weights were chosen for); LPIPS sees
    images in [0, 1].

    Args:
        pretrained: Local diffusers Stable Diffusion folder; its ``vae/`` is read.
        vae: ``diffusers.AutoencoderKL`` keyword arguments, for random initialisation without ``pretrained``.
        l2_weight: Weight of the L2 term.
        lpips_weight: Weight of the LPIPS term; 0 builds no LPIPS network.
        lpips_net: LPIPS backbone, ``'vgg'`` (OSEDiff) or ``'alex'``/``'squeeze'``.
        lpips_weights: Local LPIPS weights (safetensors, see ``tools/model_converters/convert_lpips_weights.py``).
            Without it the LPIPS network is randomly initialised and a warning is logged: fine for tests, useless as a
            perceptual loss.
        save_frozen_weights: Whether checkpoints hold the frozen decoder and LPIPS weights. None: only those that
            cannot be rebuilt from files (random initialisation); see
            :mod:`~rass_mmseg.models.utils.frozen_weights`.
        init_cfg: mmengine init config.
    """

    def __init__(self,
                 pretrained: Optional[str] = None,
                 vae: Optional[dict] = None,
                 l2_weight: float = 1.0,
                 lpips_weight: float = 2.0,
                 lpips_net: str = 'vgg',
                 lpips_weights: Optional[str] = None,
                 save_frozen_weights: Optional[bool] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if l2_weight < 0 or lpips_weight < 0:
            raise ValueError(f'SCRHead weights must be >= 0, got l2_weight={l2_weight}, lpips_weight={lpips_weight}')
        if (pretrained is None) == (vae is None):
            raise ValueError('SCRHead: give exactly one of pretrained (a diffusers folder) and vae (AutoencoderKL '
                             f'keyword arguments); got pretrained={pretrained!r}, vae={vae!r}')
        self.vae = load_sd_vae(pretrained) if pretrained is not None else AutoencoderKL(**vae)
        self.vae.encoder = None  # the backbone encodes; the head only decodes
        self.vae.quant_conv = None
        self.vae.requires_grad_(False)
        self.pretrained, self.lpips_weights = pretrained, lpips_weights
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
        self.save_frozen_weights = save_frozen_weights
        if self.frozen_state_keys():
            leave_frozen_weights_out_of_checkpoints(self)

    def frozen_state_keys(self) -> List[str]:
        """Keys of the frozen weights rebuilt from files: the decoder (from ``pretrained``) and LPIPS (from
        ``lpips_weights``), unless ``save_frozen_weights`` asks for full checkpoints."""
        if self.save_frozen_weights:
            return []
        prefixes = (('vae.', ) if self.pretrained is not None else ()) + (
            ('lpips.', ) if self.lpips is not None and self.lpips_weights is not None else ())
        return [key for key in persistent_state(self) if key.startswith(prefixes)] if prefixes else []

    def frozen_weights_source(self) -> str:
        """What the frozen weights were built from."""
        return f'pretrained={self.pretrained!r}, lpips_weights={self.lpips_weights!r}'

    def train(self, mode: bool = True) -> 'SCRHead':
        """The decoder and the LPIPS network stay in eval mode."""
        super().train(mode)
        self.vae.eval()
        if self.lpips is not None:
            self.lpips.eval()
        return self

    def forward(self, latents: Tensor) -> Tensor:
        """Decode scaled latents (N, C, h, w) into images (N, 3, s*h, s*w) in [0, 1] (not clamped)."""
        decoded = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
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
    def predict(self, latents: Tensor) -> Tensor:
        """Decode and clamp to [0, 1]."""
        return self.forward(latents).clamp(0, 1)
