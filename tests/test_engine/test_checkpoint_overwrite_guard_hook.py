import fcntl
import logging
from types import SimpleNamespace

import pytest
from mmengine.config import Config
from mmengine.hooks import CheckpointHook
from mmengine.runner import BaseLoop

from rass_mmseg.engine import CheckpointOverwriteGuardHook
from tests.utils import repo_path


class _Loop(BaseLoop):
    """A built train loop (what ``Runner.train`` has made before ``before_run``) whose run may raise."""

    def __init__(self, error: Exception = None) -> None:
        super().__init__(runner=None, dataloader=[])
        self.error = error

    def run(self) -> None:
        if self.error is not None:
            raise self.error


def fake_runner(work_dir, resume=False, loaded=False, iteration=0, load_from=None, train_loop=None, by_epoch=False):
    """The attributes of mmengine's Runner the guard reads, as ``Runner.train`` leaves them at each hook."""
    return SimpleNamespace(work_dir=str(work_dir), _resume=resume, _has_loaded=loaded, _load_from=load_from,
                           iter=iteration, epoch=iteration, hooks=[CheckpointHook(interval=1, by_epoch=by_epoch)],
                           _train_loop=_Loop() if train_loop is None else train_loop,
                           logger=logging.getLogger('guard_test'))


def lock_is_free(work_dir) -> bool:
    """Whether another open file can take the work dir's lock (flock conflicts between open files, in one process
    too)."""
    with open(work_dir / '.training.lock', 'a+') as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True  # closing the file drops it


def test_refuses_to_train_over_existing_checkpoints(tmp_path):
    runner = fake_runner(tmp_path)
    CheckpointOverwriteGuardHook().before_train(runner)  # empty work dir: fine
    (tmp_path / 'iter_300.pth').write_bytes(b'checkpoint')
    with pytest.raises(FileExistsError, match=r'already holds 1 checkpoint.*iter_300.pth.*--resume'):
        CheckpointOverwriteGuardHook().before_train(runner)
    CheckpointOverwriteGuardHook(allow_overwrite=True).before_train(runner)
    CheckpointOverwriteGuardHook().before_train(fake_runner(tmp_path, resume=True, loaded=True, iteration=300))
    # --resume that found nothing to resume trains from scratch: refused like a new run
    with pytest.raises(FileExistsError, match=r'already holds 1 checkpoint'):
        CheckpointOverwriteGuardHook().before_train(fake_runner(tmp_path, resume=True, loaded=False))
    assert (tmp_path / 'iter_300.pth').read_bytes() == b'checkpoint'


def test_a_resumed_run_refuses_to_overwrite_newer_checkpoints(tmp_path):
    for step in (2, 3, 10):
        (tmp_path / f'iter_{step}.pth').write_bytes(b'checkpoint')
    (tmp_path / 'best_mIoU_iter_20.pth').write_bytes(b'checkpoint')  # not a step checkpoint
    resumed_from_2 = fake_runner(tmp_path, resume=True, loaded=True, iteration=2)
    with pytest.raises(FileExistsError, match=r'newer than the one resumed \(iteration 2\): iter_3.pth, iter_10.pth, '
                                              r'which this run would overwrite; .*load_from=.*iter_10.pth') as error:
        CheckpointOverwriteGuardHook().before_train(resumed_from_2)
    assert '\n' not in str(error.value)
    CheckpointOverwriteGuardHook(allow_overwrite=True).before_train(resumed_from_2)
    CheckpointOverwriteGuardHook().before_train(fake_runner(tmp_path, resume=True, loaded=True, iteration=10))
    with pytest.raises(FileExistsError, match=r'\(epoch 3\): epoch_5.pth'):  # epoch-based checkpoints likewise
        (tmp_path / 'epoch_5.pth').write_bytes(b'checkpoint')
        CheckpointOverwriteGuardHook().before_train(fake_runner(tmp_path, True, True, iteration=3, by_epoch=True))


def test_resume_without_last_checkpoint_resumes_from_the_newest_checkpoint(tmp_path):
    for name in ('iter_2.pth', 'iter_10.pth', 'iter_9.pth', 'best_mIoU_iter_30.pth', 'iter_final.pth'):
        (tmp_path / name).write_bytes(b'checkpoint')
    runner = fake_runner(tmp_path, resume=True)
    hook = CheckpointOverwriteGuardHook()
    hook.before_run(runner)
    assert runner._load_from == str(tmp_path / 'iter_10.pth')  # mmengine resumes from load_from when resume is set
    hook.after_run(runner)

    explicit = fake_runner(tmp_path, resume=True, load_from=str(tmp_path / 'iter_2.pth'))
    not_resuming = fake_runner(tmp_path)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_9.pth'))
    auto = fake_runner(tmp_path, resume=True)
    for runner, load_from in ((explicit, str(tmp_path / 'iter_2.pth')), (not_resuming, None), (auto, None)):
        hook.before_run(runner)
        hook.after_run(runner)
        assert runner._load_from == load_from  # mmengine's own choice stands (before_train checks it)


def test_a_second_run_in_a_locked_work_dir_is_refused_in_one_line(tmp_path):
    with open(tmp_path / '.training.lock', 'a+') as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # a run in another process
        holder.write('pid 4242 on host elsewhere, started 2026-12-01T10:00:00\n')
        holder.flush()
        with pytest.raises(RuntimeError, match=rf'^work dir {tmp_path} is in use by another training run \(pid 4242 '
                                               r'on host elsewhere, .*wait for it to finish or choose another '
                                               r'--work-dir$') as error:
            CheckpointOverwriteGuardHook().before_run(fake_runner(tmp_path))
        assert '\n' not in str(error.value)
    assert (tmp_path / '.training.lock').read_text().startswith('pid 4242 on host elsewhere')


def test_the_lock_is_held_from_before_run_to_after_run_or_until_training_raises(tmp_path):
    hook, runner = CheckpointOverwriteGuardHook(), fake_runner(tmp_path)
    hook.before_run(runner)
    assert not lock_is_free(tmp_path)
    assert (tmp_path / '.training.lock').read_text().startswith('pid ')
    runner._train_loop.run()
    assert not lock_is_free(tmp_path)
    hook.after_run(runner)
    assert lock_is_free(tmp_path)

    raising = fake_runner(tmp_path, train_loop=_Loop(error=FloatingPointError('non-finite loss')))
    hook.before_run(raising)
    assert not lock_is_free(tmp_path)
    with pytest.raises(FloatingPointError):
        raising._train_loop.run()  # mmengine calls no after_run then
    assert lock_is_free(tmp_path)

    # a run of this process that raised before its loop (e.g. in load_or_resume) is over: the next run takes over
    CheckpointOverwriteGuardHook().before_run(fake_runner(tmp_path))
    later = CheckpointOverwriteGuardHook()
    later.before_run(fake_runner(tmp_path))
    assert not lock_is_free(tmp_path)
    later.after_run(None)
    assert lock_is_free(tmp_path)


def test_validation_and_test_runs_take_no_lock(tmp_path):
    hook = CheckpointOverwriteGuardHook()
    hook.before_run(fake_runner(tmp_path, train_loop=dict(type='IterBasedTrainLoop')))  # test.py: loop not built
    assert lock_is_free(tmp_path)


def test_runnable_configs_install_the_guard():
    cfg = Config.fromfile(repo_path('configs', 'rass', 'rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py'))
    assert cfg.custom_hooks[0].type == 'CheckpointOverwriteGuardHook'
