"""Write the tiny pretrained Stable Diffusion folder a config reads: a VAE and a text-conditioned latent diffusion
UNet.

    python tools/make_tiny_sd.py configs/scr/scr_tiny-sd-textures_1xb4-300it_textures-128x128.py [--ldm-iters 3000]

No Stable Diffusion weights can be downloaded on this project's machines. This tool makes the smallest stand-in for
a pretrained SD, trained on the config's training images in two stages: ``vae/`` (an ``AutoencoderKL`` trained as a
plain autoencoder), then ``unet/`` and ``text_encoder/`` trained together as a text-conditioned latent diffusion
model (epsilon prediction, SD 2.1-base's DDPM schedule, captions naming the classes in each crop; see
tools/tiny_sd_pretraining.py; ``--freeze-text-encoder`` keeps the encoder random). The folder also holds
``tokenizer/`` (the offline byte-level CLIP tokenizer), ``scheduler/`` (SD 2.1-base's DDPM settings) and
``diagnostics/`` (the denoising loss curve as CSV and PNG, one-step x0 reconstructions at a few timesteps).
With the defaults about 13 minutes on 2 CPU cores shared with other jobs (measured: VAE 4 min, diffusion 9.4 min).

The architectures come from the config's ``tiny_sd_architecture`` dict (``vae``, ``unet``, ``text_encoder``);
the folder is the config's ``model.backbone.pretrained``. The VAE's ``scaling_factor`` is set, as for SD, to
one over the standard deviation of its latents on the training images. A finished folder holds
``rass_tiny_sd.json`` (the recipe, the VAE's reconstruction PSNR, the diffusion losses): running the tool again
with the same recipe reuses it; any other existing, non-empty folder is refused, never overwritten. The folder
appears only when complete: it is written to a staging folder beside it (``FOLDER.partial-<recipe hash>``), then
renamed. The staging folder keeps the trained VAE and, every ``--save-every`` iterations, the diffusion training
state: an interrupted run started again with the same recipe resumes there and ends with the same weights.
"""
import argparse
import hashlib
import json
import math
import os
import os.path as osp
import shutil
import sys
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

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from tiny_sd_pretraining import LDMRecipe, caption_check, train_ldm, write_diagnostics  # noqa: E402

MANIFEST = 'rass_tiny_sd.json'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='a config with tiny_sd_architecture and model.backbone.pretrained')
    parser.add_argument('--iters', type=int, default=200, help='VAE training iterations')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--crop', type=int, default=64, help='side of the random training crops')
    parser.add_argument('--lr', type=float, default=2e-3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default=None,
                        help='folder to write (default: the config\'s model.backbone.pretrained)')
    ldm = LDMRecipe()
    parser.add_argument('--ldm-iters', type=int, default=ldm.iters, help='latent diffusion iterations of the UNet')
    parser.add_argument('--ldm-batch-size', type=int, default=ldm.batch_size)
    parser.add_argument('--ldm-crop', type=int, default=ldm.crop, help='side of the random latent crops')
    parser.add_argument('--ldm-lr', type=float, default=ldm.lr)
    parser.add_argument('--caption-dropout', type=float, default=ldm.caption_dropout)
    parser.add_argument('--freeze-text-encoder', action='store_true', help='keep the text encoder random')
    parser.add_argument('--save-every', type=int, default=ldm.save_every, help='iterations between state saves')
    parser.add_argument('--stop-after', type=int, default=None, help=argparse.SUPPRESS)  # tests: an interruption
    return parser.parse_args(argv)


def ldm_recipe(args: argparse.Namespace) -> LDMRecipe:
    return LDMRecipe(iters=args.ldm_iters, batch_size=args.ldm_batch_size, crop=args.ldm_crop, lr=args.ldm_lr,
                     caption_dropout=args.caption_dropout, train_text_encoder=not args.freeze_text_encoder,
                     seed=args.seed, save_every=args.save_every)


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


