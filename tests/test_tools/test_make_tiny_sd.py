"""tools/misc/make_tiny_sd.py (:mod:`rass_mmseg.tiny_sd`): a complete diffusers folder the SCR demo config loads, reused
or refused, never overwritten; its latent diffusion pretraining (rass_mmseg/tiny_sd/latent_diffusion.py) learns, and
resumes to the uninterrupted result."""
import glob
import json
import os
import os.path as osp
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL
from mmengine.config import Config
from mmseg.registry import MODELS
from safetensors.torch import load_file

from rass_mmseg.tiny_sd import autoencoder, latent_diffusion, pretrained_folder
from tests.utils import TINY_SD_CONFIG, TINY_SD_FAST, load_tool, needs_made_tiny_sd, repo_path, small_tiny_sd_config

make_tiny_sd = load_tool('misc/make_tiny_sd')


@pytest.fixture
def made(made_tiny_sd):
    """The session's made folder (tests/conftest.py), as ``(root, config)`` with ``root`` a Path."""
    root, config = made_tiny_sd
    return Path(root), config


def test_folder_is_complete_and_the_scr_demo_builds_from_it(made):
    tmp_path, config = made
    folder = tmp_path / 'tiny_sd'
    for name in ('vae/config.json', 'vae/diffusion_pytorch_model.safetensors', 'unet/config.json',
                 'text_encoder/config.json', 'scheduler/scheduler_config.json',
                 'rass_tiny_sd.json', 'unet/diffusion_pytorch_model.safetensors', 'diagnostics/ldm_loss.csv',
                 'diagnostics/ldm_loss.png', 'diagnostics/x0_reconstructions.png'):
        assert (folder / name).is_file(), name
    assert not (folder / 'ldm_state.pth').exists()  # the resumable state stays out of the finished folder
    manifest = json.loads((folder / 'rass_tiny_sd.json').read_text())
    assert manifest['recipe']['ldm']['iters'] == 4 and manifest['recipe']['ldm']['train_text_encoder']
    assert set(manifest['ldm']['val_denoising_mse_after']) == {'true_caption', 'empty_caption', 'wrong_caption'}
    rows = (folder / 'diagnostics' / 'ldm_loss.csv').read_text().splitlines()
    assert rows[0].startswith('iteration,loss') and len(rows) == 1 + 4
    assert any((folder / 'tokenizer' / name).is_file() for name in ('vocab.json', 'tokenizer.json'))
    assert not [name for name in os.listdir(tmp_path) if 'partial' in name]  # the staging folder was renamed
    cfg = Config.fromfile(config)
    model = MODELS.build(cfg.model)
    assert model.backbone.latent_stride == 2 and model.backbone.unet.config.in_channels == 12
    assert model.backbone.timestep == 100 and model.decode_head.vae.decoder is not None
    restored = model.restore(torch.rand(1, 3, 64, 64) * 2 - 1)
    assert restored.shape == (1, 3, 64, 64) and 0 <= restored.min() and restored.max() <= 1



MADE_SD_CONFIGS = sorted(path for folder in ('rass', 'scr', 'protocols')
                         for path in glob.glob(repo_path('configs', folder, '*.py')) if needs_made_tiny_sd(path))


@pytest.mark.parametrize('config', MADE_SD_CONFIGS, ids=osp.basename)
def test_every_config_on_the_made_folder_builds_from_it(made, config, tmp_path, monkeypatch):
    """The configs that read checkpoints/tiny-sd-textures build from a folder this tool made (linked there)."""
    folder = made[0] / 'tiny_sd'
    (tmp_path / 'checkpoints').mkdir()
    os.symlink(folder, tmp_path / 'checkpoints' / 'tiny-sd-textures')
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(config).model
    if cfg.type == 'RestoreThenSegment':
        cfg.restorer_checkpoint = cfg.segmentor_checkpoint = None  # checkpoints come from training runs
    model = MODELS.build(cfg)
    expected = load_file(str(folder / 'vae' / 'diffusion_pytorch_model.safetensors'))['encoder.conv_in.weight']
    backbones = [model.restorer.backbone, model.segmentor.backbone] if hasattr(model, 'restorer') else [
        model.backbone]
    for backbone in backbones:  # the made VAE, not a random one
        assert torch.equal(backbone.vae.encoder.conv_in.weight, expected)


