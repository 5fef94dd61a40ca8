"""Train the tiny Stable Diffusion VAE as a plain autoencoder (the first stage of
:func:`rass_mmseg.tiny_sd.make_tiny_sd`).

An ``AutoencoderKL`` learns to reconstruct random crops (and mirror images) of the training images with an L1 + L2
loss under a cosine learning-rate schedule; its posterior's mode is the latent, as SD's VAE is used by the RASS
backbone. Seeded: the same recipe on the same images gives the same weights.
"""
import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

__all__ = ['VAERecipe', 'encode', 'psnr', 'reconstruct', 'train_vae']


@dataclass
class VAERecipe:
    """Settings of the VAE training.

    Attributes:
        iters: Training iterations.
        batch_size: Crops per iteration.
        crop: Side of the random training crops (pixels; at most the image size).
        lr: Peak Adam learning rate (cosine decay to zero).
        seed: Seed of the crops, flips and of the VAE's initialisation (:func:`rass_mmseg.tiny_sd.make_tiny_sd`).
    """
    iters: int = 200
    batch_size: int = 8
    crop: int = 64
    lr: float = 2e-3
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> float:
    """Mean PSNR (dB) of images in [-1, 1], measured in [0, 1]."""
    error = ((reconstruction.clamp(-1, 1) - target) / 2).pow(2).flatten(1).mean(1)
    return float((-10 * torch.log10(error.clamp_min(1e-10))).mean())


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, images: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """``vae``'s reconstructions of ``images`` in [-1, 1] (the posterior's mode, decoded)."""
    return torch.cat([vae.decode(vae.encode(chunk).latent_dist.mode()).sample
                      for chunk in images.split(batch_size)])


@torch.no_grad()
def encode(vae: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    """Unscaled latents (the posterior's mode) of ``images`` in [-1, 1], encoded 8 at a time."""
    return torch.cat([vae.encode(chunk).latent_dist.mode() for chunk in images.split(8)])


def train_vae(vae: AutoencoderKL, train: torch.Tensor, val: torch.Tensor, recipe: VAERecipe) -> float:
    """L1 + L2 autoencoder training on random crops and flips.

    Args:
        vae: The autoencoder, trained in place (left in eval mode).
        train: Training images ``(N, 3, H, W)`` in [-1, 1].
        val: Validation images in [-1, 1].
        recipe: The training settings.

    Returns:
        The validation PSNR (dB).
    """
    generator = torch.Generator().manual_seed(recipe.seed)
    optimizer = torch.optim.Adam(vae.parameters(), lr=recipe.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                 lambda it: 0.5 * (1 + math.cos(math.pi * it / recipe.iters)))
    height, width = train.shape[-2:]
    crop = min(recipe.crop, height, width)
    start = time.perf_counter()
    vae.train()
    for iteration in range(1, recipe.iters + 1):
        index = torch.randint(0, len(train), (recipe.batch_size, ), generator=generator)
        top, left = (int(torch.randint(0, size - crop + 1, (), generator=generator)) for size in (height, width))
        batch = train[index, :, top:top + crop, left:left + crop]
        if torch.rand((), generator=generator) < 0.5:
            batch = batch.flip(-1)
        reconstruction = vae.decode(vae.encode(batch).latent_dist.mode()).sample
        loss = F.l1_loss(reconstruction, batch) + F.mse_loss(reconstruction, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if iteration % 100 == 0 or iteration == recipe.iters:
            vae.eval()
            print(f'VAE iter {iteration}/{recipe.iters}: loss {loss.item():.4f}, val reconstruction '
                  f'{psnr(reconstruct(vae, val), val):.2f} dB, {(time.perf_counter() - start) / iteration:.2f} s/iter',
                  flush=True)
            vae.train()
    vae.eval()
    return psnr(reconstruct(vae, val), val)
