# mmseg's own runtime, with the side-by-side visualizer (input | prediction | ground truth) for --show-dir.
_base_ = ['mmseg::_base_/default_runtime.py', './rass_hooks.py']
custom_imports = dict(imports=['rass_mmseg'], allow_failed_imports=False)
visualizer = dict(type='SideBySideSegVisualizer', vis_backends=[dict(type='LocalVisBackend')], name='visualizer')
# overwrite guard, NaN/inf stop, random states in checkpoints: see rass_hooks.py
custom_hooks = _base_.rass_custom_hooks
