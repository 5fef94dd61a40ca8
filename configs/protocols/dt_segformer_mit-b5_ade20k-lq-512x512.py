# DT baseline: mmseg's SegFormer MiT-B5 (84.7M parameters, the paper's SegFormer) trained on clean ADE20K with
# mmseg's own config and schedule, validated and tested on ADE20K-LQ. DT score: mmseg's released checkpoint
# (49.13 mIoU on clean ADE20K), saved as checkpoints/segformer_mit-b5_512x512_160k_ade20k.pth, from
# https://download.openmmlab.com/mmsegmentation/v0.5/segformer/segformer_mit-b5_512x512_160k_ade20k/segformer_mit-b5_512x512_160k_ade20k_20210726_145235-94cedf59.pth  # noqa
#   python tools/test.py configs/protocols/dt_segformer_mit-b5_ade20k-lq-512x512.py \
#       checkpoints/segformer_mit-b5_512x512_160k_ade20k.pth
_base_ = ['mmseg::segformer/segformer_mit-b5_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['rass_mmseg'], allow_failed_imports=False)  # weights-only checkpoint loading
# the hooks of ../_base_/default_runtime.py (a full mmseg config cannot take it as a second base; tests check)
custom_hooks = [
    dict(type='CheckpointOverwriteGuardHook', allow_overwrite=False),
    dict(type='NonFiniteLossHook', interval=1),
    dict(type='RandomStateCheckpointHook'),
]
visualizer = dict(type='SideBySideSegVisualizer')
# ADE20K-LQ validation/test images, as in ../_base_/datasets/ade20k_lq.py (a config inheriting a full mmseg config
# cannot take a second dataset base, so the three keys are set here; tests check they match).
val_dataloader = dict(
    dataset=dict(
        data_root='data/ade',
        data_prefix=dict(
            img_path='ADEChallengeData2016-LQ/images/validation',
            seg_map_path='ADEChallengeData2016/annotations/validation'),
        img_suffix='.png'))
test_dataloader = val_dataloader
