import os
import pickle

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint, load_checkpoint
from torch import nn

from rass_mmseg.compat import CHECKPOINT_SAFE_GLOBALS


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
