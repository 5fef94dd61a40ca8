# The embedded default with the paper's Mask2FormerHead (shrunk) instead of SegformerHead.
_base_ = [
    '../_base_/models/rass_tiny-sd_mask2former.py', '../_base_/datasets/textures.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_tiny_cpu.py'
]
custom_imports = dict(imports=['rass_mmseg', 'mmdet.models'], allow_failed_imports=False)
model = dict(backbone=dict(prompt_source=dict(_delete_=True, type='ClassNamesPrompt', dataset='TextureSegDataset')))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
