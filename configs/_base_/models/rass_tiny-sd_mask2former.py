# The tiny RASS trunk (./tiny_sd.py: backbone, neck, preprocessor) with the paper's Mask2FormerHead
# (./mask2former_head.py) shrunk for a CPU: 32 hidden channels, 10 queries, 1 encoder and 2 decoder layers, 1024
# sampled points, 8 classes. Needs mmdet (custom_imports 'mmdet.models').
_base_ = ['./tiny_sd.py', './mask2former_head.py']
num_classes = 8
model = dict(
    type='RASSEncoderDecoder',
    data_preprocessor=_base_.tiny_rass_data_preprocessor,
    backbone=_base_.tiny_rass_backbone,
    neck=_base_.tiny_rass_neck,
    decode_head=dict(
        in_channels=[64, 64, 64, 64],
        feat_channels=32,
        out_channels=32,
        num_classes=num_classes,
        num_queries=10,
        pixel_decoder=dict(
            norm_cfg=dict(num_groups=8),
            encoder=dict(
                num_layers=1,
                layer_cfg=dict(self_attn_cfg=dict(embed_dims=32, num_heads=2),
                               ffn_cfg=dict(embed_dims=32, feedforward_channels=64))),
            positional_encoding=dict(num_feats=16)),
        positional_encoding=dict(num_feats=16),
        transformer_decoder=dict(
            num_layers=2,
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=32, num_heads=2), cross_attn_cfg=dict(embed_dims=32, num_heads=2),
                ffn_cfg=dict(embed_dims=32, feedforward_channels=64))),
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1]),
        train_cfg=dict(num_points=1024)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
