# DT baseline, tiny: mmseg's SegFormer (MiT backbone + SegformerHead) shrunk for CPU, random init, trained and
# validated on the clean embedded textures. Its DT score is its checkpoint tested on degraded images:
#   python tools/test.py configs/protocols/ft-segformer_mit-tiny_1xb4-300it_textures-lq-128x128.py \
#       work_dirs/dt-segformer_mit-tiny_1xb4-300it_textures-128x128/iter_300.pth
_base_ = [
    'mmseg::_base_/models/segformer_mit-b0.py', '../_base_/datasets/textures.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_tiny_cpu.py'
]
model = dict(
    data_preprocessor=dict(size=(128, 128)),  # training batches are stacked to the image size
    backbone=dict(embed_dims=16, num_layers=[1, 1, 1, 1], num_heads=[1, 2, 4, 8], drop_path_rate=0.0),
    decode_head=dict(
        in_channels=[16, 32, 64, 128],
        channels=32,
        num_classes=8,
        norm_cfg=dict(type='BN', requires_grad=True)))  # mmseg's SyncBN needs a process group
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
