"""Stop a training run before it overwrites checkpoints in its work dir that it did not load."""
import functools
import glob
import os
import os.path as osp
import re
from typing import Dict, Optional

from mmengine.dist import broadcast_object_list, is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.runner import BaseLoop
from mmseg.registry import HOOKS

from .work_dir_lock import WorkDirLock

__all__ = ['CheckpointOverwriteGuardHook']

_HINT = 'choose another --work-dir, or set --cfg-options custom_hooks.0.allow_overwrite=True'


@HOOKS.register_module()
class CheckpointOverwriteGuardHook(Hook):
    """Train only into a work dir whose checkpoints this run cannot overwrite.

    mmengine's Runner writes ``iter_N.pth`` into ``work_dir`` and silently replaces files of the same name. This hook
    refuses, in one line, before the first iteration:

    - a new run (no ``--resume``, or ``--resume`` that found nothing to resume) into a work dir that holds ``*.pth``
      files;
    - a resumed run when the work dir holds checkpoints newer than the one it resumed from (``load_from`` naming an
      older checkpoint, or a ``last_checkpoint`` pointing to one), since it would write over them;
    - a second run while another trains in the same work dir: a training run holds an exclusive lock on
      ``work_dir/.training.lock`` from ``before_run`` to ``after_run`` (the main process only; released also when
      training raises, and by the kernel when the process dies).

    ``--resume`` in a work dir with checkpoints but no ``last_checkpoint`` (copied from another machine), where
    mmengine would train from iteration 0 over them, resumes from the newest checkpoint instead.

    Args:
        allow_overwrite: Train anyway (``--cfg-options custom_hooks.0.allow_overwrite=True``); the lock still holds.
    """

    priority = 'VERY_HIGH'

    def __init__(self, allow_overwrite: bool = False) -> None:
        self.allow_overwrite = allow_overwrite
        self._lock: Optional[WorkDirLock] = None

    def before_run(self, runner) -> None:
        """Lock the work dir of a training run and pick the checkpoint ``--resume`` resumes from."""
        if not isinstance(getattr(runner, '_train_loop', None), BaseLoop):
            return  # validation or test only (Runner.train builds the loop before before_run)
        decision = [None, None]  # [refusal, checkpoint to resume from], decided by the main process
        if is_main_process():
            lock = WorkDirLock(runner.work_dir)
            refusal = lock.acquire()
            if refusal is None:
                self._lock = lock
                self._release_when_training_raises(runner._train_loop)
                decision = [None, self._newest_checkpoint_to_resume(runner)]
            else:
                decision = [refusal, None]
        broadcast_object_list(decision)  # every rank raises, or resumes from the same file
        refusal, resume_from = decision
        if refusal is not None:
            raise RuntimeError(refusal)
        if resume_from is not None:
            runner.logger.info(f'no last_checkpoint in {runner.work_dir}: resuming from the newest checkpoint there, '
                               f'{resume_from}')
            runner._load_from = resume_from  # Runner.load_or_resume resumes from load_from when resume is set

    def before_train(self, runner) -> None:
        """Raise before the first iteration if a checkpoint this run did not load would be overwritten."""
        if self.allow_overwrite:
            return
        if getattr(runner, '_resume', False) and getattr(runner, '_has_loaded', False):
            self._refuse_newer_than_resumed(runner)
            return
        existing = sorted(glob.glob(osp.join(glob.escape(runner.work_dir), '*.pth')))
        if existing:
            raise FileExistsError(
                f'work dir {runner.work_dir} already holds {len(existing)} checkpoint(s) (e.g. '
                f'{osp.basename(existing[-1])}) that this run would overwrite; pass --resume to continue it, {_HINT}')

    def after_run(self, runner) -> None:
        """Release the work dir."""
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _release_when_training_raises(self, loop: BaseLoop) -> None:
        """Wrap ``loop.run`` so that an exception in training releases the lock (mmengine calls no hook then)."""
        run = loop.run

        @functools.wraps(run)
        def run_releasing_on_error(*args, **kwargs):
            try:
                return run(*args, **kwargs)
            except BaseException:
                self._release()
                raise

        loop.run = run_releasing_on_error

    def _newest_checkpoint_to_resume(self, runner) -> Optional[str]:
        """The newest step checkpoint when ``--resume`` (no ``load_from``) finds no ``last_checkpoint``."""
        if not getattr(runner, '_resume', False) or runner._load_from is not None:
            return None
        if osp.exists(osp.join(runner.work_dir, 'last_checkpoint')):
            return None
        checkpoints = _step_checkpoints(runner)
        return osp.join(runner.work_dir, checkpoints[max(checkpoints)]) if checkpoints else None

    def _refuse_newer_than_resumed(self, runner) -> None:
        hook = _checkpoint_hook(runner)
        if hook is None:
            return  # nothing writes checkpoints
        step, unit = (runner.epoch, 'epoch') if hook.by_epoch else (runner.iter, 'iteration')
        checkpoints = _step_checkpoints(runner)
        newer = [checkpoints[s] for s in sorted(checkpoints) if s > step]
        if newer:
            newest = osp.join(runner.work_dir, newer[-1])
            raise FileExistsError(
                f'work dir {runner.work_dir} holds checkpoint(s) newer than the one resumed ({unit} {step}): '
                f'{", ".join(newer)}, which this run would overwrite; resume from the newest with --cfg-options '
                f'load_from={newest}, {_HINT}')


def _checkpoint_hook(runner) -> Optional[CheckpointHook]:
    """The runner's CheckpointHook, if any."""
    return next((hook for hook in runner.hooks if isinstance(hook, CheckpointHook)), None)


def _step_checkpoints(runner) -> Dict[int, str]:
    """``{step: file name}`` of the checkpoints in ``work_dir`` named as the CheckpointHook names them."""
    hook = _checkpoint_hook(runner)
    if hook is None:
        return {}
    prefix, _, suffix = hook.filename_tmpl.partition('{}')
    pattern = re.compile(re.escape(prefix) + r'(\d+)' + re.escape(suffix))
    matches = (pattern.fullmatch(name) for name in os.listdir(runner.work_dir))
    return {int(match.group(1)): match.group(0) for match in matches if match}
