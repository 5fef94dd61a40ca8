"""The tiny pretrained Stable Diffusion: a stand-in for SD 2.1-base trained on a config's own images, for machines
that cannot download SD (tools/misc/make_tiny_sd.py runs :func:`make_tiny_sd`).

Two stages: the VAE as a plain autoencoder (:mod:`.autoencoder`), then the UNet and text encoder as a
text-conditioned latent diffusion model (:mod:`.latent_diffusion`); :mod:`.pretrained_folder` writes the diffusers
folder a config's ``model.backbone.pretrained`` reads, resumably and without overwriting anything.
"""
from .autoencoder import VAERecipe, train_vae
from .latent_diffusion import LDMRecipe, caption_check, train_ldm, write_diagnostics
from .pretrained_folder import MANIFEST, make_tiny_sd

__all__ = ['LDMRecipe', 'MANIFEST', 'VAERecipe', 'caption_check', 'make_tiny_sd', 'train_ldm', 'train_vae',
           'write_diagnostics']
