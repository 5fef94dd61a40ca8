from .hooks import CheckpointOverwriteGuardHook

__all__ = ['CheckpointOverwriteGuardHook']
