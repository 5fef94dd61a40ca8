# RASS as in the paper and its public code: SD 2.1-base + FeatureProjection + Mask2Former on ADE20K (150 classes,
# 512x512 crops), training images degraded on the fly (Real-ESRGAN second order), tested on ADE20K-LQ (the validation
# images degraded offline, see ../_base_/datasets/ade20k_lq.py) with slide inference; the public code's schedule and
# test geometry (PIL resize, black padding to a multiple of 8).
# Needs: checkpoints/stable-diffusion-2-1-base (a local diffusers folder), data/ade/ADEChallengeData2016, and for
# the paper's model SD with the SCR LoRA merged: the SCR adapter in model.backbone.merge_adapters, or as
# model.backbone.pretrained the folder tools/model_converters/convert_official_rass.py writes with the UNet of the
# released rass.pth.
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
        degradation=_base_.paper_degradation),
    # the public code's test: windows over the image padded with black to a multiple of 8 (detectron2's
    # SIZE_DIVISIBILITY, zeros before its [-1, 1] mapping), the head's output cropped back
    test_cfg=dict(mode='slide_features', pad_to_multiple=8, pad_value=-1.0))
train_dataloader = dict(batch_size=2)
# and its test resize: PIL-decoded images, short side 512 (long side <= 2048) resized by PIL, antialiased
test_pipeline = _base_.public_rass_test_pipeline
val_dataloader = dict(dataset=dict(_base_.ade20k_lq_dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader
