# The paper's RASS setting with mmseg's light all-MLP SegformerHead in place of Mask2Former: the same SD 2.1-base
# features, Seg LoRA, projection, degraded training and ADE20K-LQ test; a head that needs neither mmdet nor mmcv's
# compiled ops. Needs: checkpoints/stable-diffusion-2-1-base and data/ade/ADEChallengeData2016.
_base_ = ['./rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py']
custom_imports = dict(imports=['rass_mmseg'], allow_failed_imports=False)
model = dict(
    decode_head=dict(
        _delete_=True,
        type='SegformerHead',
        in_channels=[512, 512, 512, 512],
        in_index=[0, 1, 2, 3],
        channels=256,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
