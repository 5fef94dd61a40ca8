"""Checkpoints without the frozen SD weights: what is saved, strict loading, the fingerprint check, full state dicts."""
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint, save_checkpoint
from mmseg.registry import MODELS

from rass_mmseg.models.adapters.lora_adapters import base_weights_fingerprint, lora_parameter_names
from rass_mmseg.models.backbones import RASSBackbone
from rass_mmseg.models.utils.frozen_weights import FINGERPRINT_KEY, fingerprint_tensors, persistent_state
from rass_mmseg.models.utils.sd_components import build_sd_components
from tests.utils import repo_path

SD_KEYS = ('vae', 'unet', 'text_encoder')


def write_sd_folder(folder, cfg: dict, seed: int) -> str:
    torch.manual_seed(seed)
    vae, unet, text_encoder, tokenizer = build_sd_components(**{k: cfg[k] for k in SD_KEYS})
    for name, part in dict(vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer).items():
        part.save_pretrained(folder / name)
    return str(folder)


@pytest.fixture(scope='module')
def sd_folders(tmp_path_factory):
    base = repo_path('configs', '_base_', 'models', 'rass_tiny-sd_segformer-head.py')
    cfg = Config.fromfile(base).model.backbone.to_dict()
    root = tmp_path_factory.mktemp('sd')
    return write_sd_folder(root / 'a', cfg, 0), write_sd_folder(root / 'b', cfg, 1)


@pytest.fixture
def segmentor_cfg(sd_folders):
    config = repo_path('configs', 'rass', 'rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py')
    cfg = Config.fromfile(config).model
    for key in SD_KEYS:
        cfg.backbone.pop(key)
    cfg.backbone.pretrained = sd_folders[0]
    return cfg


def build(cfg, seed=0, **backbone):
    torch.manual_seed(seed)
    cfg = Config(dict(model=cfg)).model
    cfg.backbone.update(backbone)
    return MODELS.build(cfg)


def trained_names(model) -> set:
    return {name for name, param in model.named_parameters() if param.requires_grad}


def perturb_trainable(model, seed=3):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=generator) * 0.05)


def test_state_dict_holds_what_trains_and_a_fingerprint(segmentor_cfg):
    model = build(segmentor_cfg)
    state = model.state_dict()
    params = {name for name, _ in model.named_parameters()}
    buffers = {key for key in persistent_state(model) if key not in params and not key.startswith('backbone.')}
    assert set(state) == trained_names(model) | buffers | {f'backbone.{FINGERPRINT_KEY}'}
    assert not any(key.startswith(('backbone.vae.', 'backbone.text_encoder.')) for key in state)
    frozen = {key: value for key, value in persistent_state(model.backbone).items()
              if key in set(model.backbone.frozen_state_keys())}
    assert bytes(state[f'backbone.{FINGERPRINT_KEY}'].tolist()).decode() == fingerprint_tensors(frozen)
    full = build(segmentor_cfg, save_frozen_weights=True).state_dict()
    assert set(full) == set(persistent_state(model)) and FINGERPRINT_KEY not in ''.join(full)


def test_fingerprint_digest_is_the_adapter_fingerprint(segmentor_cfg):
    unet = build(segmentor_cfg).backbone.unet
    assert fingerprint_tensors({k.replace('.base_layer', ''): v for k, v in unet.state_dict().items()
                                if 'lora_' not in k}) == base_weights_fingerprint(unet)


@pytest.mark.parametrize('loader', ['torch', 'mmengine'])
def test_slim_checkpoint_restores_the_trained_model_strictly(segmentor_cfg, tmp_path, loader):
    trained = build(segmentor_cfg).eval()
    perturb_trainable(trained)
    restored = build(segmentor_cfg, seed=5).eval()
    if loader == 'torch':
        result = restored.load_state_dict(trained.state_dict(), strict=True)
        assert not result.missing_keys and not result.unexpected_keys
    else:
        save_checkpoint({'state_dict': trained.state_dict()}, str(tmp_path / 'slim.pth'))
        load_checkpoint(restored, str(tmp_path / 'slim.pth'), strict=True)
    for (name, a), (_, b) in zip(persistent_state(trained).items(), persistent_state(restored).items()):
        assert torch.equal(a, b), name
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(trained.extract_feat(images), restored.extract_feat(images), rtol=0, atol=0)


def test_slim_checkpoint_on_other_base_weights_is_refused(segmentor_cfg, sd_folders):
    state = build(segmentor_cfg).state_dict()
    other = build(segmentor_cfg, pretrained=sd_folders[1])
    with pytest.raises(ValueError, match=r'trained on other frozen weights .*pretrained=.*/b') as error:
        other.load_state_dict(state)
    assert '\n' not in str(error.value)


def test_full_state_dicts_still_load_and_missing_trained_keys_are_reported(segmentor_cfg):
    full_model = build(segmentor_cfg, save_frozen_weights=True)
    perturb_trainable(full_model)
    slim_model = build(segmentor_cfg)
    slim_model.load_state_dict(full_model.state_dict(), strict=True)
    assert torch.equal(slim_model.decode_head.conv_seg.weight, full_model.decode_head.conv_seg.weight)
    state = full_model.state_dict()
    state.pop('backbone.vae.encoder.conv_in.weight')  # no fingerprint: every key is expected
    with pytest.raises(RuntimeError, match='Missing key.*backbone.vae.encoder.conv_in.weight'):
        slim_model.load_state_dict(state, strict=True)
    state = slim_model.state_dict()
    lora_key = next(k for k in state if 'lora_A' in k)
    state.pop(lora_key)  # a trained weight is never forgiven
    with pytest.raises(RuntimeError, match=f'Missing key.*{lora_key}'):
        build(segmentor_cfg).load_state_dict(state, strict=True)


def test_random_init_backbones_keep_their_frozen_weights(tiny_backbone_cfg):
    backbone_cfg = dict(tiny_backbone_cfg)
    backbone_cfg.pop('type')
    state = RASSBackbone(**backbone_cfg).state_dict()
    assert any(key.startswith('vae.') for key in state) and FINGERPRINT_KEY not in state


def test_merged_seg_lora_keeps_the_whole_unet(segmentor_cfg):
    model = build(segmentor_cfg)
    model.backbone.merge_lora()
    state = model.state_dict()
    assert 'backbone.unet.down_blocks.0.resnets.0.conv1.weight' in state
    assert not any(key.startswith('backbone.vae.') for key in state)
    assert not lora_parameter_names(model.backbone.unet, 'seg')


def test_checkpoint_sizes(segmentor_cfg, capsys):
    model = build(segmentor_cfg)

    def megabytes(state):
        return sum(t.numel() * t.element_size() for t in state.values()) / 2**20

    slim, full = megabytes(model.state_dict()), megabytes(persistent_state(model))
    print(f'\ntiny RASS state dict: {slim:.2f} MB without frozen weights, {full:.2f} MB with')
    assert slim < full / 4
