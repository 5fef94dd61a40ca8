"""The public SCR checkpoint -> an adapter folder: merged into a UNet it gives the weights the public code's
``load_ckpt_from_state_dict`` + ``merge_and_unload`` would (base + alpha / rank * B @ A, ``conv_in`` replaced)."""
import copy
import json

import pytest
import torch
from diffusers import UNet2DConditionModel
from mmengine.config import Config
from peft import PeftModel, get_peft_model_state_dict, inject_adapter_in_model
from torch import nn

from rass_mmseg.converters import convert_scr_checkpoint, write_scr_adapter
from rass_mmseg.models.adapters.adapter_folder import RASS_METADATA, read_adapter_folder
from rass_mmseg.models.adapters.lora_adapters import DEFAULT_LORA_TARGETS, add_lora_adapter, merge_lora_adapter
from tests.test_converters.official_checkpoints import Maker, official_scr_checkpoint
from tests.utils import repo_path

RANK, ALPHA = 4, 8


@pytest.fixture(scope='module')
def unet_arch() -> dict:
    return Config.fromfile(repo_path('configs', '_base_', 'models', 'tiny_sd.py')).tiny_sd.unet.to_dict()


@pytest.fixture(scope='module')
def unet(unet_arch) -> nn.Module:
    torch.manual_seed(0)
    return UNet2DConditionModel(**unet_arch)


@pytest.fixture(scope='module')
def scr_checkpoint(unet) -> dict:
    return official_scr_checkpoint(unet, RANK, Maker(seed=3))


def hand_merged(unet: nn.Module, checkpoint: dict) -> dict:
    """The UNet weights after loading the three public adapters and merging them, computed by hand."""
    owner = {m: adapter for adapter, key in (('default_encoder', 'unet_lora_encoder_modules'),
                                             ('default_decoder', 'unet_lora_decoder_modules'),
                                             ('default_others', 'unet_lora_others_modules')) for m in checkpoint[key]}
    state = checkpoint['state_dict_unet']
    weights = {k: v.clone() for k, v in unet.state_dict().items()}
    weights['conv_in.weight'] = state['conv_in.base_layer.weight'].clone()
    weights['conv_in.bias'] = state['conv_in.base_layer.bias'].clone()
    for module, adapter in owner.items():
        a, b = state[f'{module}.lora_A.{adapter}.weight'], state[f'{module}.lora_B.{adapter}.weight']
        if a.dim() == 2:
            delta = b @ a
        else:  # conv: B is (out, r, 1, 1), A is (r, in, kh, kw)
            delta = torch.einsum('or,rikl->oikl', b[:, :, 0, 0], a)
        weights[f'{module}.weight'] += ALPHA / RANK * delta
    return weights


def test_merged_adapter_folder_gives_the_public_merge(unet, scr_checkpoint, tmp_path):
    adapter = convert_scr_checkpoint(scr_checkpoint)
    write_scr_adapter(adapter, str(tmp_path / 'scr'))
    merged = merge_lora_adapter(copy.deepcopy(unet), str(tmp_path / 'scr'), name='scr')
    expected = hand_merged(unet, scr_checkpoint)
    ours = merged.state_dict()
    assert set(ours) == set(expected)
    changed = 0
    for key, value in expected.items():
        torch.testing.assert_close(ours[key], value, rtol=1e-5, atol=1e-6, msg=key)
        changed += not torch.equal(value, unet.state_dict()[key])
    assert changed == len(adapter.config.target_modules) + 1  # every LoRA module and conv_in's bias
    files = read_adapter_folder(str(tmp_path / 'scr'))
    assert (files.config.r, files.config.lora_alpha, files.trained_modules) == (RANK, ALPHA, ['conv_in'])
    assert json.loads((tmp_path / 'scr' / RASS_METADATA).read_text())['base_fingerprint'] is None


def test_folder_loads_in_plain_peft(unet, scr_checkpoint, tmp_path):
    write_scr_adapter(convert_scr_checkpoint(scr_checkpoint), str(tmp_path / 'scr'))
    model = PeftModel.from_pretrained(copy.deepcopy(unet), str(tmp_path / 'scr'))
    state = scr_checkpoint['state_dict_unet']
    to_q = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q'
    loaded = model.base_model.model.get_submodule(to_q).lora_A['default'].weight
    torch.testing.assert_close(loaded, state[f'{to_q}.lora_A.default_encoder.weight'])


def test_paper_size_scr_adapter_has_the_keys_peft_and_our_seg_lora_have():
    """At SD 2.1-base size (meta): the adapter's LoRA tensors are exactly those peft injects for its target modules,
    which are the modules our Seg LoRA targets."""
    arch = Config.fromfile(repo_path('configs', '_base_', 'models', 'sd21_base.py')).sd21_base_unet.to_dict()
    with torch.device('meta'):
        source_unet, peft_unet, seg_unet = (UNet2DConditionModel(**arch) for _ in range(3))
    adapter = convert_scr_checkpoint(official_scr_checkpoint(source_unet, RANK, Maker('meta')))
    inject_adapter_in_model(copy.deepcopy(adapter.config), peft_unet, adapter_name='scr')  # peft edits its config
    expected = get_peft_model_state_dict(peft_unet, adapter_name='scr')
    assert {k: tuple(v.shape) for k, v in adapter.lora.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    add_lora_adapter(seg_unet, 'seg', RANK, ALPHA, DEFAULT_LORA_TARGETS)
    assert set(get_peft_model_state_dict(seg_unet, adapter_name='seg')) == set(expected)
    assert len(adapter.config.target_modules) == 257 and adapter.config.lora_alpha == ALPHA


def edited(checkpoint: dict, edit) -> dict:
    checkpoint = dict(checkpoint, state_dict_unet=dict(checkpoint['state_dict_unet']))
    edit(checkpoint)
    return checkpoint


@pytest.mark.parametrize('edit, match', [
    (lambda c: c.update(optimizer={}), r"unknown entries \['optimizer'\]"),
    (lambda c: c.pop('unet_lora_others_modules'), r"missing entries \['unet_lora_others_modules'\]"),
    (lambda c: c['state_dict_unet'].pop('conv_in.base_layer.bias'), 'must hold conv_in weight and bias'),
    (lambda c: c['state_dict_unet'].pop('mid_block.resnets.0.conv1.lora_B.default_others.weight'),
     "lack lora_A or lora_B weights, e.g. \\['mid_block.resnets.0.conv1'\\]"),
    (lambda c: c.update(unet_lora_others_modules=c['unet_lora_others_modules'][1:]), 'does not list module'),
    (lambda c: c['state_dict_unet'].update({'time_embedding.linear_1.weight': torch.zeros(1)}), 'unknown layout'),
    (lambda c: c.update(rank_unet=8), 'rank_unet=8'),
])
def test_unknown_or_incomplete_checkpoints_are_refused(scr_checkpoint, edit, match):
    with pytest.raises(ValueError, match=match) as error:
        convert_scr_checkpoint(edited(scr_checkpoint, edit), 'scr.pkl')
    assert '\n' not in str(error.value) and str(error.value).startswith('scr.pkl: ')
