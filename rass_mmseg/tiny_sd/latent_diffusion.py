"""Pretrain the tiny Stable Diffusion UNet as a text-conditioned latent diffusion model (the second stage of
:func:`rass_mmseg.tiny_sd.make_tiny_sd`, run by tools/misc/make_tiny_sd.py).

The stand-in for SD's own pretraining, at toy scale: the UNet learns epsilon prediction under SD's DDPM schedule on
the latents of the tiny VAE, conditioned on a caption that names the classes present in each training crop (the
dataset's class names in class order, joined as the RASS prompts join them), so that its cross-attention learns
which word goes where. The tiny CLIP text encoder trains jointly by default: it is random and has never learnt
words (SD's CLIP was pretrained on captions before SD froze it), and a frozen random encoder gives the UNet only
what random mixing of the characters of each name leaves distinguishable.

Seeded and resumable: :func:`train_ldm` keeps its whole state (weights, optimizer, learning-rate schedule, random
generator, loss history) in one ``torch.save`` file that it rewrites every ``save_every`` iterations and reads back
with ``weights_only=True``; a resumed run ends with the same weights as an uninterrupted one.
"""
import csv
import math
import os
import os.path as osp
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from rass_mmseg.models.prompts.text_encoding import pack_phrases

__all__ = ['LDMRecipe', 'caption_check', 'caption_token_ids', 'captions_of', 'denoising_loss', 'train_ldm',
           'write_diagnostics']


@dataclass
class LDMRecipe:
    """Settings of the latent diffusion pretraining.

    Attributes:
        iters: Training iterations.
        batch_size: Crops per iteration.
        crop: Side of the random latent crops (latent pixels).
        lr: Peak AdamW learning rate (linear warm-up over ``warmup`` iterations, then cosine decay to zero).
        warmup: Warm-up iterations.
        caption_dropout: Probability that a crop gets the empty caption (the unconditional model).
        train_text_encoder: Train the text encoder jointly (else it stays frozen random).
        seed: Seed of every random draw of the loop (crops, timesteps, noise, caption dropout).
        save_every: Iterations between two saves of the resumable state.
    """
    iters: int = 1500
    batch_size: int = 8
    crop: int = 16
    lr: float = 1e-3
    warmup: int = 100
    caption_dropout: float = 0.1
    train_text_encoder: bool = True
    seed: int = 0
    save_every: int = 250

    def to_dict(self) -> dict:
        return asdict(self)


def caption_token_ids(phrases: Sequence[str], tokenizer, separator: str = ',') -> List[int]:
    """The token ids of one encoder window that ``encode_phrases`` (rass_mmseg.models.prompts.text_encoding) gives
    ``phrases``; a caption that needs more than one window is refused."""
    windows, _ = pack_phrases(phrases, tokenizer, separator)
    if len(windows) > 1:
        raise ValueError(f'caption {phrases!r} needs {len(windows)} windows of {int(tokenizer.model_max_length) - 2} '
                         'tokens, more than one')
    return windows[0]


def captions_of(labels: Tensor, class_names: Sequence[str], ignore_index: int = 255) -> List[List[str]]:
    """For each label map of ``labels`` (N, H, W), the names of the classes it holds, in class order."""
    return [[class_names[c] for c in torch.unique(label).tolist() if c != ignore_index] for label in labels]


class _Captions:
    """Token ids of captions, tokenized once each."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.cache = tokenizer, {}

    def __call__(self, captions: Sequence[Sequence[str]]) -> Tensor:
        for caption in captions:
            if tuple(caption) not in self.cache:
                self.cache[tuple(caption)] = caption_token_ids(caption or [''], self.tokenizer)
        return torch.tensor([self.cache[tuple(caption)] for caption in captions])


def _lr_factor(recipe: LDMRecipe) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < recipe.warmup:
            return (step + 1) / recipe.warmup
        return 0.5 * (1 + math.cos(math.pi * (step - recipe.warmup) / max(1, recipe.iters - recipe.warmup)))
    return factor


def denoising_loss(unet: UNet2DConditionModel, text_encoder: torch.nn.Module, scheduler: DDPMScheduler,
                   latents: Tensor, token_ids: Tensor, timesteps: Tensor, noise: Tensor) -> Tensor:
    """Per-image epsilon-prediction MSE (N, ) of ``latents`` noised to ``timesteps`` with ``noise``."""
    noisy = scheduler.add_noise(latents, noise, timesteps)
    prediction = unet(noisy, timesteps, text_encoder(token_ids)[0]).sample
    return (prediction - noise).pow(2).flatten(1).mean(1)


def _batch(latents: Tensor, labels: Tensor, recipe: LDMRecipe, generator: torch.Generator):
    """Random crops (latent side ``recipe.crop``) and the label crops at the labels' resolution."""
    index = torch.randint(0, len(latents), (recipe.batch_size, ), generator=generator).tolist()
    side, scale = latents.shape[-1], labels.shape[-1] // latents.shape[-1]
    crop = min(recipe.crop, side, latents.shape[-2])
    crops, label_crops = [], []
    for i in index:
        top = int(torch.randint(0, latents.shape[-2] - crop + 1, (), generator=generator))
        left = int(torch.randint(0, side - crop + 1, (), generator=generator))
        crops.append(latents[i, :, top:top + crop, left:left + crop])
        label_crops.append(labels[i, top * scale:(top + crop) * scale, left * scale:(left + crop) * scale])
    return torch.stack(crops), torch.stack(label_crops)


