"""Checkpoints named by a URL or a model-zoo scheme (rass_mmseg/compat/remote_checkpoint_loading.py) load weights-only.

Offline: each file is put where the loader caches it ($TORCH_HOME/hub/checkpoints, or $MMENGINE_HOME for a local
open-mmlab entry) and any download fails the test.
"""
import io
import os
import os.path as osp
import pickle
import sys
import types
import zipfile
from collections import OrderedDict

import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from rass_mmseg.compat import checkpoint_loading, remote_checkpoint_loading
from rass_mmseg.compat.remote_checkpoint_loading import REMOTE_LOADERS, load_from_http_weights_only


class WritesMarker:

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def no_download(url, dst, *args, **kwargs):
    raise AssertionError(f'unexpected download of {url}')


@pytest.fixture
def offline_caches(tmp_path, monkeypatch):
    """Empty torch hub and mmengine caches under tmp_path, downloads refused, the escape hatch off."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setenv('MMENGINE_HOME', str(tmp_path / 'mmengine'))
    monkeypatch.delenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', raising=False)
    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_download)
    (tmp_path / 'mmengine').mkdir()
    return tmp_path


#: scheme name -> (what is loaded, the URL it names, or None for a file in $MMENGINE_HOME).
SCHEMES = {
    'https': ('https://example.invalid/x.pth', lambda: 'https://example.invalid/x.pth'),
    'http': ('http://example.invalid/models/y.pth', lambda: 'http://example.invalid/models/y.pth'),
    'torchvision': ('torchvision://resnet18', lambda: mmengine_checkpoint.get_torchvision_models()['resnet18']),
    'modelzoo': ('modelzoo://resnet18', lambda: mmengine_checkpoint.get_torchvision_models()['resnet18']),
    'open-mmlab': ('open-mmlab://resnet50_v1c', lambda: mmengine_checkpoint.get_external_models()['resnet50_v1c']),
    'openmmlab': ('openmmlab://resnet50_v1c', lambda: mmengine_checkpoint.get_external_models()['resnet50_v1c']),
    'open-mmlab-local': ('open-mmlab://mine', lambda: None),
    'mmcls': ('mmcls://resnet50', lambda: mmengine_checkpoint.get_mmcls_models()['resnet50']),
}


def place(root, scheme: str, checkpoint) -> str:
    """Save ``checkpoint`` where ``scheme``'s name is looked up without downloading; return that file."""
    url = SCHEMES[scheme][1]()
    if url is None:  # an open-mmlab name mapped to a file under $MMENGINE_HOME by open_mmlab.json there
        (root / 'mmengine' / 'open_mmlab.json').write_text('{"mine": "checkpoints/mine.pth"}')
        path = root / 'mmengine' / 'checkpoints' / 'mine.pth'
    else:
        path = osp.join(torch.hub.get_dir(), 'checkpoints', osp.basename(url))
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save(checkpoint, path)
    return str(path)


@pytest.mark.parametrize('scheme', list(SCHEMES))
def test_hostile_pickle_named_by_any_remote_scheme_runs_nothing(offline_caches, scheme):
    marker = offline_caches / 'marker'
    path = place(offline_caches, scheme, {'state_dict': {'backbone.w': torch.zeros(1)},
                                          'payload': WritesMarker(str(marker))})
    torch.load(path, weights_only=False)  # the control: unpickling the file plainly runs its code
    assert marker.exists()
    marker.unlink()
    with pytest.raises(pickle.UnpicklingError) as error:
        CheckpointLoader.load_checkpoint(SCHEMES[scheme][0])
    message, url = str(error.value), SCHEMES[scheme][1]()
    assert message.startswith(f'refused to load {url or SCHEMES[scheme][0]} ({path}): ')
    assert 'io.open' in message and '\n' not in message
    assert not marker.exists()


def stock_getstate(self: HistoryBuffer) -> dict:
    """mmengine 0.10.7's ``HistoryBuffer.__getstate__`` (the plugin's fix drops the statistics functions)."""
    self.__dict__.update(statistics_methods=self._statistics_methods)
    return self.__dict__


def stock_mmengine_checkpoint() -> dict:
    buffer = HistoryBuffer()
    buffer.update(1.5)
    weights = OrderedDict([('backbone.conv.weight', torch.randn(2, 3)), ('head.bias', torch.randn(2))])
    return dict(meta=dict(iter=2), state_dict=weights, message_hub=dict(log_scalars=dict(loss=buffer)))


@pytest.mark.parametrize('scheme', list(SCHEMES))
def test_stock_mmengine_checkpoint_named_by_any_remote_scheme_loads(offline_caches, monkeypatch, scheme):
    checkpoint = stock_mmengine_checkpoint()
    with monkeypatch.context() as patch:
        patch.setattr(HistoryBuffer, '__getstate__', stock_getstate)
        path = place(offline_caches, scheme, checkpoint)
    # stock mmengine pickles HistoryBuffer.min/max/current/mean as builtins.getattr(HistoryBuffer, name)
    assert 'builtins.getattr' in torch.serialization.get_unsafe_globals_in_checkpoint(path)
    loaded = CheckpointLoader.load_checkpoint(SCHEMES[scheme][0])
    if scheme == 'mmcls':  # mmcls:// keeps the backbone, without its prefix
        assert list(loaded) == ['state_dict'] and list(loaded['state_dict']) == ['conv.weight']
        assert torch.equal(loaded['state_dict']['conv.weight'], checkpoint['state_dict']['backbone.conv.weight'])
        return
    for key, value in checkpoint['state_dict'].items():
        assert torch.equal(loaded['state_dict'][key], value)
    assert loaded['message_hub']['log_scalars']['loss'].statistics('min') == 1.5


