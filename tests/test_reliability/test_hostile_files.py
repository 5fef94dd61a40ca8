"""A pickle whose loading would run code, handed over as every kind of weight file: refused, nothing runs."""
import json
import os
import pickle
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import CheckpointLoader
from mmseg.registry import MODELS

from rass_mmseg.models.adapters.lora_adapters import merge_lora_adapter
from rass_mmseg.models.utils.lpips_network import build_lpips
from tests.utils import repo_path


class WritesMarker:
    """Unpickling this calls os.system, which would create the marker file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return os.system, (f'touch {self.path}', )


@pytest.fixture
def hostile(tmp_path):
    marker = tmp_path / 'marker'
    path = tmp_path / 'hostile.pth'
    torch.save({'state_dict': {'x': torch.zeros(1)}, 'payload': WritesMarker(str(marker))}, path)
    return path, marker


def test_hostile_pickled_adapter_is_never_read(hostile, tmp_path):
    """peft writes ``adapter_model.bin`` (a pickle) when safetensors is off, and peft's own loader would unpickle
    it: a folder holding only that file is refused before anything reads it."""
    path, marker = hostile
    folder = tmp_path / 'adapter'
    folder.mkdir()
    (folder / 'adapter_model.bin').write_bytes(path.read_bytes())
    (folder / 'adapter_config.json').write_text(json.dumps(dict(r=4, lora_alpha=4, target_modules=['to_q'])))
    torch.load(str(folder / 'adapter_model.bin'), weights_only=False)  # the control: unpickling it runs code
    assert marker.exists()
    marker.unlink()
    with pytest.raises(FileNotFoundError, match='missing .*adapter_model.safetensors'):
        merge_lora_adapter(torch.nn.Sequential(torch.nn.Linear(2, 2)), str(folder), name='x')
    assert not marker.exists()


def test_pickle_renamed_to_safetensors_is_refused_in_one_line(hostile, tmp_path):
    path, _ = hostile
    folder = tmp_path / 'adapter'
    folder.mkdir()
    (folder / 'adapter_model.safetensors').write_bytes(path.read_bytes())
    (folder / 'adapter_config.json').write_text(json.dumps(dict(r=4, lora_alpha=4, target_modules=['to_q'])))
    with pytest.raises(ValueError, match='not a readable safetensors file') as error:
        merge_lora_adapter(torch.nn.Sequential(torch.nn.Linear(2, 2)), str(folder), name='x')
    assert '\n' not in str(error.value)


def test_hostile_file_as_lpips_weights_is_refused(hostile):
    path, marker = hostile
    with pytest.raises(ValueError) as error:
        build_lpips('alex', str(path))
    assert 'weights_only' in str(error.value) or 'refused' in str(error.value).lower()
    assert '\n' not in str(error.value) and not marker.exists()


def test_hostile_file_as_scr_weights_in_restore_then_segment_is_refused(hostile):
    path, marker = hostile
    r2s = Config.fromfile(
        repo_path('configs', 'protocols', 'r2s_scr-tiny-sd_segformer-mit-tiny_textures-lq-128x128.py'))
    r2s.model.restorer_checkpoint = str(path)
    r2s.model.segmentor_checkpoint = None
    with pytest.raises(pickle.UnpicklingError, match=f'refused to load {re.escape(str(path))}: weights-only loading'):
        MODELS.build(r2s.model)
    assert not marker.exists()


@pytest.mark.parametrize('how', ['CheckpointLoader', 'restorer_checkpoint'])
def test_hostile_file_named_by_url_is_refused_from_the_hub_cache(hostile, tmp_path, monkeypatch, how):
    """mmengine reads a URL through torch.hub's cache ($TORCH_HOME/hub/checkpoints): a pickle put there is refused,
    as a local file is (no download happens: the file is cached)."""
    path, marker = hostile
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.delenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', raising=False)
    cached = tmp_path / 'torch' / 'hub' / 'checkpoints' / 'x.pth'
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    torch.load(str(cached), weights_only=False)  # the control: unpickling it runs code
    assert marker.exists()
    marker.unlink()
    url = 'https://example.invalid/x.pth'
    with pytest.raises(pickle.UnpicklingError, match=f'^refused to load {re.escape(url)} \\({re.escape(str(cached))}'):
        if how == 'CheckpointLoader':
            CheckpointLoader.load_checkpoint(url)
        else:
            r2s = Config.fromfile(
                repo_path('configs', 'protocols', 'r2s_scr-tiny-sd_segformer-mit-tiny_textures-lq-128x128.py'))
            r2s.model.restorer_checkpoint = url
            r2s.model.segmentor_checkpoint = None
            MODELS.build(r2s.model)
    assert not marker.exists()