def train_ldm(unet: UNet2DConditionModel, text_encoder: torch.nn.Module, tokenizer, scheduler: DDPMScheduler,
              latents: Tensor, labels: Tensor, class_names: Sequence[str], recipe: LDMRecipe,
              state_file: Optional[str] = None, stop_after: Optional[int] = None) -> List[float]:
    """Train ``unet`` (and, per the recipe, ``text_encoder``) in place; returns the loss of every iteration.

    Args:
        unet: The UNet, epsilon prediction.
        text_encoder: ``transformers.CLIPTextModel`` matching ``tokenizer``.
        tokenizer: The CLIP tokenizer.
        scheduler: The DDPM noise schedule.
        latents: Scaled VAE latents (N, C, h, w) of the training images.
        labels: Their label maps (N, H, W), H a multiple of h.
        class_names: Name of each label value.
        recipe: The settings.
        state_file: Where the resumable state lives: read when present, rewritten every ``recipe.save_every``
            iterations and at the end.
        stop_after: Return after this many iterations (counted from 0, including resumed ones), saving the state
            first: an interruption, for tests.
    """
    modules = [unet] + ([text_encoder] if recipe.train_text_encoder else [])
    text_encoder.requires_grad_(recipe.train_text_encoder)
    unet.requires_grad_(True)
    params = [p for module in modules for p in module.parameters()]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(recipe))
    generator = torch.Generator().manual_seed(recipe.seed)
    history: List[float] = []
    if state_file is not None and osp.isfile(state_file):
        state = torch.load(state_file, map_location='cpu', weights_only=True)
        unet.load_state_dict(state['unet'])
        text_encoder.load_state_dict(state['text_encoder'])
        optimizer.load_state_dict(state['optimizer'])
        schedule.load_state_dict(state['schedule'])
        generator.set_state(state['generator'])
        history = list(state['history'])

    def save() -> None:
        if state_file is None:
            return
        state = dict(unet=unet.state_dict(), text_encoder=text_encoder.state_dict(), optimizer=optimizer.state_dict(),
                     schedule=schedule.state_dict(), generator=generator.get_state(), history=history)
        torch.save(state, state_file + '.tmp')
        os.replace(state_file + '.tmp', state_file)

    tokens = _Captions(tokenizer)
    end = recipe.iters if stop_after is None else min(recipe.iters, stop_after)
    for module in modules:
        module.train()
    bar = tqdm(range(len(history), end), initial=len(history), total=recipe.iters, desc='LDM pretraining',
               dynamic_ncols=True, mininterval=5)
    for iteration in bar:
        crops, label_crops = _batch(latents, labels, recipe, generator)
        captions = captions_of(label_crops, class_names)
        drop = (torch.rand(len(captions), generator=generator) < recipe.caption_dropout).tolist()
        captions = [[] if d else c for c, d in zip(captions, drop)]
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(crops), ), generator=generator)
        noise = torch.randn(crops.shape, generator=generator)
        loss = denoising_loss(unet, text_encoder, scheduler, crops, tokens(captions), timesteps, noise).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        history.append(float(loss.detach()))
        if iteration % 50 == 0:
            bar.set_postfix(loss=f'{np.mean(history[-50:]):.4f}')
        if (iteration + 1) % recipe.save_every == 0 and iteration + 1 < end:
            save()
    bar.close()
    save()
    unet.eval()
    text_encoder.eval()
    text_encoder.requires_grad_(False)
    unet.requires_grad_(False)
    return history


