# The embedded default: tiny random-init RASS + SegformerHead on the generated texture dataset (8 classes), CPU.
_base_ = [
    '../_base_/models/rass_tiny-sd_segformer-head.py', '../_base_/datasets/textures.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_tiny_cpu.py'
]
model = dict(backbone=dict(prompt_source=dict(_delete_=True, type='ClassNamesPrompt', dataset='TextureSegDataset')))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