def test_legacy_one_file_zip_at_a_url_loads(offline_caches):
    inner = offline_caches / 'weights.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}}, inner)
    cache = osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(cache)
    with zipfile.ZipFile(osp.join(cache, 'zipped.zip'), 'w') as archive:
        archive.write(inner, 'weights.pth')
    loaded = CheckpointLoader.load_checkpoint('https://example.invalid/zipped.zip')
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))


@pytest.mark.parametrize('rank,cached,events', [(0, False, ['download', 'barrier']), (1, True, ['barrier'])])
def test_download_to_model_dir_rank_0_first_then_loaded_weights_only(offline_caches, monkeypatch, rank, cached,
                                                                     events):
    """As mmengine: rank 0 downloads before the barrier, the other ranks after it (finding the file cached)."""
    model_dir = offline_caches / 'models'
    seen = []

    def download(url, dst, hash_prefix=None, progress=True):
        seen.append('download')
        torch.save({'state_dict': {'w': torch.ones(1)}}, dst)

    monkeypatch.setattr(torch.hub, 'download_url_to_file', download)
    monkeypatch.setattr(remote_checkpoint_loading, 'get_dist_info', lambda: (rank, 2))
    monkeypatch.setattr(torch.distributed, 'barrier', lambda: seen.append('barrier'))
    if cached:
        model_dir.mkdir()
        torch.save({'state_dict': {'w': torch.ones(1)}}, model_dir / 'w.pth')
    loaded = load_from_http_weights_only('https://example.invalid/w.pth', model_dir=str(model_dir))
    assert seen == events and (model_dir / 'w.pth').is_file()
    assert torch.equal(loaded['state_dict']['w'], torch.ones(1))


def user_loader(filename, map_location=None):
    return {'state_dict': {}, 'loaded_by': 'the user'}


def test_a_loader_registered_before_the_plugin_is_kept_with_a_warning(monkeypatch):
    monkeypatch.setattr(CheckpointLoader, '_schemes', OrderedDict(CheckpointLoader._schemes))
    logs = []
    monkeypatch.setattr(checkpoint_loading, 'print_log', lambda message, **kwargs: logs.append(message))
    CheckpointLoader.register_scheme(prefixes=['', 'https://'], loader=user_loader, force=True)
    CheckpointLoader.register_scheme(prefixes='http://', loader=mmengine_checkpoint.load_from_http, force=True)
    checkpoint_loading.install()
    assert CheckpointLoader._get_checkpoint_loader('/some/file.pth') is user_loader
    assert CheckpointLoader._get_checkpoint_loader('https://example.invalid/x.pth') is user_loader
    # mmengine's own loaders are replaced
    assert CheckpointLoader._get_checkpoint_loader('http://example.invalid/x.pth') is load_from_http_weights_only
    assert len(logs) == 2 and all(f'{__name__}.user_loader' in message for message in logs)
    assert "prefix ''" in logs[0] and "prefix 'https://'" in logs[1]
    assert CheckpointLoader.load_checkpoint('/some/file.pth')['loaded_by'] == 'the user'


def test_every_scheme_mmengine_registers_is_served_by_the_plugin():
    assert CheckpointLoader._schemes[''] is checkpoint_loading.load_from_local_weights_only
    for prefixes, loader in REMOTE_LOADERS:
        assert all(CheckpointLoader._schemes[prefix] is loader for prefix in prefixes)
    assert all(loader.__module__.startswith('rass_mmseg.compat.') for loader in CheckpointLoader._schemes.values())


def hostile_bytes(marker) -> bytes:
    buffer = io.BytesIO()
    torch.save({'state_dict': {}, 'payload': WritesMarker(str(marker))}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize('name', ['pavi://project/model.pth', 's3://bucket/model.pth', 'cluster:petrel://b/m.pth'])
def test_hostile_pickle_from_pavi_or_object_storage_runs_nothing(offline_caches, monkeypatch, name):
    marker = offline_caches / 'marker'
    data = hostile_bytes(marker)

    class Model:
        name = 'model.pth'

        @staticmethod
        def download(path):
            with open(path, 'wb') as file:
                file.write(data)

    monkeypatch.setitem(sys.modules, 'pavi', types.SimpleNamespace(modelcloud=types.SimpleNamespace(
        get=lambda path: Model)))
    monkeypatch.setattr(remote_checkpoint_loading, 'get_file_backend',
                        lambda *args, **kwargs: types.SimpleNamespace(get=lambda filename: data))
    with pytest.raises(pickle.UnpicklingError, match=f'^refused to load {name} .*io.open'):
        CheckpointLoader.load_checkpoint(name)
    assert not marker.exists()
