"""The UNet inside the public RASS checkpoint (SD with the SCR LoRA merged, Seg LoRA beside it) -> a Stable Diffusion
folder: the released tensors bit for bit, the other parts linked to SD 2.1-base, nothing written on bad input."""
import copy
import os

import pytest
import torch
from diffusers import UNet2DConditionModel
from mmengine.config import Config
from safetensors.torch import load_file

from rass_mmseg.converters import merged_unet_state_dict, write_unet_folder
from rass_mmseg.models.utils.sd_components import build_sd_components
from tests.test_converters.official_checkpoints import TINY, Maker, official_rass_state_dict
from tests.utils import repo_path

TINY_CONFIG = repo_path('configs', 'rass', 'rass_tiny-sd_mask2former_1xb4-300it_textures-128x128.py')
D2_UNET = 'backbone.feature_extractor.sd.unet.'


@pytest.fixture(scope='module')
def release(tmp_path_factory):
    """A tiny SD folder and a public-layout state dict whose UNet base weights are known (``merged``)."""
    root = tmp_path_factory.mktemp('official_unet')
    cfg = Config.fromfile(TINY_CONFIG)
    torch.manual_seed(0)
    parts = build_sd_components(**{k: cfg.tiny_sd[k] for k in ('vae', 'unet', 'text_encoder')})
    for name, part in zip(('vae', 'unet', 'text_encoder', 'tokenizer'), parts):
        part.save_pretrained(root / 'sd' / name)
    (root / 'sd' / 'model_index.json').write_text('{"_class_name": "StableDiffusionPipeline"}')
    (root / 'sd' / 'v2-1_512-ema-pruned.ckpt').write_text('a file of the repository, not a pipeline part')
    torch.manual_seed(1)
    merged = UNet2DConditionModel(**cfg.tiny_sd.unet).state_dict()
    state = official_rass_state_dict(TINY, cfg.tiny_sd, Maker(seed=2), merged_unet=merged)
    return root, cfg, merged, state


def test_the_merged_unet_is_the_checkpoints_unet_without_the_seg_lora(release):
    _, cfg, merged, state = release
    unet = merged_unet_state_dict(state)
    assert list(unet) == list(merged)  # every diffusers key, in the UNet's order
    assert all(unet[key] is merged[key] for key in merged)  # the checkpoint's own tensors
    assert any(f'{D2_UNET}{key.replace(".weight", ".base_layer.weight")}' in state for key in merged)
    stripped = official_rass_state_dict(TINY, cfg.tiny_sd, Maker(seed=3), frozen=False)
    assert merged_unet_state_dict(stripped) == {}  # only what trains (conv_in and the LoRA): no UNet
    doubled = dict(state, **{D2_UNET + 'conv_in.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match='UNet weight conv_in.weight is stored twice') as error:
        merged_unet_state_dict(doubled)
    assert '\n' not in str(error.value)


def test_unet_folder_holds_the_released_tensors_and_links_the_other_parts(release, tmp_path):
    root, _, merged, state = release
    out = tmp_path / 'rass_sd'
    linked = write_unet_folder(merged_unet_state_dict(state), str(root / 'sd'), str(out))
    assert linked == ['model_index.json', 'text_encoder', 'tokenizer', 'vae']
    for name in linked:
        assert os.readlink(out / name) == str((root / 'sd' / name).absolute())
    assert not (out / 'v2-1_512-ema-pruned.ckpt').exists()
    assert (out / 'unet' / 'config.json').read_bytes() == (root / 'sd' / 'unet' / 'config.json').read_bytes()
    written = load_file(out / 'unet' / 'diffusion_pytorch_model.safetensors')
    assert list(written) == sorted(merged)
    for key, value in merged.items():
        assert written[key].dtype == value.dtype and torch.equal(written[key], value), key
    unet = UNet2DConditionModel.from_pretrained(str(out), subfolder='unet', local_files_only=True,
                                                use_safetensors=True)
    assert all(torch.equal(unet.state_dict()[key], value) for key, value in merged.items())


def test_bad_inputs_write_nothing(release, tmp_path):
    root, _, merged, state = release
    unet = merged_unet_state_dict(state)
    out = tmp_path / 'rass_sd'
    missing = dict(unet)
    missing.pop('conv_out.bias')
    with pytest.raises(ValueError, match=r"does not fit .*unet/config.json: 1 missing keys \(e.g. \['conv_out.bias'\]"):
        write_unet_folder(missing, str(root / 'sd'), str(out))
    wrong = dict(unet, **{'conv_out.bias': torch.zeros(5)})
    with pytest.raises(ValueError, match=r'conv_out.bias \(5,\) where that UNet has \(4,\)'):
        write_unet_folder(wrong, str(root / 'sd'), str(out))
    partial = tmp_path / 'partial_sd'  # a UNet and nothing else
    (partial / 'unet').mkdir(parents=True)
    (partial / 'unet' / 'config.json').write_bytes((root / 'sd' / 'unet' / 'config.json').read_bytes())
    with pytest.raises(FileNotFoundError, match='partial_sd: missing vae/config.json'):
        write_unet_folder(unet, str(partial), str(out))
    assert not out.exists()
    out.mkdir()
    (out / 'notes.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='exists'):
        write_unet_folder(unet, str(root / 'sd'), str(out))
    assert sorted(os.listdir(out)) == ['notes.txt'] and (out / 'notes.txt').read_text() == 'mine'


def test_a_failed_write_removes_the_partial_folder_and_never_touches_the_sd_folder(release, tmp_path, monkeypatch):
    root, _, _, state = release
    before = sorted(os.listdir(root / 'sd' / 'vae'))
    import rass_mmseg.converters.official_unet as module

    def full_disk(*args, **kwargs):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(module, 'save_file', full_disk)
    with pytest.raises(OSError, match='No space left'):
        write_unet_folder(copy.copy(merged_unet_state_dict(state)), str(root / 'sd'), str(tmp_path / 'rass_sd'))
    assert not (tmp_path / 'rass_sd').exists()
    assert sorted(os.listdir(root / 'sd' / 'vae')) == before