@torch.no_grad()
def caption_check(unet: UNet2DConditionModel, text_encoder: torch.nn.Module, tokenizer, scheduler: DDPMScheduler,
                  latents: Tensor, labels: Tensor, class_names: Sequence[str],
                  timesteps: Sequence[int] = (100, 300, 500, 700), seed: int = 1) -> Dict[str, float]:
    """Mean denoising MSE on held-out latents with their true caption, the empty one and a wrong one.

    The wrong caption names exactly the classes each image does not hold. A UNet whose cross-attention reads the
    words denoises best with the true caption.
    """
    generator = torch.Generator().manual_seed(seed)
    true = captions_of(labels, class_names)
    wrong = [[n for n in class_names if n not in caption] or [''] for caption in true]
    tokens = _Captions(tokenizer)
    losses = {'true_caption': [], 'empty_caption': [], 'wrong_caption': []}
    for t in timesteps:
        steps = torch.full((len(latents), ), t, dtype=torch.long)
        noise = torch.randn(latents.shape, generator=generator)
        for key, captions in (('true_caption', true), ('empty_caption', [[]] * len(true)), ('wrong_caption', wrong)):
            losses[key].append(float(denoising_loss(unet, text_encoder, scheduler, latents, tokens(captions), steps,
                                                    noise).mean()))
    return {key: round(float(np.mean(values)), 5) for key, values in losses.items()}


def _to_uint8(images: Tensor) -> np.ndarray:
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def write_diagnostics(out_dir: str, history: Sequence[float], unet: UNet2DConditionModel,
                      text_encoder: torch.nn.Module, tokenizer, scheduler: DDPMScheduler, vae,
                      images: Tensor, labels: Tensor, class_names: Sequence[str],
                      timesteps: Sequence[int] = (100, 300, 600, 900), seed: int = 2) -> List[str]:
    """Write the loss curve (CSV, and PNG when matplotlib is installed) and one-step x0 reconstructions.

    ``x0_reconstructions.png``: per image (rows of 2 + 2 x len(timesteps) tiles), the clean image, its VAE
    reconstruction, then for each timestep the decoded noisy latent x_t and the decoded one-step prediction
    x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t), with the true caption.

    Returns:
        The paths written.
    """
    os.makedirs(out_dir, exist_ok=True)
    written = [osp.join(out_dir, 'ldm_loss.csv')]
    window = max(1, min(100, len(history) // 20))
    smooth = np.convolve(history, np.ones(window) / window, mode='valid') if history else np.zeros(0)
    with open(written[0], 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['iteration', 'loss', f'loss_mean_of_{window}'])
        for i, loss in enumerate(history):
            writer.writerow([i + 1, f'{loss:.6f}', f'{smooth[i - window + 1]:.6f}' if i >= window - 1 else ''])
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    if plt is not None and history:
        fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
        ax.plot(range(1, len(history) + 1), history, lw=0.4, alpha=0.4, label='per iteration')
        ax.plot(range(window, len(history) + 1), smooth, lw=1.5, label=f'mean of {window}')
        ax.set(xlabel='iteration', ylabel='epsilon MSE', title='tiny SD latent diffusion pretraining')
        ax.set_yscale('log')
        ax.legend()
        fig.tight_layout()
        written.append(osp.join(out_dir, 'ldm_loss.png'))
        fig.savefig(written[-1])
        plt.close(fig)
    latents = vae.encode(images).latent_dist.mode() * vae.config.scaling_factor
    token_ids = _Captions(tokenizer)(captions_of(labels, class_names))
    context = text_encoder(token_ids)[0]
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(latents.shape, generator=generator)
    decode = lambda z: vae.decode(z / vae.config.scaling_factor).sample  # noqa: E731
    tiles = [images, decode(latents)]
    for t in timesteps:
        steps = torch.full((len(latents), ), t, dtype=torch.long)
        noisy = scheduler.add_noise(latents, noise, steps)
        alpha = scheduler.alphas_cumprod[t]
        x0 = (noisy - (1 - alpha).sqrt() * unet(noisy, steps, context).sample) / alpha.sqrt()
        tiles += [decode(noisy), decode(x0)]
    grid = np.concatenate([np.concatenate(list(_to_uint8(tile)), axis=0) for tile in tiles], axis=1)
    written.append(osp.join(out_dir, 'x0_reconstructions.png'))
    Image.fromarray(grid).save(written[-1])
    with open(osp.join(out_dir, 'x0_reconstructions.txt'), 'w') as f:
        f.write(f'columns: clean | VAE reconstruction | then for t in {list(timesteps)}: x_t | one-step x0 '
                f'prediction\nrows (captions): {captions_of(labels, class_names)}\n')
    written.append(osp.join(out_dir, 'x0_reconstructions.txt'))
    return written