def test_scaling_factor_is_one_over_the_latent_std_of_the_training_images(made):
    tmp_path, config = made
    vae = AutoencoderKL.from_pretrained(str(tmp_path / 'tiny_sd'), subfolder='vae', local_files_only=True)
    images = pretrained_folder.read_images(sorted(str(p) for p in (tmp_path / 'data' / 'img_dir' / 'train').iterdir()))
    with torch.no_grad():
        std = vae.encode(images).latent_dist.mode().std()
    assert vae.config.scaling_factor == pytest.approx(1 / float(std), rel=1e-4)
    manifest = json.loads((tmp_path / 'tiny_sd' / 'rass_tiny_sd.json').read_text())
    assert manifest['recipe']['iters'] == 3 and manifest['recipe']['architecture']['vae']['latent_channels'] == 12


def test_same_recipe_is_reused_and_another_is_refused_without_writing(made, capsys):
    tmp_path, config = made
    weights = tmp_path / 'tiny_sd' / 'vae' / 'diffusion_pytorch_model.safetensors'
    before = (weights.stat().st_mtime_ns, weights.read_bytes())
    make_tiny_sd.main([config, *TINY_SD_FAST])
    assert 'reused' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='is not this recipe\'s tiny SD folder'):
        make_tiny_sd.main([config, *TINY_SD_FAST[:1], '4', *TINY_SD_FAST[2:]])
    with pytest.raises(SystemExit, match='is not this recipe\'s tiny SD folder'):
        make_tiny_sd.main([config, *TINY_SD_FAST, '--ldm-iters', '5'])
    assert (weights.stat().st_mtime_ns, weights.read_bytes()) == before


def test_a_foreign_folder_is_never_overwritten(tmp_path):
    config = small_tiny_sd_config(tmp_path)
    os.makedirs(tmp_path / 'tiny_sd')
    (tmp_path / 'tiny_sd' / 'mine.txt').write_text('keep me')
    with pytest.raises(SystemExit, match='nothing was overwritten'):
        make_tiny_sd.main([config, *TINY_SD_FAST])
    assert (tmp_path / 'tiny_sd' / 'mine.txt').read_text() == 'keep me'
    assert sorted(os.listdir(tmp_path / 'tiny_sd')) == ['mine.txt']


def test_a_broken_manifest_or_a_file_in_the_way_is_refused(tmp_path):
    config = small_tiny_sd_config(tmp_path)
    os.makedirs(tmp_path / 'tiny_sd')
    (tmp_path / 'tiny_sd' / 'rass_tiny_sd.json').write_text('{not json')
    with pytest.raises(SystemExit, match=r'tiny_sd exists and is not this recipe'):
        make_tiny_sd.main([config, *TINY_SD_FAST])
    assert (tmp_path / 'tiny_sd' / 'rass_tiny_sd.json').read_text() == '{not json'
    (tmp_path / 'tiny_sd' / 'rass_tiny_sd.json').unlink()
    os.rmdir(tmp_path / 'tiny_sd')
    (tmp_path / 'tiny_sd').write_text('a file')
    with pytest.raises(SystemExit, match='is not a folder'):
        make_tiny_sd.main([config, *TINY_SD_FAST])
    assert (tmp_path / 'tiny_sd').read_text() == 'a file'


def test_vae_training_lowers_the_reconstruction_error(tmp_path):
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    images = torch.nn.functional.interpolate(images[..., ::4, ::4], size=(32, 32), mode='bilinear')  # smooth
    cfg = Config.fromfile(TINY_SD_CONFIG)
    torch.manual_seed(0)
    vae = AutoencoderKL(**cfg.tiny_sd_architecture.vae)
    before = autoencoder.psnr(autoencoder.reconstruct(vae, images), images)
    args = make_tiny_sd.parse_args([TINY_SD_CONFIG, '--iters', '40', '--batch-size', '4', '--crop', '32'])
    after = autoencoder.train_vae(vae, images, images, make_tiny_sd.vae_recipe(args))
    assert after > before + 3, (before, after)


def test_configs_without_the_architecture_are_refused(tmp_path):
    with pytest.raises(SystemExit, match='needs tiny_sd_architecture'):
        make_tiny_sd.main([repo_path('configs', 'scr', 'scr_tiny-sd_1xb4-300it_textures-128x128.py')])
    assert not osp.exists(tmp_path / 'tiny_sd')


