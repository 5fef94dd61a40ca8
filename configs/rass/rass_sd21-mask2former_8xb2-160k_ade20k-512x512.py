# RASS at paper size on ADE20K (150 classes, 512x512 crops, slide inference), the public code's schedule.
# Needs: checkpoints/stable-diffusion-2-1-base (a local diffusers folder) and data/ade/ADEChallengeData2016.
_base_ = [
    '../_base_/models/rass_sd21_mask2former.py', 'mmseg::_base_/datasets/ade20k.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_160k_rass.py'
]
custom_imports = dict(imports=['rass_mmseg', 'mmdet.models'], allow_failed_imports=False)
train_dataloader = dict(batch_size=2)
