"""Write the tiny pretrained Stable Diffusion folder a config reads: a VAE and a text-conditioned latent diffusion
UNet (the logic of tools/misc/make_tiny_sd.py, importable as :func:`rass_mmseg.tiny_sd.make_tiny_sd`).

No Stable Diffusion weights can be downloaded on this project's machines. :func:`make_tiny_sd` makes the smallest
stand-in for a pretrained SD, trained on the config's training images in two stages: ``vae/`` (an ``AutoencoderKL``
trained as a plain autoencoder, :mod:`rass_mmseg.tiny_sd.autoencoder`), then ``unet/`` and ``text_encoder/``
trained together as a text-conditioned latent diffusion model (epsilon prediction, SD 2.1-base's DDPM schedule,
captions naming the classes in each crop; :mod:`rass_mmseg.tiny_sd.latent_diffusion`). The folder also holds
``tokenizer/`` (the offline byte-level CLIP tokenizer), ``scheduler/`` (SD 2.1-base's DDPM settings) and
``diagnostics/`` (the denoising loss curve as CSV and PNG, one-step x0 reconstructions at a few timesteps).

The architectures come from the config's ``tiny_sd_architecture`` dict (``vae``, ``unet``, ``text_encoder``);
the folder is the config's ``model.backbone.pretrained``. The VAE's ``scaling_factor`` is set, as for SD, to
one over the standard deviation of its latents on the training images. A finished folder holds
``rass_tiny_sd.json`` (the recipe, the VAE's reconstruction PSNR, the diffusion losses): running again with the
same recipe reuses it; any other existing, non-empty folder is refused, never overwritten. The folder appears only
when complete: it is written to a staging folder beside it (``FOLDER.partial-<recipe hash>``), then renamed. The
staging folder keeps the trained VAE and, every ``LDMRecipe.save_every`` iterations, the diffusion training state:
an interrupted run started again with the same recipe resumes there and ends with the same weights.
"""
import hashlib
import json
import os
import os.path as osp
import shutil
import time
from typing import List, Optional, Tuple

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel

from ..models.backbones.scr_backbone import SD21_BASE_SCHEDULER
from ..models.utils.sd_components import build_byte_level_clip_tokenizer
from .autoencoder import VAERecipe, encode, train_vae
from .latent_diffusion import LDMRecipe, caption_check, train_ldm, write_diagnostics

__all__ = ['MANIFEST', 'check_out_dir', 'dataset_images', 'dataset_labels', 'make_tiny_sd', 'read_images', 'recipe',
           'staging_folder']

#: The manifest file of a finished folder.
MANIFEST = 'rass_tiny_sd.json'


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


def recipe(cfg: Config, vae: VAERecipe, ldm: LDMRecipe) -> dict:
    """What a finished folder records and a rerun must match: the architectures, the data and both recipes."""
    return dict(architecture=cfg.tiny_sd_architecture.to_dict(), **vae.to_dict(),
                data_root=cfg.train_dataloader.dataset.get('data_root'), ldm=ldm.to_dict())


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


def vae_stage(cfg: Config, vae_recipe: VAERecipe, train: torch.Tensor, val: torch.Tensor,
              staging: str) -> Tuple[AutoencoderKL, float, torch.Tensor]:
    """The trained VAE (read back from ``staging`` when an earlier run finished it), its validation PSNR and the
    unscaled latents of ``train``."""
    done = osp.join(staging, 'vae_stage.json')
    if osp.isfile(done):
        with open(done) as f:
            val_psnr = json.load(f)['vae_val_reconstruction_psnr_db']
        print(f'resuming from {staging}: VAE already trained ({val_psnr:.2f} dB)')
        vae = AutoencoderKL.from_pretrained(staging, subfolder='vae', local_files_only=True).eval()
        return vae, val_psnr, encode(vae, train)
    torch.manual_seed(vae_recipe.seed)
    vae = AutoencoderKL(**cfg.tiny_sd_architecture.vae)
    val_psnr = train_vae(vae, train, val, vae_recipe)
    latents = encode(vae, train)
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    vae.save_pretrained(osp.join(staging, 'vae'), safe_serialization=True)
    with open(done, 'w') as f:
        json.dump(dict(vae_val_reconstruction_psnr_db=round(val_psnr, 3)), f)
    return vae, round(val_psnr, 3), latents


def make_tiny_sd(config: str, out_dir: Optional[str] = None, vae_recipe: Optional[VAERecipe] = None,
                 ldm_recipe: Optional[LDMRecipe] = None, stop_after: Optional[int] = None) -> str:
    """Write (or reuse) the tiny pretrained SD folder of ``config``.

    Args:
        config: A config with ``tiny_sd_architecture`` and ``model.backbone.pretrained``.
        out_dir: The folder to write; ``None`` takes the config's ``model.backbone.pretrained``.
        vae_recipe: The VAE training (default :class:`VAERecipe`).
        ldm_recipe: The latent diffusion pretraining (default :class:`LDMRecipe`).
        stop_after: Stop after this many diffusion iterations, keeping the state in the staging folder (tests: an
            interruption).

    Returns:
        The finished folder, or the staging folder when stopped early.

    Raises:
        ValueError: ``config`` lacks ``tiny_sd_architecture`` or ``model.backbone.pretrained``.
        FileExistsError: ``out_dir`` holds something else than this recipe's folder (nothing is overwritten).
    """
    vae_recipe = VAERecipe() if vae_recipe is None else vae_recipe
    ldm_recipe = LDMRecipe() if ldm_recipe is None else ldm_recipe
    cfg = Config.fromfile(config)
    if 'tiny_sd_architecture' not in cfg or not cfg.model.get('backbone', {}).get('pretrained'):
        raise ValueError(f'{config} needs tiny_sd_architecture (vae, unet, text_encoder dicts) and '
                         'model.backbone.pretrained (the folder to write)')
    out_dir = out_dir or cfg.model.backbone.pretrained
    wanted = recipe(cfg, vae_recipe, ldm_recipe)
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
    vae, val_psnr, latents = vae_stage(cfg, vae_recipe, train, val, staging)
    vae_seconds = time.perf_counter() - start

    torch.manual_seed(ldm_recipe.seed)
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
    history = train_ldm(unet, text_encoder, tokenizer, scheduler, latents, labels, class_names, ldm_recipe,
                        state_file=osp.join(staging, 'ldm_state.pth'), stop_after=stop_after)
    if len(history) < ldm_recipe.iters:
        print(f'stopped after {len(history)} of {ldm_recipe.iters} diffusion iterations; state kept in {staging}')
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
