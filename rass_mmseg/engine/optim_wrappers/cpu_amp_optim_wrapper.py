"""Mixed-precision (bfloat16 autocast) training on the CPU, which mmengine's ``AmpOptimWrapper`` refuses."""
from contextlib import contextmanager
from typing import Iterator, Union

import torch
from mmengine.optim import OptimWrapper
from mmseg.registry import OPTIM_WRAPPERS

__all__ = ['CPUAmpOptimWrapper']


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward pass (data preprocessor, model and losses) runs under
    ``torch.autocast('cpu', dtype=torch.bfloat16)``.

    mmengine 0.10.7's ``AmpOptimWrapper`` (what ``tools/train.py --amp`` selects) asserts that a GPU, NPU, MLU
    or MUSA device exists. On a CPU-only machine use this wrapper instead::

        optim_wrapper = dict(type='CPUAmpOptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))
        # or: --cfg-options optim_wrapper.type=CPUAmpOptimWrapper

    bfloat16 has float32's exponent range, so no loss scaling is done (the optimizer state and the weights stay
    float32; autocast runs matmuls and convolutions in bfloat16 and keeps reductions, norms and losses in
    float32). float16 would need a ``GradScaler``, which this wrapper does not have, and is refused. On a GPU use
    mmengine's ``AmpOptimWrapper``: a model with parameters off the CPU is refused with a one-line error.

    Args:
        dtype: Autocast dtype; only ``'bfloat16'`` (or ``torch.bfloat16``).
        **kwargs: Passed to :class:`mmengine.optim.OptimWrapper` (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16', **kwargs) -> None:
        if dtype not in ('bfloat16', torch.bfloat16):
            raise ValueError(f"CPUAmpOptimWrapper: dtype must be 'bfloat16' (float16 needs loss scaling), got "
                             f'{dtype!r}')
        super().__init__(**kwargs)
        self.cast_dtype = torch.bfloat16

    @contextmanager
    def optim_context(self, model: torch.nn.Module) -> Iterator[None]:
        """Gradient-accumulation context of ``OptimWrapper`` plus CPU bfloat16 autocast."""
        devices = {p.device.type for p in model.parameters()}
        if devices - {'cpu'}:
            raise ValueError(f'CPUAmpOptimWrapper autocasts on the CPU only, but the model has parameters on '
                             f"{sorted(devices - {'cpu'})}; use optim_wrapper=dict(type='AmpOptimWrapper', ...)")
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield
