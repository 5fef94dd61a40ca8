"""Write the tiny "pretrained" Stable Diffusion folder a config reads: a VAE trained on its training images.

    python tools/make_tiny_sd.py configs/scr/scr_tiny-sd-textures_1xb4-300it_textures-128x128.py \
        [--iters 500] [--seed 0]

No Stable Diffusion weights can be downloaded on this project's machines, and a restorer built on a random
VAE cannot beat its own input: its frozen decoder cannot even reproduce the clean image. This tool makes the
smallest stand-in for a pretrained SD that a restoration demo needs. It writes a local diffusers folder with
``vae/`` (an ``AutoencoderKL`` trained here as a plain autoencoder on the config's training images), ``unet/``
and ``text_encoder/`` (seeded random initialisation, as in the tiny configs), ``tokenizer/`` (the offline
byte-level CLIP tokenizer) and ``scheduler/`` (SD 2.1-base's DDPM settings).

The architectures come from the config's ``tiny_sd_architecture`` dict (``vae``, ``unet``, ``text_encoder``);
the folder is the config's ``model.backbone.pretrained``. The VAE's ``scaling_factor`` is set, as for SD, to
one over the standard deviation of its latents on the training images. A finished folder holds
``rass_tiny_sd.json`` (the recipe and the VAE's reconstruction PSNR): running the tool again with the same
recipe reuses it; any other existing, non-empty folder is refused, never overwritten. The folder appears
only when complete (written to a new staging folder beside it, then renamed).
"""
import argparse
import json
import math
import os
import os.path as osp
import shutil
import sys
import tempfile
import time
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel

import rass_mmseg  # noqa: F401  (registers the dataset)
from rass_mmseg.models.backbones.scr_backbone import SD21_BASE_SCHEDULER
from rass_mmseg.models.utils.sd_components import build_byte_level_clip_tokenizer

MANIFEST = 'rass_tiny_sd.json'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='a config with tiny_sd_architecture and model.backbone.pretrained')
    parser.add_argument('--iters', type=int, default=500, help='VAE training iterations')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--crop', type=int, default=64, help='side of the random training crops')
    parser.add_argument('--lr', type=float, default=2e-3)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def read_images(paths: List[str]) -> torch.Tensor:
    """``(N, 3, H, W)`` RGB in [-1, 1]; every image must have the size of the first."""
    images = [torch.from_numpy(np.array(Image.open(path).convert('RGB'))).permute(2, 0, 1) for path in paths]
    sizes = {tuple(image.shape) for image in images}
    if len(sizes) != 1:
        raise ValueError(f'make_tiny_sd needs training images of one size, got sizes {sorted(sizes)}')
    return torch.stack(images).float() / 127.5 - 1.0


def dataset_images(cfg: Config, split: str) -> torch.Tensor:
    """The images of ``{split}_dataloader.dataset``, built through mmseg (so a generated dataset appears)."""
    dataset = DATASETS.build(cfg[f'{split}_dataloader'].dataset)
    return read_images([dataset.get_data_info(index)['img_path'] for index in range(len(dataset))])


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> float:
    """Mean PSNR (dB) of images in [-1, 1], measured in [0, 1]."""
    error = ((reconstruction.clamp(-1, 1) - target) / 2).pow(2).flatten(1).mean(1)
    return float((-10 * torch.log10(error.clamp_min(1e-10))).mean())


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, images: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    return torch.cat([vae.decode(vae.encode(chunk).latent_dist.mode()).sample
                      for chunk in images.split(batch_size)])


def train_vae(vae: AutoencoderKL, train: torch.Tensor, val: torch.Tensor, args: argparse.Namespace) -> float:
    """L1 + L2 autoencoder training on random crops and flips; returns the validation PSNR (dB)."""
    generator = torch.Generator().manual_seed(args.seed)
    optimizer = torch.optim.Adam(vae.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 0.5 * (1 + math.cos(math.pi * it / args.iters)))
    height, width = train.shape[-2:]
    crop = min(args.crop, height, width)
    start = time.perf_counter()
    vae.train()
    for iteration in range(1, args.iters + 1):
        index = torch.randint(0, len(train), (args.batch_size, ), generator=generator)
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
        if iteration % 100 == 0 or iteration == args.iters:
            vae.eval()
            print(f'VAE iter {iteration}/{args.iters}: loss {loss.item():.4f}, val reconstruction '
                  f'{psnr(reconstruct(vae, val), val):.2f} dB, {(time.perf_counter() - start) / iteration:.2f} s/iter',
                  flush=True)
            vae.train()
    vae.eval()
    return psnr(reconstruct(vae, val), val)


