"""tools/make_tiny_sd.py: a complete diffusers folder the SCR demo config loads, reused or refused, never
overwritten."""
import json
import os
import os.path as osp
import sys

import pytest
import torch
from diffusers import AutoencoderKL
from mmengine.config import Config
from mmseg.registry import MODELS

from tests.utils import repo_path

sys.path.insert(0, repo_path('tools'))
import make_tiny_sd  # noqa: E402

DEMO_CONFIG = repo_path('configs', 'scr', 'scr_tiny-sd-textures_1xb4-300it_textures-128x128.py')
FAST = ['--iters', '3', '--batch-size', '2', '--crop', '32']


def small_config(tmp_path) -> str:
    """The demo config with a 4 + 2 image generated dataset and the folder in tmp_path."""
    data = dict(data_root=str(tmp_path / 'data'), generate_cfg=dict(seed=0, num_train=4, num_val=2, image_size=64))
    path = tmp_path / 'config.py'
    path.write_text(f'_base_ = [{DEMO_CONFIG!r}]\n'
                    f'train_dataloader = dict(dataset={data!r})\n'
                    f'val_dataloader = dict(dataset={data!r})\n'
                    f'model = dict(backbone=dict(pretrained={str(tmp_path / "tiny_sd")!r}),\n'
                    f'             decode_head=dict(pretrained={str(tmp_path / "tiny_sd")!r}))\n')
    return str(path)


@pytest.fixture(scope='module')
def made(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('tiny_sd')
    config = small_config(tmp_path)
    make_tiny_sd.main([config, *FAST])
    return tmp_path, config


def test_folder_is_complete_and_the_scr_demo_builds_from_it(made):
    tmp_path, config = made
    folder = tmp_path / 'tiny_sd'
    for name in ('vae/config.json', 'vae/diffusion_pytorch_model.safetensors', 'unet/config.json',
                 'text_encoder/config.json', 'scheduler/scheduler_config.json',
                 'rass_tiny_sd.json'):
        assert (folder / name).is_file(), name
    assert any((folder / 'tokenizer' / name).is_file() for name in ('vocab.json', 'tokenizer.json'))
    assert not [name for name in os.listdir(tmp_path) if 'partial' in name]  # the staging folder was renamed
    cfg = Config.fromfile(config)
    model = MODELS.build(cfg.model)
    assert model.backbone.latent_stride == 2 and model.backbone.unet.config.in_channels == 12
    assert model.backbone.timestep == 100 and model.decode_head.vae.decoder is not None
    restored = model.restore(torch.rand(1, 3, 64, 64) * 2 - 1)
    assert restored.shape == (1, 3, 64, 64) and 0 <= restored.min() and restored.max() <= 1


def test_scaling_factor_is_one_over_the_latent_std_of_the_training_images(made):
    tmp_path, config = made
    vae = AutoencoderKL.from_pretrained(str(tmp_path / 'tiny_sd'), subfolder='vae', local_files_only=True)
    images = make_tiny_sd.read_images(sorted(str(p) for p in (tmp_path / 'data' / 'img_dir' / 'train').iterdir()))
    with torch.no_grad():
        std = vae.encode(images).latent_dist.mode().std()
    assert vae.config.scaling_factor == pytest.approx(1 / float(std), rel=1e-4)
    manifest = json.loads((tmp_path / 'tiny_sd' / 'rass_tiny_sd.json').read_text())
    assert manifest['recipe']['iters'] == 3 and manifest['recipe']['architecture']['vae']['latent_channels'] == 12


def test_same_recipe_is_reused_and_another_is_refused_without_writing(made, capsys):
    tmp_path, config = made
    weights = tmp_path / 'tiny_sd' / 'vae' / 'diffusion_pytorch_model.safetensors'
    before = (weights.stat().st_mtime_ns, weights.read_bytes())
    make_tiny_sd.main([config, *FAST])
    assert 'reused' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='is not this recipe\'s tiny SD folder'):
        make_tiny_sd.main([config, *FAST[:1], '4', *FAST[2:]])
    assert (weights.stat().st_mtime_ns, weights.read_bytes()) == before


def test_a_foreign_folder_is_never_overwritten(tmp_path):
    config = small_config(tmp_path)
    os.makedirs(tmp_path / 'tiny_sd')
    (tmp_path / 'tiny_sd' / 'mine.txt').write_text('keep me')
    with pytest.raises(SystemExit, match='nothing was overwritten'):
        make_tiny_sd.main([config, *FAST])
    assert (tmp_path / 'tiny_sd' / 'mine.txt').read_text() == 'keep me'
    assert sorted(os.listdir(tmp_path / 'tiny_sd')) == ['mine.txt']


def test_a_broken_manifest_or_a_file_in_the_way_is_refused(tmp_path):
    config = small_config(tmp_path)
    os.makedirs(tmp_path / 'tiny_sd')
    (tmp_path / 'tiny_sd' / 'rass_tiny_sd.json').write_text('{not json')
    with pytest.raises(SystemExit, match=r'tiny_sd exists and is not this recipe'):
        make_tiny_sd.main([config, *FAST])
    assert (tmp_path / 'tiny_sd' / 'rass_tiny_sd.json').read_text() == '{not json'
    (tmp_path / 'tiny_sd' / 'rass_tiny_sd.json').unlink()
    os.rmdir(tmp_path / 'tiny_sd')
    (tmp_path / 'tiny_sd').write_text('a file')
    with pytest.raises(SystemExit, match='is not a folder'):
        make_tiny_sd.main([config, *FAST])
    assert (tmp_path / 'tiny_sd').read_text() == 'a file'


def test_vae_training_lowers_the_reconstruction_error(tmp_path):
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    images = torch.nn.functional.interpolate(images[..., ::4, ::4], size=(32, 32), mode='bilinear')  # smooth
    cfg = Config.fromfile(DEMO_CONFIG)
    torch.manual_seed(0)
    vae = AutoencoderKL(**cfg.tiny_sd_architecture.vae)
    before = make_tiny_sd.psnr(make_tiny_sd.reconstruct(vae, images), images)
    args = make_tiny_sd.parse_args([DEMO_CONFIG, '--iters', '40', '--batch-size', '4', '--crop', '32'])
    after = make_tiny_sd.train_vae(vae, images, images, args)
    assert after > before + 3, (before, after)


def test_configs_without_the_architecture_are_refused(tmp_path):
    with pytest.raises(SystemExit, match='needs tiny_sd_architecture'):
        make_tiny_sd.main([repo_path('configs', 'scr', 'scr_tiny-sd_1xb4-300it_textures-128x128.py')])
    assert not osp.exists(tmp_path / 'tiny_sd')
