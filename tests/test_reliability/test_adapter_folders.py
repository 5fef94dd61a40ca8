"""A damaged or hostile adapter folder is refused in one line naming the file and the key, before peft builds a
layer or any UNet weight changes (issue 21, item 6)."""
import json
import math
import shutil
from typing import Callable, Dict, Optional

import pytest
import torch
from diffusers import UNet2DConditionModel
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file, save_file

import rass_mmseg.models.adapters.lora_adapters as lora_module
from rass_mmseg.models.adapters.lora_adapters import merge_lora_adapter
from tests.utils import build_rass_backbone, randomize_seg_lora

Edit = Optional[Callable[[dict], None]]


@pytest.fixture(scope='module')
def exported(tiny_cfg, tmp_path_factory) -> dict:
    """A trained-looking adapter folder (rank 4, alpha 8, conv_in trained in full) and its base UNet weights."""
    cfg = tiny_cfg.model.backbone.to_dict()
    source = build_rass_backbone(cfg, lora_alpha=8)
    randomize_seg_lora(source)
    with torch.no_grad():
        source.unet.conv_in.base_layer.weight.add_(0.1)
    folder = tmp_path_factory.mktemp('adapter') / 'seg_adapter'
    source.export_adapter(str(folder))
    base = build_rass_backbone(cfg, deploy=True).unet.state_dict()
    return dict(unet_cfg=cfg['unet'], folder=folder, base=base)


def fresh_unet(exported: dict) -> UNet2DConditionModel:
    unet = UNet2DConditionModel(**exported['unet_cfg'])
    unet.load_state_dict(exported['base'])
    return unet.eval()


def edited_copy(exported: dict, tmp_path, config: Edit = None, lora: Edit = None, trained: Edit = None,
                metadata: Edit = None):
    """A copy of the exported folder with some of its files edited in place."""
    folder = tmp_path / 'edited'
    shutil.copytree(exported['folder'], folder)
    for edit, name in ((config, 'adapter_config.json'), (metadata, 'rass_adapter.json')):
        if edit is not None:
            data = json.loads((folder / name).read_text())
            edit(data)
            (folder / name).write_text(json.dumps(data))  # NaN and Infinity as Python's json writes them
    for edit, name in ((lora, 'adapter_model.safetensors'), (trained, 'trained_modules.safetensors')):
        if edit is not None:
            tensors = load_file(str(folder / name))
            edit(tensors)
            save_file(tensors, str(folder / name))
    return folder


def assert_refused(exported: dict, folder, match: str) -> str:
    """The merge fails with a one-line ValueError and leaves the UNet exactly as it was (no LoRA layer left)."""
    unet = fresh_unet(exported)
    with pytest.raises(ValueError, match=match) as error:
        merge_lora_adapter(unet, str(folder), name='x')
    message = str(error.value)
    assert '\n' not in message
    state = unet.state_dict()
    assert state.keys() == exported['base'].keys()
    assert all(torch.equal(state[key], exported['base'][key]) for key in state)
    assert not any(isinstance(module, BaseTunerLayer) for module in unet.modules())
    assert not hasattr(unet, 'peft_config')
    return message


def first_key(tensors: Dict[str, torch.Tensor], part: str) -> str:
    return sorted(key for key in tensors if part in key)[0]


def test_the_unedited_folder_merges(exported):
    """Control: the refusals below come from the edits."""
    merged = merge_lora_adapter(fresh_unet(exported), str(exported['folder']), name='x')
    assert all(torch.isfinite(param).all() for param in merged.parameters())
    assert not torch.equal(merged.conv_in.weight, exported['base']['conv_in.weight'])


def test_rank_is_checked_against_the_weights_before_peft_builds_a_layer(exported, tmp_path, monkeypatch):
    # r = 1e9 made peft allocate ~144 GB of LoRA layers before any shape check (a raw allocator error)
    def no_layers(*args, **kwargs):
        raise AssertionError('peft built LoRA layers before the rank was checked')

    monkeypatch.setattr(lora_module, 'inject_adapter_in_model', no_layers)
    folder = edited_copy(exported, tmp_path, config=lambda c: c.update(r=10**9))
    assert_refused(exported, folder, r"edited/adapter_config\.json: 'r' is 1000000000 but .*adapter_model\.safetensors "
                   r'holds rank-4 weights')


@pytest.mark.parametrize('rank', [0, -4, 4.0, '4', True, None])
def test_rank_must_be_a_positive_integer(exported, tmp_path, rank):
    folder = edited_copy(exported, tmp_path, config=lambda c: c.update(r=rank))
    assert_refused(exported, folder, r"adapter_config\.json: 'r' must be a positive integer")


