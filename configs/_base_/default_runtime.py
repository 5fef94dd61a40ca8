# mmseg's own runtime, with the side-by-side visualizer (input | prediction | ground truth) for --show-dir.
_base_ = ['mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['rass_mmseg'], allow_failed_imports=False)
visualizer = dict(type='SideBySideSegVisualizer', vis_backends=[dict(type='LocalVisBackend')], name='visualizer')
# Training never silently overwrites an earlier run's checkpoints in the same work dir (keep this hook first:
# `--cfg-options custom_hooks.0.allow_overwrite=True`); a NaN/inf loss stops training at once, naming the
# iteration; checkpoints carry the training step's random states, so --resume repeats an uninterrupted run.
custom_hooks = [
    dict(type='CheckpointOverwriteGuardHook', allow_overwrite=False),
    dict(type='NonFiniteLossHook', interval=1),
    dict(type='RandomStateCheckpointHook'),
]
