# SCR on the embedded texture dataset, CPU: the tiny one-step restorer learns to undo the on-the-fly
# Real-ESRGAN degradation, with the cross-attention of each class name aligned to its mask (L_SCL).
# Its adapter (work_dir/scr_adapter_iter_300) merges into the tiny RASS configs:
#   --cfg-options \
#   "model.backbone.merge_adapters=['work_dirs/scr_tiny-sd_1xb4-300it_textures-128x128/scr_adapter_iter_300']"
_base_ = [
    '../_base_/models/scr_tiny-sd.py', '../_base_/datasets/textures.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_tiny_cpu.py'
]
model = dict(
    backbone=dict(prompt_source=dict(_delete_=True, type='ClassNamesPrompt', dataset='TextureSegDataset')),
    gt_class_prompt=dict(type='ClassNamesPrompt', dataset='TextureSegDataset'),
    negative_classes='all')  # training prompts name all 8 classes, as the test prompt does
# OSEDiff's VSD term is off here (four more UNet passes per step); the paper-size config shows how to switch it on.
val_evaluator = dict(_delete_=True, type='RestorationMetric')
test_evaluator = val_evaluator
custom_hooks = _base_.custom_hooks + [dict(type='AdapterExportHook', prefix='scr_adapter')]
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
