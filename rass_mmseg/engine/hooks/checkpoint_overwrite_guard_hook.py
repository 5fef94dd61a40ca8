"""Stop a training run before it overwrites the checkpoints already in its work dir."""
import glob
import os.path as osp

from mmengine.hooks import Hook
from mmseg.registry import HOOKS

__all__ = ['CheckpointOverwriteGuardHook']


@HOOKS.register_module()
class CheckpointOverwriteGuardHook(Hook):
    """Refuse to train into a work dir that already holds checkpoints, unless resuming or allowed.

    mmengine's Runner writes ``iter_N.pth`` into ``work_dir`` and silently replaces files of the same name,
    so re-running a config without ``--resume`` would destroy an earlier run's checkpoints.

    Args:
        allow_overwrite: Train anyway (``--cfg-options custom_hooks.0.allow_overwrite=True``).
    """

    priority = 'VERY_HIGH'

    def __init__(self, allow_overwrite: bool = False) -> None:
        self.allow_overwrite = allow_overwrite

    def before_train(self, runner) -> None:
        """Raise before the first iteration if checkpoints would be overwritten."""
        if self.allow_overwrite or getattr(runner, '_resume', False):
            return
        existing = sorted(glob.glob(osp.join(runner.work_dir, '*.pth')))
        if existing:
            raise FileExistsError(
                f'work dir {runner.work_dir} already holds {len(existing)} checkpoint(s) (e.g. '
                f'{osp.basename(existing[-1])}) that this run would overwrite; pass --resume to continue it, choose '
                'another --work-dir, or set --cfg-options custom_hooks.0.allow_overwrite=True')
