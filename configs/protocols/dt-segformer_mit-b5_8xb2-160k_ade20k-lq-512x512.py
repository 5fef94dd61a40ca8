# DT baseline: mmseg's SegFormer MiT-B5 (82.0M parameters; the paper lists 84.7M, the original 768-channel decoder)
# trained on clean ADE20K with mmseg's own config and schedule, validated and tested on ADE20K-LQ. DT score: mmseg's
# released checkpoint (49.13 mIoU on clean ADE20K), saved as checkpoints/segformer_mit-b5_512x512_160k_ade20k.pth, from
# https://download.openmmlab.com/mmsegmentation/v0.5/segformer/segformer_mit-b5_512x512_160k_ade20k/segformer_mit-b5_512x512_160k_ade20k_20210726_145235-94cedf59.pth  # noqa
#   python tools/test.py configs/protocols/dt-segformer_mit-b5_8xb2-160k_ade20k-lq-512x512.py \
#       checkpoints/segformer_mit-b5_512x512_160k_ade20k.pth
_base_ = [
    'mmseg::segformer/segformer_mit-b5_8xb2-160k_ade20k-512x512.py', '../_base_/rass_hooks.py',
    '../_base_/datasets/lq_test_sets.py'
]
custom_imports = dict(imports=['rass_mmseg'], allow_failed_imports=False)  # weights-only checkpoint loading
# the hooks of ../_base_/default_runtime.py (a full mmseg config cannot take it as a second base)
custom_hooks = _base_.rass_custom_hooks
visualizer = dict(type='SideBySideSegVisualizer')
# ADE20K-LQ validation/test images, the same override as ../_base_/datasets/ade20k_lq.py
val_dataloader = dict(dataset=_base_.ade20k_lq_dataset)
test_dataloader = val_dataloader