def dataset_labels(cfg: Config, split: str) -> torch.Tensor:
    """The label maps ``(N, H, W)`` (int64) of ``{split}_dataloader.dataset``, in the order of its images."""
    dataset = DATASETS.build(cfg[f'{split}_dataloader'].dataset)
    paths = [dataset.get_data_info(index)['seg_map_path'] for index in range(len(dataset))]
    return torch.stack([torch.from_numpy(np.array(Image.open(path), dtype=np.int64)) for path in paths])


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
                crop=args.crop, lr=args.lr, seed=args.seed, data_root=cfg.train_dataloader.dataset.get('data_root'),
                ldm=ldm_recipe(args).to_dict())


def staging_folder(out_dir: str, wanted: dict) -> str:
    """The staging folder of a recipe: beside ``out_dir``, named after a hash of the recipe."""
    digest = hashlib.sha1(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:12]
    return osp.join(osp.dirname(osp.abspath(out_dir)), f'{osp.basename(osp.normpath(out_dir))}.partial-{digest}')


def check_out_dir(out_dir: str, wanted: dict) -> bool:
    """True when ``out_dir`` already holds this recipe's folder; raise when it holds anything else."""
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
                return True
        raise FileExistsError(f'{out_dir} exists and is not this recipe\'s tiny SD folder; move it away or '
                              'change model.backbone.pretrained (nothing was overwritten)')
    return False


