from .hooks import CheckpointOverwriteGuardHook, NonFiniteLossHook, RandomStateCheckpointHook
from .optim_wrappers import CPUAmpOptimWrapper, Detectron2OptimWrapperConstructor

__all__ = [
    'CheckpointOverwriteGuardHook', 'CPUAmpOptimWrapper', 'Detectron2OptimWrapperConstructor', 'NonFiniteLossHook',
    'RandomStateCheckpointHook'
]
