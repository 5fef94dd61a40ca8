# mmseg's own runtime, with the side-by-side visualizer (input | prediction | ground truth) for --show-dir.
_base_ = ['mmseg::_base_/default_runtime.py', './rass_hooks.py']
custom_imports = dict(imports=['rass_mmseg'], allow_failed_imports=False)
visualizer = dict(type='SideBySideSegVisualizer', vis_backends=[dict(type='LocalVisBackend')], name='visualizer')
# overwrite guard, NaN/inf stop, random states in checkpoints: see rass_hooks.py
custom_hooks = _base_.rass_custom_hooks
# mmseg's tools/train.py builds this runner (RUNNERS.build) when runner_type is set: before the config is logged and
# the model built, it names every missing input (SD folder, adapters, checkpoints, data roots) in one error.
runner_type = 'InputCheckingRunner'
