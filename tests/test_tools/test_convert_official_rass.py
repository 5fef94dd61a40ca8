"""tools/model_converters/convert_official_rass.py end to end at tiny size: synthetic scr.pkl and rass.pth in the
public layout -> an adapter folder and a checkpoint that the model built from the SD folder with that adapter merged
loads strictly; or rass.pth alone -> a checkpoint and an SD folder holding rass.pth's own UNet (SD with the SCR
LoRA merged)."""
import json

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from mmseg.registry import MODELS
from safetensors.torch import load_file

from rass_mmseg.models.adapters.adapter_folder import RASS_METADATA
from rass_mmseg.models.adapters.lora_adapters import base_weights_fingerprint
from rass_mmseg.models.utils.sd_components import build_sd_components
from tests.test_converters.official_checkpoints import (
    PAPER,
    TINY,
    Maker,
    merge_scr_by_hand,
    official_rass_state_dict,
    official_scr_checkpoint,
)
from tests.utils import load_tool, repo_path

tool = load_tool('model_converters/convert_official_rass')
FINGERPRINT, main = tool.FINGERPRINT, tool.main

TINY_CONFIG = repo_path('configs', 'rass', 'rass_tiny-sd_mask2former_1xb4-300it_textures-128x128.py')
SD_PARTS = ('vae', 'unet', 'text_encoder')


@pytest.fixture(scope='module')
def release(tmp_path_factory):
    """A tiny SD folder, and scr.pkl / rass.pth written as the public code writes them."""
    root = tmp_path_factory.mktemp('release')
    cfg = Config.fromfile(TINY_CONFIG)
    torch.manual_seed(0)
    vae, unet, text_encoder, tokenizer = build_sd_components(**{k: cfg.tiny_sd[k] for k in SD_PARTS})
    for name, part in dict(vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer).items():
        part.save_pretrained(root / 'sd' / name)
    torch.save(official_scr_checkpoint(unet, 4, Maker(seed=5)), root / 'scr.pkl')
    state = official_rass_state_dict(TINY, cfg.tiny_sd, Maker(seed=6))
    torch.save(dict(model=state, iteration=160000), root / 'rass.pth')
    return root, state, unet


@pytest.fixture(scope='module')
def merged_release(release):
    """rass.pth as the public code writes it after merging scr.pkl into the SD UNet: its UNet base weights are the
    SD folder's UNet with the SCR LoRA merged (computed by hand), the rest as in ``release``."""
    root, _, unet = release
    scr = torch.load(root / 'scr.pkl', weights_only=True)
    merged = merge_scr_by_hand(unet.state_dict(), scr)
    state = official_rass_state_dict(TINY, Config.fromfile(TINY_CONFIG).tiny_sd, Maker(seed=8), merged_unet=merged)
    torch.save(dict(model=state, iteration=160000), root / 'rass_merged.pth')
    return root / 'rass_merged.pth', state, merged


def segmentor(sd_folder: str, merge_adapters):
    cfg = Config.fromfile(TINY_CONFIG).model
    for key in SD_PARTS:
        cfg.backbone.pop(key)
    cfg.backbone.update(pretrained=sd_folder, merge_adapters=list(merge_adapters))
    return MODELS.build(cfg)


