# DT baseline, tiny: mmseg's EncoderDecoder with the tiny MiT backbone of dt-segformer_mit-tiny_1xb4-300it_textures-
# 128x128.py and the tiny Mask2FormerHead of the tiny RASS config (its backbone swapped, its neck dropped), random
# init, trained on the clean embedded textures. DT score: test its checkpoint with the ft-mask2former config.
_base_ = ['../rass/rass_tiny-sd_mask2former_1xb4-300it_textures-128x128.py']
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], size=(128, 128),
                           size_divisor=None),
    backbone=dict(
        _delete_=True,
        type='MixVisionTransformer',
        embed_dims=16,
        num_layers=[1, 1, 1, 1],
        num_heads=[1, 2, 4, 8],
        patch_sizes=[7, 3, 3, 3],
        sr_ratios=[8, 4, 2, 1],
        out_indices=(0, 1, 2, 3)),
    neck=None,
    decode_head=dict(in_channels=[16, 32, 64, 128]))
