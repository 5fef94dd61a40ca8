# The plugin's training hooks under a name no mmseg base uses, so that configs built on a whole mmseg config
# (which cannot also take ../default_runtime.py as a base) get the same list: custom_hooks = _base_.rass_custom_hooks.
# Training never silently overwrites an earlier run's checkpoints in the same work dir (keep this hook first:
# `--cfg-options custom_hooks.0.allow_overwrite=True`); a NaN/inf loss stops training at once, naming the
# iteration; checkpoints carry the training step's random states, so --resume repeats an uninterrupted run.
rass_custom_hooks = [
    dict(type='CheckpointOverwriteGuardHook', allow_overwrite=False),
    dict(type='NonFiniteLossHook', interval=1),
    dict(type='RandomStateCheckpointHook'),
]
