# DT baseline, tiny: mmseg's EncoderDecoder with the tiny MiT backbone of dt_segformer_mit-tiny_textures-128x128.py
# and the tiny Mask2FormerHead of the RASS tiny config (../_base_/models/rass_tiny_mask2former.py), random init,
# trained on the clean embedded textures. DT score: test its checkpoint with ft_mask2former_mit-tiny_textures-lq.
_base_ = [
    '../_base_/models/rass_tiny_mask2former.py', '../_base_/datasets/textures.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_tiny_cpu.py'
]
custom_imports = dict(imports=['rass_mmseg', 'mmdet.models'], allow_failed_imports=False)
model = dict(
    _delete_=True,
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size=(128, 128)),
    backbone=dict(
        type='MixVisionTransformer',
        embed_dims=16,
        num_layers=[1, 1, 1, 1],
        num_heads=[1, 2, 4, 8],
        patch_sizes=[7, 3, 3, 3],
        sr_ratios=[8, 4, 2, 1],
        out_indices=(0, 1, 2, 3)),
    decode_head=dict(_base_.model.decode_head, in_channels=[16, 32, 64, 128]),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