def run(*argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    message = str(exit_info.value.code)
    assert message.startswith('convert_official_rass.py: error: ') and '\n' not in message
    return message


def test_converted_checkpoint_loads_strictly_on_sd_with_the_scr_adapter_merged(release, tmp_path):
    root, state, unet = release
    sd = str(root / 'sd')
    main([str(root / 'scr.pkl'), str(tmp_path / 'scr'), '--sd21-base', sd])
    recorded = json.loads((tmp_path / 'scr' / RASS_METADATA).read_text())['base_fingerprint']
    assert recorded == base_weights_fingerprint(unet, ['conv_in'])
    main([str(root / 'rass.pth'), str(tmp_path / 'rass.pth'), '--config', TINY_CONFIG, '--sd21-base', sd,
          '--merge-adapters', str(tmp_path / 'scr')])
    checkpoint = torch.load(tmp_path / 'rass.pth', weights_only=True)
    assert FINGERPRINT in checkpoint['state_dict'] and checkpoint['meta']['frozen_weights'] == 'fingerprint'

    model = segmentor(sd, [str(tmp_path / 'scr')])
    load_checkpoint(model, str(tmp_path / 'rass.pth'), strict=True)
    ours = model.state_dict()
    assert torch.equal(ours['decode_head.cls_embed.weight'], state['sem_seg_head.predictor.class_embed.weight'])
    assert torch.equal(ours['backbone.unet.conv_in.base_layer.weight'],
                       state['backbone.feature_extractor.sd.unet.conv_in.base_layer.weight'])
    to_q = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q'
    assert torch.equal(ours[f'backbone.unet.{to_q}.lora_B.seg.weight'],
                       state[f'backbone.feature_extractor.sd.unet.{to_q}.lora_B.default_encoder_s2.weight'])
    # built without the SCR adapter, the frozen weights differ: refused
    with pytest.raises(ValueError, match='trained on other frozen weights'):
        load_checkpoint(segmentor(sd, []), str(tmp_path / 'rass.pth'), strict=True)


def test_without_sd_weights_the_checkpoint_holds_only_what_trains(release, tmp_path):
    root, state, _ = release
    lines = main([str(root / 'rass.pth'), str(tmp_path / 'rass.pth'), '--config', TINY_CONFIG])
    assert any('no frozen-weights fingerprint' in line for line in lines)
    checkpoint = torch.load(tmp_path / 'rass.pth', weights_only=True)
    assert FINGERPRINT not in checkpoint['state_dict']
    assert checkpoint['meta']['dataset_meta']['classes'][0] == 'wall'
    model = segmentor(str(root / 'sd'), [])
    trained = {key for key, param in model.named_parameters() if param.requires_grad}
    assert set(checkpoint['state_dict']) == trained
    with pytest.raises(RuntimeError, match='Missing key'):  # no fingerprint: a full state dict is expected
        model.load_state_dict(checkpoint['state_dict'], strict=True)
    main([str(root / 'scr.pkl'), str(tmp_path / 'scr')])
    assert json.loads((tmp_path / 'scr' / RASS_METADATA).read_text())['base_fingerprint'] is None


def test_bad_inputs_stop_with_one_line(release, tmp_path):
    root, state, _ = release
    assert 'exists' in run(root / 'rass.pth', root / 'scr.pkl')
    (tmp_path / 'notes.txt').write_text('not a checkpoint')
    assert 'cannot be read with torch.load(weights_only=True)' in run(tmp_path / 'notes.txt', tmp_path / 'out.pth')
    torch.save({'weights': [1, 2]}, tmp_path / 'other.pth')
    assert 'neither an SCR checkpoint' in run(tmp_path / 'other.pth', tmp_path / 'out.pth')
    torch.save(dict(model=dict(state, **{'sem_seg_head.extra.weight': torch.zeros(1)})), tmp_path / 'extra.pth')
    assert 'sem_seg_head.extra.weight' in run(tmp_path / 'extra.pth', tmp_path / 'out.pth', '--config', TINY_CONFIG)
    stripped = official_rass_state_dict(TINY, Config.fromfile(TINY_CONFIG).tiny_sd, Maker(seed=9), frozen=False)
    torch.save(dict(model=stripped), tmp_path / 'stripped.pth')
    message = run(tmp_path / 'stripped.pth', tmp_path / 'out.pth', '--config', TINY_CONFIG, '--sd21-base', root / 'sd')
    assert 'holds no frozen UNet' in message and '--merge-adapters' in message
    (tmp_path / 'out_sd21-base-scr').mkdir()  # the UNet folder exists: refused before anything is converted
    assert 'out_sd21-base-scr exists' in run(root / 'rass.pth', tmp_path / 'out.pth', '--config', TINY_CONFIG,
                                            '--sd21-base', root / 'sd')
    assert not any((tmp_path / 'out_sd21-base-scr').iterdir())
    # the paper config does not take the tiny model's tensors
    assert 'does not fit' in run(root / 'rass.pth', tmp_path / 'out.pth')
    assert not (tmp_path / 'out.pth').exists()


def test_paper_size_release_without_frozen_weights_converts_for_the_paper_config(tmp_path):
    """The default --config (the paper's): a stripped paper-size rass.pth (only what trains) converts and fits."""
    cfg = Config.fromfile(repo_path('configs', '_base_', 'models', 'sd21_base.py'))
    sd_arch = dict(vae=cfg.sd21_base_vae, unet=cfg.sd21_base_unet, text_encoder=cfg.sd21_base_text_encoder)
    state = official_rass_state_dict(PAPER, sd_arch, Maker(seed=7), frozen=False)
    torch.save(dict(model=state), tmp_path / 'rass.pth')
    lines = main([str(tmp_path / 'rass.pth'), str(tmp_path / 'converted.pth')])
    converted = torch.load(tmp_path / 'converted.pth', weights_only=True)['state_dict']
    assert len(converted) == len(state) - 1 and lines[0].startswith(f'{len(converted)} tensors mapped')
    assert lines[1].startswith('left out: 1 x loss class weights')  # criterion.empty_weight, all else is mapped
    assert torch.equal(converted['decode_head.query_feat.weight'], state['sem_seg_head.predictor.query_feat.weight'])


def test_rass_pth_and_sd_base_suffice_and_predict_as_the_scr_route(release, merged_release, tmp_path):
    """Without scr.pkl: the UNet folder holds rass.pth's UNet bit for bit, the checkpoint loads strictly on it, and
    the model predicts what the model built from SD + the adapter converted from scr.pkl predicts."""
    root, _, _ = release
    rass_pth, state, merged = merged_release
    sd = str(root / 'sd')
    lines = main([str(rass_pth), str(tmp_path / 'rass.pth'), '--config', TINY_CONFIG, '--sd21-base', sd])
    folder = tmp_path / 'rass_sd21-base-scr'
    assert lines[-1].endswith(f'--cfg-options model.backbone.pretrained={folder}')
    written = load_file(folder / 'unet' / 'diffusion_pytorch_model.safetensors')
    assert sorted(written) == sorted(merged)
    prefix = 'backbone.feature_extractor.sd.unet.'
    for key, value in written.items():  # the official UNet: base_layer or plain tensors of rass.pth, bit for bit
        module, _, param = key.rpartition('.')
        official = state.get(f'{prefix}{module}.base_layer.{param}', state.get(prefix + key))
        assert value.dtype == official.dtype and torch.equal(value, official), key
    checkpoint = torch.load(tmp_path / 'rass.pth', weights_only=True)
    assert checkpoint['meta']['backbone'] == dict(pretrained=str(folder), merge_adapters=[])
    direct = segmentor(str(folder), []).eval()
    load_checkpoint(direct, str(tmp_path / 'rass.pth'), strict=True)

    main([str(root / 'scr.pkl'), str(tmp_path / 'scr'), '--sd21-base', sd])
    main([str(rass_pth), str(tmp_path / 'rass_scr.pth'), '--config', TINY_CONFIG, '--sd21-base', sd,
          '--merge-adapters', str(tmp_path / 'scr')])
    rebuilt = segmentor(sd, [str(tmp_path / 'scr')]).eval()
    load_checkpoint(rebuilt, str(tmp_path / 'rass_scr.pth'), strict=True)
    to_q = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q'
    ours, theirs = (model.backbone.unet.get_parameter(f'{to_q}.base_layer.weight') for model in (direct, rebuilt))
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)  # SCR merged into SD as the public code does
    assert not torch.allclose(ours, release[2].get_parameter(f'{to_q}.weight'), atol=1e-3)  # not SD's own UNet
    inputs = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    metas = [dict(img_shape=(32, 32), ori_shape=(32, 32), pad_shape=(32, 32))]
    with torch.no_grad():
        torch.testing.assert_close(direct.inference(inputs, metas), rebuilt.inference(inputs, metas),
                                   rtol=1e-5, atol=1e-5)
