"""Stop training at the first iteration whose loss is NaN or infinite, naming the iteration and the losses."""
import math
from typing import Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

__all__ = ['NonFiniteLossHook']


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise as soon as a training loss is NaN or infinite, before it is logged or checkpointed.

    mmdet's ``CheckInvalidLossHook`` checks only the summed ``loss``, only every 50 iterations, and fails with
    an ``AssertionError`` without a message. This hook checks every iteration and every logged value whose name
    contains ``'loss'`` (mmengine's ``parse_losses`` convention: ``loss``, ``decode.loss_ce``, ...), and raises
    a one-line ``FloatingPointError`` with the 1-based iteration number (as in the ``Iter(train) [i/N]`` log
    lines), the non-finite loss names and their values, e.g.::

        FloatingPointError: non-finite loss at iteration 3 of 300: loss=nan, decode.loss_ce=nan; ...

    It runs after the optimizer step of that iteration (hooks see the losses only then) and before
    ``CheckpointHook`` (lower priority), so no checkpoint with the diverged weights is written. In distributed
    training each rank checks its own losses; the rank that raises ends the job (torchrun stops the others).

    Args:
        interval: Check every ``interval`` iterations (1: every iteration, the default; the check costs one
            host-device synchronisation per logged loss).
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, interval: int = 1) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'interval must be a positive int, got {interval!r}')
        self.interval = interval

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """Raise ``FloatingPointError`` if any loss in ``outputs`` is NaN or infinite."""
        if not outputs or not self.every_n_train_iters(runner, self.interval):
            return
        bad = self.non_finite_losses(outputs)
        if bad:
            values = ', '.join(f'{name}={value}' for name, value in bad)
            raise FloatingPointError(
                f'non-finite loss at iteration {runner.iter + 1} of {runner.max_iters}: {values}; check the '
                'learning rate, the input data (NaN/inf pixels) and mixed-precision settings, or resume from the '
                'last checkpoint with a lower learning rate')

    @staticmethod
    def non_finite_losses(outputs: dict) -> Sequence[tuple]:
        """``(name, value)`` of every entry whose name contains ``'loss'`` and whose value is not finite."""
        bad = []
        for name, value in outputs.items():
            if 'loss' not in name:
                continue
            if isinstance(value, torch.Tensor):
                value = value.detach().float()
                finite = bool(torch.isfinite(value).all())
                value = value.item() if value.numel() == 1 else value.tolist()
            else:
                finite = math.isfinite(float(value))
            if not finite:
                bad.append((name, value))
        return bad
