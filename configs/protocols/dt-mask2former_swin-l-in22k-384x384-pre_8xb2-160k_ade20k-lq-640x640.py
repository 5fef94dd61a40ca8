# DT baseline: mmseg's Mask2Former Swin-L (in22k pre-training; 215.5M parameters, the paper's Mask2Former) trained
# on clean ADE20K with mmseg's own config (640x640 crops) and schedule, validated and tested on ADE20K-LQ. DT score:
# mmseg's released checkpoint (56.01 mIoU on clean ADE20K), saved as
# checkpoints/mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640.pth, from
# https://download.openmmlab.com/mmsegmentation/v0.5/mask2former/mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640/mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640_20221203_235933-7120c214.pth  # noqa
_base_ = [
    'mmseg::mask2former/mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640.py', '../_base_/rass_hooks.py',
    '../_base_/datasets/lq_test_sets.py'
]
custom_imports = dict(imports=['rass_mmseg', 'mmdet.models'], allow_failed_imports=False)
# the hooks of ../_base_/default_runtime.py (a full mmseg config cannot take it as a second base)
custom_hooks = _base_.rass_custom_hooks
visualizer = dict(type='SideBySideSegVisualizer')
# ADE20K-LQ validation/test images, the same override as ../_base_/datasets/ade20k_lq.py
val_dataloader = dict(dataset=_base_.ade20k_lq_dataset)
test_dataloader = val_dataloader
