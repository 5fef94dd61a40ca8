from .hooks import CheckpointOverwriteGuardHook, NonFiniteLossHook, RandomStateCheckpointHook
from .optim_wrappers import CPUAmpOptimWrapper

__all__ = ['CheckpointOverwriteGuardHook', 'CPUAmpOptimWrapper', 'NonFiniteLossHook', 'RandomStateCheckpointHook']