@pytest.mark.parametrize('alpha', [math.nan, math.inf, -math.inf, 0, -8, '8', None])
def test_alpha_must_be_finite_and_positive(exported, tmp_path, alpha):
    # lora_alpha NaN merged silently into a UNet with NaN weights
    folder = edited_copy(exported, tmp_path, config=lambda c: c.update(lora_alpha=alpha))
    assert_refused(exported, folder, r"adapter_config\.json: 'lora_alpha' must be a finite number > 0")


@pytest.mark.parametrize('key, value', [('use_rslora', True), ('alpha_pattern', {'conv_in': 2}),
                                        ('rank_pattern', {'conv_in': 2}), ('use_dora', True)])
def test_peft_options_the_merge_would_ignore_are_refused(exported, tmp_path, key, value):
    # e.g. use_rslora scales by alpha / sqrt(r): ignoring it merged a wrongly scaled LoRA without a word
    folder = edited_copy(exported, tmp_path, config=lambda c: c.update({key: value}))
    assert_refused(exported, folder, rf"adapter_config\.json: '{key}' is set")


@pytest.mark.parametrize('bad', [math.nan, math.inf])
@pytest.mark.parametrize('part', ['lora_A', 'lora_B'])
def test_non_finite_lora_weights_are_refused(exported, tmp_path, bad, part):
    # a NaN in the LoRA tensors merged silently into a UNet with non-finite weights
    names = {}

    def poison(tensors):
        names['key'] = first_key(tensors, part)
        tensors[names['key']].view(-1)[3] = bad

    folder = edited_copy(exported, tmp_path, lora=poison)
    message = assert_refused(exported, folder, r'adapter_model\.safetensors: .* holds NaN or infinite values')
    assert names['key'][len('base_model.model.'):] in message


def test_integer_lora_weights_are_refused(exported, tmp_path):

    def to_int(tensors):
        key = first_key(tensors, 'lora_A')
        tensors[key] = tensors[key].to(torch.int32)

    folder = edited_copy(exported, tmp_path, lora=to_int)
    assert_refused(exported, folder, r'adapter_model\.safetensors: .*lora_A\.weight must be a floating-point tensor')


def test_non_finite_trained_module_weights_are_refused(exported, tmp_path):
    folder = edited_copy(exported, tmp_path, trained=lambda t: t['conv_in.weight'].view(-1).__setitem__(0, math.nan))
    assert_refused(exported, folder, r'trained_modules\.safetensors: conv_in\.weight holds NaN or infinite values')


def test_trained_modules_file_replaces_only_the_listed_modules(exported, tmp_path):
    # any UNet weight in trained_modules.safetensors was copied in, after a fingerprint check that skips the listed
    # modules only: a weight the fingerprint vouched for could be replaced
    key = 'down_blocks.0.resnets.0.norm1.weight'
    replacement = torch.zeros_like(exported['base'][key])
    folder = edited_copy(exported, tmp_path, trained=lambda t: t.update({key: replacement}))
    assert_refused(exported, folder, rf"trained_modules\.safetensors: {key} is not a weight of the trained modules "
                   r"\['conv_in'\] that .*rass_adapter\.json lists")


def test_every_listed_trained_module_needs_its_weights(exported, tmp_path):
    folder = edited_copy(exported, tmp_path, metadata=lambda m: m.update(trained_modules=['conv_in', 'conv_out']))
    assert_refused(exported, folder, r"trained_modules\.safetensors: no weights of trained module 'conv_out', which "
                   r'.*rass_adapter\.json lists')


@pytest.mark.parametrize('modules', [[''], ['.'], ['conv_in.'], 'conv_in', [3]])
def test_trained_module_names_must_be_module_names(exported, tmp_path, modules):
    folder = edited_copy(exported, tmp_path, metadata=lambda m: m.update(trained_modules=modules))
    assert_refused(exported, folder, r'rass_adapter\.json: trained modules must be a list of module names')


def test_the_unpublished_first_layout_is_refused(exported, tmp_path):
    # the first layout (keys without peft's prefix, our metadata inside adapter_config.json) was never published;
    # read as a plain peft folder it would merge the LoRA and silently skip conv_in and the fingerprint check
    def unprefix(tensors):
        for key in list(tensors):
            tensors[key[len('base_model.model.'):]] = tensors.pop(key)

    metadata = json.loads((exported['folder'] / 'rass_adapter.json').read_text())

    def old_config(config):
        config.update(rass_trained_modules=['conv_in'], rass_base_fingerprint=metadata['base_fingerprint'])

    folder = edited_copy(exported, tmp_path, config=old_config, lora=unprefix)
    (folder / 'rass_adapter.json').unlink()
    assert_refused(exported, folder, r"edited/adapter_model\.safetensors: key '.*lora_[AB]\.weight' lacks the "
                   r"'base_model\.model\.' prefix of a peft adapter file")