def recipe(cfg: Config, args: argparse.Namespace) -> dict:
    return dict(architecture=cfg.tiny_sd_architecture.to_dict(), iters=args.iters, batch_size=args.batch_size,
                crop=args.crop, lr=args.lr, seed=args.seed, data_root=cfg.train_dataloader.dataset.get('data_root'))


def make_tiny_sd(args: argparse.Namespace) -> str:
    """Write (or reuse) the folder; returns its path."""
    cfg = Config.fromfile(args.config)
    if 'tiny_sd_architecture' not in cfg or not cfg.model.get('backbone', {}).get('pretrained'):
        raise ValueError(f'{args.config} needs tiny_sd_architecture (vae, unet, text_encoder dicts) and '
                         'model.backbone.pretrained (the folder to write)')
    out_dir = cfg.model.backbone.pretrained
    wanted = recipe(cfg, args)
    if osp.exists(out_dir) and not osp.isdir(out_dir):
        raise FileExistsError(f'{out_dir} exists and is not a folder (nothing was overwritten)')
    if osp.isdir(out_dir) and os.listdir(out_dir):
        manifest = osp.join(out_dir, MANIFEST)
        if osp.isfile(manifest):
            try:
                with open(manifest) as f:
                    found = json.load(f).get('recipe')
            except (ValueError, AttributeError):
                found = None  # not our manifest: refused below
            if found == json.loads(json.dumps(wanted)):
                print(f'{out_dir} already holds this tiny SD (same recipe): reused')
                return out_dir
        raise FileExistsError(f'{out_dir} exists and is not this recipe\'s tiny SD folder; move it away or '
                              'change model.backbone.pretrained (nothing was overwritten)')
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    train, val = dataset_images(cfg, 'train'), dataset_images(cfg, 'val')
    arch = cfg.tiny_sd_architecture
    torch.manual_seed(args.seed)
    vae = AutoencoderKL(**arch.vae)
    unet = UNet2DConditionModel(**arch.unet)
    text_config = CLIPTextConfig(**arch.text_encoder)
    text_encoder = CLIPTextModel(text_config)
    val_psnr = train_vae(vae, train, val, args)
    with torch.no_grad():
        latents = torch.cat([vae.encode(chunk).latent_dist.mode() for chunk in train.split(8)])
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))

    parent = osp.dirname(osp.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=osp.basename(osp.normpath(out_dir)) + '.partial-', dir=parent)
    try:
        vae.save_pretrained(osp.join(staging, 'vae'), safe_serialization=True)
        unet.save_pretrained(osp.join(staging, 'unet'), safe_serialization=True)
        text_encoder.save_pretrained(osp.join(staging, 'text_encoder'), safe_serialization=True)
        build_byte_level_clip_tokenizer(text_config.max_position_embeddings).save_pretrained(
            osp.join(staging, 'tokenizer'))
        DDPMScheduler(**SD21_BASE_SCHEDULER).save_pretrained(osp.join(staging, 'scheduler'))
        with open(osp.join(staging, MANIFEST), 'w') as f:
            json.dump(dict(recipe=wanted, vae_val_reconstruction_psnr_db=round(val_psnr, 3),
                           vae_scaling_factor=vae.config.scaling_factor), f, indent=2)
        if osp.isdir(out_dir):
            os.rmdir(out_dir)  # empty (checked above); rmdir refuses anything else
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # our own staging folder, never the user's
        raise
    print(f'wrote {out_dir}: VAE reconstruction {val_psnr:.2f} dB on the validation images, '
          f'scaling_factor {vae.config.scaling_factor:.4f}')
    return out_dir


def main(argv: Optional[Sequence[str]] = None) -> None:
    try:
        make_tiny_sd(parse_args(argv))
    except (ValueError, FileExistsError) as error:
        sys.exit(f'make_tiny_sd: {error}')


if __name__ == '__main__':
    main()
