# RASS with the tiny randomly initialised Stable Diffusion (./tiny_sd.py) and mmseg's light SegformerHead: the
# structure of the paper model at a size that trains on a CPU in minutes.
_base_ = ['./tiny_sd.py']
model = dict(
    type='RASSEncoderDecoder',
    data_preprocessor=_base_.tiny_rass_data_preprocessor,
    backbone=_base_.tiny_rass_backbone,
    neck=_base_.tiny_rass_neck,
    decode_head=dict(
        type='SegformerHead',
        in_channels=[64, 64, 64, 64],
        in_index=[0, 1, 2, 3],
        channels=64,
        dropout_ratio=0.1,
        num_classes=8,
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