@torch.no_grad()
def encode(vae: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    """Unscaled latents (the posterior's mode) of ``images`` in [-1, 1], encoded 8 at a time."""
    return torch.cat([vae.encode(chunk).latent_dist.mode() for chunk in images.split(8)])


def vae_stage(cfg: Config, args: argparse.Namespace, train: torch.Tensor, val: torch.Tensor, staging: str):
    """The trained VAE (read back from ``staging`` when an earlier run finished it), its validation PSNR and the
    unscaled latents of ``train``."""
    done = osp.join(staging, 'vae_stage.json')
    if osp.isfile(done):
        with open(done) as f:
            val_psnr = json.load(f)['vae_val_reconstruction_psnr_db']
        print(f'resuming from {staging}: VAE already trained ({val_psnr:.2f} dB)')
        vae = AutoencoderKL.from_pretrained(staging, subfolder='vae', local_files_only=True).eval()
        return vae, val_psnr, encode(vae, train)
    torch.manual_seed(args.seed)
    vae = AutoencoderKL(**cfg.tiny_sd_architecture.vae)
    val_psnr = train_vae(vae, train, val, args)
    latents = encode(vae, train)
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    vae.save_pretrained(osp.join(staging, 'vae'), safe_serialization=True)
    with open(done, 'w') as f:
        json.dump(dict(vae_val_reconstruction_psnr_db=round(val_psnr, 3)), f)
    return vae, round(val_psnr, 3), latents


def make_tiny_sd(args: argparse.Namespace) -> str:
    """Write (or reuse) the folder; returns its path."""
    cfg = Config.fromfile(args.config)
    if 'tiny_sd_architecture' not in cfg or not cfg.model.get('backbone', {}).get('pretrained'):
        raise ValueError(f'{args.config} needs tiny_sd_architecture (vae, unet, text_encoder dicts) and '
                         'model.backbone.pretrained (the folder to write)')
    out_dir = args.out or cfg.model.backbone.pretrained
    wanted = recipe(cfg, args)
    if check_out_dir(out_dir, wanted):
        print(f'{out_dir} already holds this tiny SD (same recipe): reused')
        return out_dir
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    train, val = dataset_images(cfg, 'train'), dataset_images(cfg, 'val')
    train_labels, val_labels = dataset_labels(cfg, 'train'), dataset_labels(cfg, 'val')
    class_names = list(DATASETS.get(cfg.train_dataloader.dataset.type).METAINFO['classes'])
    arch = cfg.tiny_sd_architecture
    staging = staging_folder(out_dir, wanted)
    os.makedirs(staging, exist_ok=True)
    start = time.perf_counter()
    vae, val_psnr, latents = vae_stage(cfg, args, train, val, staging)
    vae_seconds = time.perf_counter() - start

    torch.manual_seed(args.seed)
    unet = UNet2DConditionModel(**arch.unet)
    text_config = CLIPTextConfig(**arch.text_encoder)
    text_encoder = CLIPTextModel(text_config)
    tokenizer = build_byte_level_clip_tokenizer(text_config.max_position_embeddings)
    scheduler = DDPMScheduler(**SD21_BASE_SCHEDULER)
    # training images and their mirror images
    latents = torch.cat([latents, latents.flip(-1)]) * vae.config.scaling_factor
    labels = torch.cat([train_labels, train_labels.flip(-1)])
    val_latents = encode(vae, val) * vae.config.scaling_factor
    check = (unet, text_encoder, tokenizer, scheduler, val_latents, val_labels, class_names)
    before = caption_check(*check)
    start = time.perf_counter()
    history = train_ldm(unet, text_encoder, tokenizer, scheduler, latents, labels, class_names, ldm_recipe(args),
                        state_file=osp.join(staging, 'ldm_state.pth'), stop_after=args.stop_after)
    if len(history) < args.ldm_iters:
        print(f'stopped after {len(history)} of {args.ldm_iters} diffusion iterations; state kept in {staging}')
        return staging
    ldm_seconds = time.perf_counter() - start
    after = caption_check(*check)
    first, last = history[:min(100, len(history))], history[-min(100, len(history)):]
    write_diagnostics(osp.join(staging, 'diagnostics'), history, unet, text_encoder, tokenizer, scheduler, vae,
                      val[:3], val_labels[:3], class_names)
    try:
        unet.save_pretrained(osp.join(staging, 'unet'), safe_serialization=True)
        text_encoder.save_pretrained(osp.join(staging, 'text_encoder'), safe_serialization=True)
        tokenizer.save_pretrained(osp.join(staging, 'tokenizer'))
        scheduler.save_pretrained(osp.join(staging, 'scheduler'))
        with open(osp.join(staging, MANIFEST), 'w') as f:
            json.dump(dict(recipe=wanted, vae_val_reconstruction_psnr_db=val_psnr,
                           vae_scaling_factor=vae.config.scaling_factor,
                           ldm=dict(loss_first_100_mean=round(sum(first) / len(first), 5),
                                    loss_last_100_mean=round(sum(last) / len(last), 5),
                                    val_denoising_mse_before=before, val_denoising_mse_after=after,
                                    seconds_this_run=round(ldm_seconds, 1)),
                           vae_seconds_this_run=round(vae_seconds, 1), machine=f'{os.cpu_count()} CPU cores, '
                           f'{torch.get_num_threads()} torch threads'), f, indent=2)
        for name in ('ldm_state.pth', 'vae_stage.json'):
            os.remove(osp.join(staging, name))
        if check_out_dir(out_dir, wanted):  # another run finished the same recipe meanwhile
            return out_dir
        if osp.isdir(out_dir):
            os.rmdir(out_dir)  # empty (checked above); rmdir refuses anything else
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # our own staging folder, never the user's
        raise
    print(f'wrote {out_dir}: VAE reconstruction {val_psnr:.2f} dB on the validation images, scaling_factor '
          f'{vae.config.scaling_factor:.4f}; diffusion loss {sum(first) / len(first):.4f} -> '
          f'{sum(last) / len(last):.4f}; '
          f'validation denoising MSE {before} -> {after}')
    return out_dir


def main(argv: Optional[Sequence[str]] = None) -> None:
    try:
        make_tiny_sd(parse_args(argv))
    except (ValueError, FileExistsError) as error:
        sys.exit(f'make_tiny_sd: {error}')


if __name__ == '__main__':
    main()
