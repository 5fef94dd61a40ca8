"""Every missing input of a config (SD folder, adapters, checkpoints, data) is named in one error before the model is
built and before mmengine logs the config, through mmseg's own tools/train.py (``runner_type``)."""
import os
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from rass_mmseg.engine.runners import check_input_paths, missing_input_paths
from tests.utils import FAST_TRAIN, TINY, repo_path


def touch(path) -> str:
    os.makedirs(osp.dirname(str(path)), exist_ok=True)
    open(path, 'w').close()
    return str(path)


@pytest.fixture
def inputs(tmp_path) -> dict:
    """A config whose every kind of input is present once and missing once."""
    sd = tmp_path / 'sd'
    touch(sd / 'vae' / 'config.json')  # the other three parts are missing
    adapter = tmp_path / 'adapter'
    touch(adapter / 'adapter_config.json')
    touch(adapter / 'adapter_model.safetensors')
    touch(tmp_path / 'half_adapter' / 'adapter_config.json')
    data = tmp_path / 'data'
    os.makedirs(data / 'img')
    return dict(
        model=dict(
            type='EncoderDecoder',
            backbone=dict(type='RASSBackbone', pretrained=str(sd), merge_adapters=[
                str(adapter), str(adapter / 'adapter_model.safetensors'), str(tmp_path / 'half_adapter'),
                str(tmp_path / 'no_adapter')]),
            neck=dict(type='FeatureProjection', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'a.pth'))),
            decode_head=dict(type='SegformerHead', init_cfg=dict(type='Pretrained', checkpoint='https://x/b.pth'))),
        load_from=str(tmp_path / 'missing.pth'),
        train_dataloader=dict(dataset=dict(type='RepeatDataset', times=2, dataset=dict(
            type='ADE20KDataset', data_root=str(data), data_prefix=dict(img_path='img', seg_map_path='ann'),
            ann_file='split.txt'))),
        val_cfg=None,
        val_dataloader=dict(dataset=dict(type='ADE20KDataset', data_root=str(tmp_path / 'no_val'))),
        test_cfg=dict(type='TestLoop'),
        test_dataloader=dict(dataset=dict(type='ConcatDataset', datasets=[
            dict(type='TextureSegDataset', data_root=str(tmp_path / 'made_on_first_use'), generate_cfg=dict(seed=0)),
            dict(type='ADE20KDataset', data_root=str(tmp_path / 'no_test'))])))


def test_every_missing_input_is_found_with_its_key(inputs, tmp_path):
    found = {item.key: item for item in missing_input_paths(inputs)}
    assert sorted(found) == [
        'load_from', 'model.backbone.merge_adapters.2', 'model.backbone.merge_adapters.3', 'model.backbone.pretrained',
        'model.neck.init_cfg.checkpoint', 'train_dataloader.dataset.dataset.ann_file',
        'train_dataloader.dataset.dataset.data_prefix.seg_map_path']
    assert found['model.backbone.pretrained'].problem == (
        'incomplete Stable Diffusion folder: missing unet/config.json, text_encoder/config.json, tokenizer/vocab.json '
        'or tokenizer/tokenizer.json')
    assert found['model.backbone.merge_adapters.2'].problem == (
        'not an adapter folder: missing adapter_model.safetensors')
    assert found['model.backbone.merge_adapters.3'].problem == 'no such adapter folder'
    assert found['train_dataloader.dataset.dataset.data_prefix.seg_map_path'].path == str(tmp_path / 'data' / 'ann')
    for item in found.values():  # every docs link points at a page that exists
        assert osp.isfile(repo_path(item.docs.partition('#')[0])), item.docs


def test_dataloaders_are_checked_as_asked(inputs, tmp_path):
    keys = [item.key for item in missing_input_paths(inputs, ['test_dataloader'])]
    # the generated textures are not missing; the model and checkpoint inputs are always checked
    assert [k for k in keys if 'dataloader' in k] == ['test_dataloader.dataset.datasets.1.data_root']
    inputs['val_cfg'] = dict(type='ValLoop')
    keys = [item.key for item in missing_input_paths(inputs, ['val_dataloader'])]
    assert [k for k in keys if 'dataloader' in k] == ['val_dataloader.dataset.data_root']


def test_one_line_error_names_every_missing_input(inputs):
    with pytest.raises(FileNotFoundError) as error:
        check_input_paths(Config(inputs))
    message = str(error.value)
    assert '\n' not in message
    assert message.startswith('7 input paths of the config are missing (checked before building the model): ')
    assert 'see docs/en/advanced_guides/checkpoints.md#weights-you-provide' in message
    assert 'see docs/en/user_guides/2_dataset_prepare.md' in message
    assert 'relative paths' not in message  # all paths here are absolute


def test_a_config_whose_inputs_exist_passes():
    check_input_paths(Config.fromfile(TINY))  # random-init SD, textures generated on first use


def test_train_tool_names_the_missing_sd_folder_and_data_root_before_building_the_model(
        in_process_tool, capfd, monkeypatch):
    built = []
    monkeypatch.setattr(Runner, 'build_model', lambda self, model: built.append(model))
    options = ['model.backbone.pretrained=checkpoints/no-such-sd', 'model.backbone.vae=None',
               'model.backbone.unet=None', 'model.backbone.text_encoder=None',
               'train_dataloader.dataset.data_root=data/no-such-data', 'train_dataloader.dataset.generate_cfg=None']
    with pytest.raises(FileNotFoundError) as error:
        in_process_tool(repo_path('tools', 'train.py'), TINY, '--cfg-options', *FAST_TRAIN, *options)
    message = str(error.value)
    assert '\n' not in message and message.startswith(f'2 input paths of {TINY} are missing')
    assert ("model.backbone.pretrained='checkpoints/no-such-sd' (no such folder; a local diffusers Stable Diffusion "
            'folder; see docs/en/advanced_guides/checkpoints.md#weights-you-provide)') in message
    assert ("train_dataloader.dataset.data_root='data/no-such-data' (no such folder; see "
            'docs/en/user_guides/2_dataset_prepare.md)') in message
    assert 'relative paths are read from the working directory' in message
    assert not built
    output = ''.join(capfd.readouterr())
    assert 'Config:' not in output and 'Environment info' not in output


def test_test_tool_names_the_missing_checkpoint_sd_folder_and_test_set_before_building_the_model(
        in_process_tool, capfd, monkeypatch):
    built = []
    monkeypatch.setattr(Runner, 'build_model', lambda self, model: built.append(model))
    options = ['model.backbone.pretrained=checkpoints/no-such-sd', 'model.backbone.vae=None',
               'model.backbone.unet=None', 'model.backbone.text_encoder=None',
               'test_dataloader.dataset.data_root=data/no-such-test-set', 'test_dataloader.dataset.generate_cfg=None']
    with pytest.raises(FileNotFoundError) as error:
        in_process_tool(repo_path('tools', 'test.py'), TINY, 'work_dirs/no-such.pth', '--cfg-options', *options)
    message = str(error.value)
    assert '\n' not in message and message.startswith(f'3 input paths of {TINY} are missing')
    assert "model.backbone.pretrained='checkpoints/no-such-sd' (no such folder" in message
    assert "load_from='work_dirs/no-such.pth' (no such file" in message
    assert "test_dataloader.dataset.data_root='data/no-such-test-set' (no such folder" in message
    assert not built
    assert 'Config:' not in ''.join(capfd.readouterr())
    assert Runner.from_cfg.__func__ is Runner.__dict__['from_cfg'].__func__  # restored after the tool
