import argparse
import os
import pickle
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint, load_checkpoint
from torch import nn

from rass_mmseg.compat import CHECKPOINT_SAFE_GLOBALS, checkpoint_loading


class TinyRegressor(BaseModel):

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(inputs)
        return dict(loss=out.pow(2).mean()) if mode == 'loss' else out


def make_runner(work_dir, max_iters, resume=False, load_from=None):
    dataset = [dict(inputs=torch.full((2, ), float(i))) for i in range(8)]
    return Runner(
        model=TinyRegressor(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=dataset, sampler=dict(type='DefaultSampler', shuffle=True), batch_size=2,
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        randomness=dict(seed=0), resume=resume, load_from=load_from, default_scope='mmseg')


def test_runner_checkpoints_resume_with_weights_only(tmp_path):
    make_runner(tmp_path, 4).train()
    checkpoint = tmp_path / 'iter_4.pth'
    # plain torch.load with weights_only on succeeds with only the allowlisted data types
    with torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS):
        state = torch.load(checkpoint, weights_only=True)
    assert state['meta']['iter'] == 4
    assert 'builtins.getattr' not in torch.serialization.get_unsafe_globals_in_checkpoint(str(checkpoint))
    resumed = make_runner(tmp_path, 6, resume=True)
    resumed.train()
    assert resumed.iter == 6
    log_buffer = resumed.message_hub.get_scalar('train/loss')
    assert log_buffer.statistics('mean') == pytest.approx(log_buffer.mean())


class WritesMarker:

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


@pytest.mark.parametrize('how', ['load_checkpoint', 'runner_load_from'])
def test_hostile_pickle_is_refused_and_runs_nothing(tmp_path, how):
    marker = tmp_path / 'marker'
    hostile = tmp_path / 'hostile.pth'
    torch.save({'state_dict': {}, 'payload': WritesMarker(str(marker))}, hostile)
    with pytest.raises(pickle.UnpicklingError, match=r'refused to load .*hostile.pth.*io.open.*trust the file'):
        if how == 'load_checkpoint':
            load_checkpoint(TinyRegressor(), str(hostile))
        else:
            make_runner(tmp_path / 'work', 2, load_from=str(hostile)).train()
    assert not marker.exists()


def test_checkpoint_pickling_getattr_is_refused(tmp_path):
    path = tmp_path / 'old.pth'
    torch.save({'fn': os.path.join}, path)  # a function reference pickles as a global, like old HistoryBuffers
    with pytest.raises(pickle.UnpicklingError, match='refused to load'):
        _load_checkpoint(str(path))


# A Runner checkpoint written by stock mmengine in a process that never imports the plugin (what mmseg's own
# tools/train.py writes, and what mmseg 1.x model-zoo checkpoints keep: publish_model.py drops only the optimizer).
STOCK_TRAINING = """
import sys, torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

class TinyRegressor(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(inputs)
        return dict(loss=out.pow(2).mean()) if mode == 'loss' else out

dataset = [dict(inputs=torch.full((2, ), float(i))) for i in range(8)]
Runner(model=TinyRegressor(), work_dir=sys.argv[1],
       train_dataloader=dict(dataset=dataset, sampler=dict(type='DefaultSampler', shuffle=True), batch_size=2,
                             collate_fn=dict(type='default_collate')),
       optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)), train_cfg=dict(by_epoch=False, max_iters=2),
       default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
       randomness=dict(seed=0)).train()
assert not any(name.startswith('rass_mmseg') for name in sys.modules)
"""


@pytest.fixture(scope='module')
def stock_work_dir(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('stock_mmengine')
    subprocess.run([sys.executable, '-c', STOCK_TRAINING, str(work_dir)], check=True, capture_output=True)
    return work_dir


def test_stock_mmengine_checkpoints_load_and_resume(stock_work_dir, tmp_path):
    checkpoint = stock_work_dir / 'iter_2.pth'
    # stock mmengine pickles HistoryBuffer.min/max/current/mean as builtins.getattr(HistoryBuffer, name)
    assert 'builtins.getattr' in torch.serialization.get_unsafe_globals_in_checkpoint(str(checkpoint))
    model = TinyRegressor()
    state = load_checkpoint(model, str(checkpoint))
    assert torch.equal(model.linear.weight, state['state_dict']['linear.weight'])
    assert state['message_hub']['log_scalars']['train/loss'].statistics('mean') == pytest.approx(
        state['message_hub']['log_scalars']['train/loss'].mean())
    work_dir = tmp_path / 'resumed'
    work_dir.mkdir()
    (work_dir / 'iter_2.pth').write_bytes(checkpoint.read_bytes())
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_2.pth'))
    resumed = make_runner(work_dir, 4, resume=True)
    resumed.train()
    assert resumed.iter == 4


def _rename_globals(src, dst, old: bytes, new: bytes) -> None:
    """Copy a zip checkpoint, replacing a module name in its pickle (GLOBAL opcodes are newline-terminated)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w', zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith('data.pkl'):
                assert old in data
                data = data.replace(old, new)
            zout.writestr(item, data)


def test_checkpoints_written_with_numpy_1_load(stock_work_dir, tmp_path):
    numpy1 = tmp_path / 'numpy1.pth'
    _rename_globals(stock_work_dir / 'iter_2.pth', numpy1, b'numpy._core.multiarray', b'numpy.core.multiarray')
    assert 'numpy.core.multiarray.scalar' in torch.serialization.get_unsafe_globals_in_checkpoint(str(numpy1))
    state = _load_checkpoint(str(numpy1))
    assert state['message_hub']['log_scalars']['train/loss'].current() == pytest.approx(
        _load_checkpoint(str(stock_work_dir / 'iter_2.pth'))['message_hub']['log_scalars']['train/loss'].current())


class GetattrPayload:

    def __init__(self, owner, name: str) -> None:
        self.owner, self.name = owner, name

    def __reduce__(self):
        return (getattr, (self.owner, self.name))


@pytest.mark.parametrize('owner,name,shown', [(HistoryBuffer, '__init__', "HistoryBuffer, '__init__'"),
                                              (HistoryBuffer, 'register_statistics', 'register_statistics'),
                                              (np.ndarray, 'tofile', "ndarray, 'tofile'"),
                                              ('a string', 'format', "str, 'format'")])
def test_getattr_on_anything_but_history_buffer_statistics_is_refused(tmp_path, owner, name, shown):
    hostile = tmp_path / 'getattr.pth'
    torch.save({'state_dict': {}, 'payload': GetattrPayload(owner, name)}, hostile)
    with pytest.raises(pickle.UnpicklingError) as error:
        _load_checkpoint(str(hostile))
    message = str(error.value)
    assert message.startswith(f'refused to load {hostile}') and shown in message and '\n' not in message


def test_escape_hatch_loads_a_trusted_old_checkpoint_loudly(tmp_path, monkeypatch):
    """torch's documented TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 loads a checkpoint holding a non-tensor object (it
    does without the plugin), with a warning naming the file and what weights-only loading refused."""
    path = tmp_path / 'old.pth'
    torch.save({'state_dict': TinyRegressor().state_dict(), 'args': argparse.Namespace(lr=0.1)}, path)
    logs = []
    monkeypatch.setattr(checkpoint_loading, 'print_log', lambda message, **kwargs: logs.append(message))
    monkeypatch.delenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', raising=False)
    with pytest.raises(pickle.UnpicklingError, match=r'refused to load .*old.pth.*argparse.Namespace'):
        _load_checkpoint(str(path))
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    assert _load_checkpoint(str(path))['args'] == argparse.Namespace(lr=0.1)
    assert len(logs) == 1 and str(path) in logs[0] and 'argparse.Namespace' in logs[0]
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' in logs[0] and 'weights_only=False' in logs[0]


def damaged_copies(source, folder):
    """A checkpoint cut short (zip and legacy formats), an empty file and a text file named .pth."""
    data = source.read_bytes()
    legacy = folder / 'legacy.pth'
    torch.save(torch.load(source, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    copies = {'truncated.pth': data[:len(data) // 2], 'cut_end.pth': data[:-7], 'empty.pth': b'',
              'legacy_cut.pth': legacy.read_bytes()[:-5], 'notes.pth': b'not a checkpoint\n'}
    for name, content in copies.items():
        (folder / name).write_bytes(content)
    return [folder / name for name in copies]


def test_unreadable_checkpoint_fails_in_one_line_naming_it(tmp_path):
    source = tmp_path / 'good.pth'
    torch.save({'state_dict': TinyRegressor().state_dict()}, source)
    for path in damaged_copies(source, tmp_path):
        with pytest.raises(ValueError) as error:
            load_checkpoint(TinyRegressor(), str(path))
        message = str(error.value)
        assert message.startswith(f'cannot read checkpoint {path}: ') and 'truncated' in message
        assert '\n' not in message


def test_resume_from_a_truncated_last_checkpoint_names_the_file(tmp_path):
    make_runner(tmp_path, 2).train()
    checkpoint = tmp_path / 'iter_2.pth'
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # an interrupted copy
    assert (tmp_path / 'last_checkpoint').read_text().strip() == str(checkpoint)
    with pytest.raises(ValueError, match=f'^cannot read checkpoint {re.escape(str(checkpoint))}: [^\n]*$'):
        make_runner(tmp_path, 4, resume=True).train()


def test_non_finite_weights_are_reported_by_name_and_count(tmp_path, monkeypatch):
    state = TinyRegressor().state_dict()
    path = tmp_path / 'diverged.pth'
    torch.save({'state_dict': state}, path)
    logs = []
    monkeypatch.setattr(checkpoint_loading, 'print_log', lambda message, **kwargs: logs.append(message))
    load_checkpoint(TinyRegressor(), str(path))
    assert logs == []  # finite weights: nothing to report
    state['linear.weight'][0, 1] = float('nan')
    state['linear.bias'][0] = float('-inf')
    torch.save({'state_dict': state, 'meta': {}}, path)
    load_checkpoint(TinyRegressor(), str(path))
    assert len(logs) == 1 and str(path) in logs[0]
    assert '2 tensor(s)' in logs[0] and 'linear.weight (1 of 2)' in logs[0] and 'linear.bias (1 of 1)' in logs[0]
