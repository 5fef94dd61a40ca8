"""Write the tiny pretrained Stable Diffusion folder a config reads: a VAE and a text-conditioned latent diffusion
UNet.

    python tools/misc/make_tiny_sd.py configs/scr/scr_tiny-sd-textures_1xb4-300it_textures-128x128.py [--ldm-iters 3000]

No Stable Diffusion weights can be downloaded on this project's machines. This tool makes the smallest stand-in for
a pretrained SD, trained on the config's training images in two stages: ``vae/`` (an ``AutoencoderKL`` trained as a
plain autoencoder), then ``unet/`` and ``text_encoder/`` trained together as a text-conditioned latent diffusion
model (epsilon prediction, SD 2.1-base's DDPM schedule, captions naming the classes in each crop; see
rass_mmseg/tiny_sd/latent_diffusion.py; ``--freeze-text-encoder`` keeps the encoder random). The folder also holds
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

The logic is :func:`rass_mmseg.tiny_sd.make_tiny_sd`.
"""
import argparse
import sys
from typing import Optional, Sequence

from rass_mmseg.tiny_sd import LDMRecipe, VAERecipe, make_tiny_sd


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='a config with tiny_sd_architecture and model.backbone.pretrained')
    vae = VAERecipe()
    parser.add_argument('--iters', type=int, default=vae.iters, help='VAE training iterations')
    parser.add_argument('--batch-size', type=int, default=vae.batch_size)
    parser.add_argument('--crop', type=int, default=vae.crop, help='side of the random training crops')
    parser.add_argument('--lr', type=float, default=vae.lr)
    parser.add_argument('--seed', type=int, default=vae.seed)
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


def vae_recipe(args: argparse.Namespace) -> VAERecipe:
    return VAERecipe(iters=args.iters, batch_size=args.batch_size, crop=args.crop, lr=args.lr, seed=args.seed)


def ldm_recipe(args: argparse.Namespace) -> LDMRecipe:
    return LDMRecipe(iters=args.ldm_iters, batch_size=args.ldm_batch_size, crop=args.ldm_crop, lr=args.ldm_lr,
                     caption_dropout=args.caption_dropout, train_text_encoder=not args.freeze_text_encoder,
                     seed=args.seed, save_every=args.save_every)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    try:
        make_tiny_sd(args.config, args.out, vae_recipe(args), ldm_recipe(args), stop_after=args.stop_after)
    except (ValueError, FileExistsError) as error:
        sys.exit(f'make_tiny_sd: {error}')


if __name__ == '__main__':
    main()
