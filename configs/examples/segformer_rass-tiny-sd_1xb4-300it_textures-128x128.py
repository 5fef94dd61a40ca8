# The recipe of ./segformer_rass-sd21-base_8xb2-160k_ade20k-512x512.py at toy size, for a CPU: the tiny random-init
# SD (../_base_/models/tiny_sd.py, no weights needed) and the embedded texture dataset (8 classes, 128x128, written
# to data/textures on first use), 300 iterations. Only sizes, data and schedule differ from the full config.
_base_ = ['./segformer_rass-sd21-base_8xb2-160k_ade20k-512x512.py', '../_base_/models/tiny_sd.py']
model = dict(
    data_preprocessor=dict(size=(128, 128)),
    backbone=dict(
        _base_.tiny_rass_backbone, _delete_=True,
        prompt_source=dict(type='ClassNamesPrompt', dataset='TextureSegDataset')),
    neck=dict(
        in_channels=_base_.tiny_rass_neck.in_channels,
        bottleneck_channels=32,
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True)),
    decode_head=dict(channels=64, num_classes=8, norm_cfg=dict(type='BN', requires_grad=True)))
textures = dict(
    type='TextureSegDataset',
    data_root='data/textures',
    generate_cfg=dict(seed=0, num_train=80, num_val=20, image_size=128))
train_pipeline = [
    dict(type='LoadImageFromFileChecked'),
    dict(type='LoadAnnotations'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [dict(type='LoadImageFromFileChecked'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
train_dataloader = dict(
    batch_size=4,
    dataset=dict(
        textures, _delete_=True, data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        textures, _delete_=True, data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr=2e-4))
param_scheduler = [dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=300, by_epoch=False)]
train_cfg = dict(max_iters=300, val_interval=300)
default_hooks = dict(logger=dict(interval=25), checkpoint=dict(interval=300))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
