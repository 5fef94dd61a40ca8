from .hooks import CheckpointOverwriteGuardHook, NonFiniteLossHook, RandomStateCheckpointHook
from .model_wrappers import TwoStepDistributedDataParallel
from .optim_wrappers import CPUAmpOptimWrapper, Detectron2OptimWrapperConstructor, SCRVSDOptimWrapperConstructor
from .runners import InputCheckingRunner

__all__ = [
    'CheckpointOverwriteGuardHook', 'CPUAmpOptimWrapper', 'Detectron2OptimWrapperConstructor', 'InputCheckingRunner',
    'NonFiniteLossHook', 'RandomStateCheckpointHook', 'SCRVSDOptimWrapperConstructor', 'TwoStepDistributedDataParallel'
]
