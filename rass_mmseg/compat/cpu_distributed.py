"""Let mmengine 0.10.7's ``pytorch`` launcher train on CPU-only machines (gloo backend).

``torchrun --nproc_per_node 2 tools/train.py CFG --launcher pytorch`` fails twice on a machine without CUDA:

1. ``mmengine.dist.utils._init_dist_pytorch`` calls ``torch.cuda.set_device(local_rank)`` unconditionally
   (``RuntimeError: Found no NVIDIA driver``);
2. ``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]`` to ``MMDistributedDataParallel``, which torch's
   ``DistributedDataParallel`` refuses for a module on the CPU.

This module fixes both, narrowly, when ``rass_mmseg`` is imported: with no CUDA device (and none of the other
accelerators mmengine knows), the process group is initialised without selecting a device, and a CPU module is
wrapped with ``device_ids=None``. With an accelerator, mmengine's code runs unchanged. ``backend='nccl'`` on a
CPU-only machine is refused with a one-line error that names the config key to change.
"""
import torch
import torch.distributed as torch_dist
from mmengine.device import is_mlu_available, is_musa_available, is_npu_available
from mmengine.dist import utils as dist_utils
from mmengine.model import MMDistributedDataParallel

__all__ = ['install']

_original_init_dist_pytorch = dist_utils._init_dist_pytorch
_original_ddp_init = MMDistributedDataParallel.__init__


def _no_accelerator() -> bool:
    return not (torch.cuda.is_available() or is_npu_available() or is_mlu_available() or is_musa_available())


def _init_dist_pytorch(backend: str, init_backend: str = 'torch', **kwargs) -> None:
    """mmengine's ``_init_dist_pytorch``, without ``torch.cuda.set_device`` when there is no accelerator."""
    if not _no_accelerator() or init_backend != 'torch':
        _original_init_dist_pytorch(backend, init_backend=init_backend, **kwargs)
        return
    if backend not in ('gloo', 'mpi'):
        raise RuntimeError(f"distributed backend {backend!r} needs a GPU, and this machine has none; train on the "
                           "CPU with --cfg-options env_cfg.dist_cfg.backend=gloo")
    torch_dist.init_process_group(backend=backend, **kwargs)


def _ddp_init(self: MMDistributedDataParallel, module: torch.nn.Module, *args, **kwargs) -> None:
    """``MMDistributedDataParallel.__init__``, with ``device_ids=None`` for a module that lives on the CPU."""
    devices = {p.device.type for p in module.parameters()}
    if devices == {'cpu'} and kwargs.get('device_ids') is not None:
        kwargs['device_ids'] = None
    _original_ddp_init(self, module, *args, **kwargs)


def install() -> None:
    """Apply both fixes (idempotent)."""
    dist_utils._init_dist_pytorch = _init_dist_pytorch
    MMDistributedDataParallel.__init__ = _ddp_init