def test_the_caption_tokens_are_those_of_the_rass_prompt_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    from rass_mmseg.models.prompts.text_encoding import encode_phrases
    from rass_mmseg.models.utils.sd_components import build_byte_level_clip_tokenizer
    cfg = Config.fromfile(TINY_SD_CONFIG)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(**cfg.tiny_sd_architecture.text_encoder)).eval()
    tokenizer = build_byte_level_clip_tokenizer(77)
    for phrases in (['brick', 'grass', 'cloud'], ['text'], ['']):
        ids = torch.tensor([latent_diffusion.caption_token_ids(phrases, tokenizer)])
        with torch.no_grad():
            ours = text_encoder(ids)[0]
        assert torch.equal(ours, encode_phrases(phrases, tokenizer, text_encoder).embeddings), phrases
    with pytest.raises(ValueError, match=r"caption \['brick', .*\] needs 2 windows of 75 tokens, more than one"):
        latent_diffusion.caption_token_ids(['brick'] * 13, tokenizer)  # 13 x 5 tokens + 12 commas > 75
    labels = torch.tensor([[[0, 0], [7, 255]], [[3, 3], [3, 3]]])
    assert latent_diffusion.captions_of(labels, ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']) == [['a', 'h'], ['d']]


def _held_out_mse(unet, text_encoder, tokenizer, scheduler, latents, captions) -> float:
    """Epsilon MSE computed here from the schedule's alphas (not with the code under test's noising)."""
    generator = torch.Generator().manual_seed(123)
    ids = torch.tensor([latent_diffusion.caption_token_ids(c, tokenizer) for c in captions])
    errors = []
    with torch.no_grad():
        for t in (50, 250, 500, 750):
            noise = torch.randn(latents.shape, generator=generator)
            alpha = scheduler.alphas_cumprod[t]
            noisy = alpha.sqrt() * latents + (1 - alpha).sqrt() * noise
            steps = torch.full((len(latents), ), t)
            errors.append(float((unet(noisy, steps, text_encoder(ids)[0]).sample - noise).pow(2).mean()))
    return sum(errors) / len(errors)


def test_diffusion_training_lowers_a_held_out_denoising_error():
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from rass_mmseg.models.backbones.scr_backbone import SD21_BASE_SCHEDULER
    from rass_mmseg.models.utils.sd_components import build_byte_level_clip_tokenizer
    cfg = Config.fromfile(TINY_SD_CONFIG)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**cfg.tiny_sd_architecture.unet)
    text_encoder = CLIPTextModel(CLIPTextConfig(**cfg.tiny_sd_architecture.text_encoder))
    tokenizer, scheduler = build_byte_level_clip_tokenizer(77), DDPMScheduler(**SD21_BASE_SCHEDULER)
    # latents: two classes with their own constant codes, split left/right at a random column
    codes = torch.randn(2, 12, 1, 1)
    labels = torch.zeros(16, 16, 16, dtype=torch.long)
    for i in range(16):
        labels[i, :, (i % 7) * 2 + 2:] = 1
    latents = torch.where(labels[:, None, ::2, ::2] == 0, codes[0], codes[1])
    names = ['brick', 'grass']
    before = _held_out_mse(unet, text_encoder, tokenizer, scheduler, latents[:4],
                           latent_diffusion.captions_of(labels[:4], names))
    recipe = latent_diffusion.LDMRecipe(iters=40, batch_size=4, crop=8, lr=2e-3, warmup=5, seed=0)
    history = latent_diffusion.train_ldm(unet, text_encoder, tokenizer, scheduler, latents, labels, names, recipe)
    after = _held_out_mse(unet, text_encoder, tokenizer, scheduler, latents[:4],
                          latent_diffusion.captions_of(labels[:4], names))
    assert len(history) == 40 and after < 0.7 * before, (before, after)
    assert not any(p.requires_grad for p in unet.parameters())  # handed back frozen, in eval mode
    assert not unet.training and not text_encoder.training


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, capsys):
    config = small_tiny_sd_config(tmp_path)
    recipe = [*TINY_SD_FAST[:7], '5', *TINY_SD_FAST[8:], '--save-every', '2']
    make_tiny_sd.main([config, *recipe, '--out', str(tmp_path / 'straight')])
    make_tiny_sd.main([config, *recipe, '--out', str(tmp_path / 'resumed'), '--stop-after', '3'])
    assert 'stopped after 3 of 5' in capsys.readouterr().out
    assert not (tmp_path / 'resumed').exists()
    staging = [p for p in tmp_path.iterdir() if p.name.startswith('resumed.partial-')]
    assert len(staging) == 1 and (staging[0] / 'ldm_state.pth').is_file() and (staging[0] / 'vae').is_dir()
    make_tiny_sd.main([config, *recipe, '--out', str(tmp_path / 'resumed')])
    assert 'resuming from' in capsys.readouterr().out and not staging[0].exists()
    for name in ('vae/diffusion_pytorch_model.safetensors', 'unet/diffusion_pytorch_model.safetensors',
                 'text_encoder/model.safetensors', 'diagnostics/ldm_loss.csv'):
        assert (tmp_path / 'straight' / name).read_bytes() == (tmp_path / 'resumed' / name).read_bytes(), name
