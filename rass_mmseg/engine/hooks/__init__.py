from .adapter_export_hook import AdapterExportHook
from .checkpoint_overwrite_guard_hook import CheckpointOverwriteGuardHook
from .non_finite_loss_hook import NonFiniteLossHook
from .random_state_checkpoint_hook import RandomStateCheckpointHook

__all__ = ['AdapterExportHook', 'CheckpointOverwriteGuardHook', 'NonFiniteLossHook', 'RandomStateCheckpointHook']
