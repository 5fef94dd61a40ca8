# RASS as in the paper and its public code: SD 2.1-base + FeatureProjection + Mask2Former on ADE20K (150 classes,
# 512x512 crops), training images degraded on the fly (Real-ESRGAN second order), tested on ADE20K-LQ (the validation
# images degraded offline, see ../_base_/datasets/ade20k_lq.py) with slide inference; the public code's schedule.
# Needs: checkpoints/stable-diffusion-2-1-base (a local diffusers folder), data/ade/ADEChallengeData2016, and for
# the paper's model the SCR adapter in model.backbone.merge_adapters.
_base_ = [
    '../_base_/models/rass_sd21-base_mask2former.py', 'mmseg::_base_/datasets/ade20k.py',
    '../_base_/datasets/lq_test_sets.py', '../_base_/degradation_paper.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_160k_rass.py'
]
custom_imports = dict(imports=['rass_mmseg', 'mmdet.models'], allow_failed_imports=False)
model = dict(
    data_preprocessor=dict(
        _base_.degradation_preprocessor, degrade='train', size=(512, 512), size_divisor=None,
        # the paper's degradation: the public RASS code's operations (its differentiable JPEG and Poisson rule)
        degradation=_base_.paper_degradation))
train_dataloader = dict(batch_size=2)
val_dataloader = dict(dataset=_base_.ade20k_lq_dataset)
test_dataloader = val_dataloader
