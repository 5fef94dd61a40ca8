from .adapter_export_hook import AdapterExportHook
from .checkpoint_overwrite_guard_hook import CheckpointOverwriteGuardHook

__all__ = ['AdapterExportHook', 'CheckpointOverwriteGuardHook']
