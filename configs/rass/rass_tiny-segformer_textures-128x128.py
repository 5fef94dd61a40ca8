# The embedded default: tiny random-init RASS + SegFormer head on the generated texture dataset, CPU.
_base_ = [
    '../_base_/models/rass_tiny.py', '../_base_/datasets/textures.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_tiny_cpu.py'
]
model = dict(
    backbone=dict(prompt_source=dict(_delete_=True, type='ClassNamesPrompt', dataset='TextureSegDataset')),
    decode_head=dict(num_classes=8))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
