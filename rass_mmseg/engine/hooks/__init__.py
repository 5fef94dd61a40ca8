from .checkpoint_overwrite_guard_hook import CheckpointOverwriteGuardHook

__all__ = ['CheckpointOverwriteGuardHook']
