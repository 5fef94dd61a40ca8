# RASS at paper size, trained on ADE20K images degraded on the fly (its FT column in Table 1) and tested on
# ADE20K-LQ: configs/rass/rass_sd21-mask2former_8xb2-160k_ade20k-512x512.py with the degradation preprocessor.
_base_ = ['../rass/rass_sd21-mask2former_8xb2-160k_ade20k-512x512.py', '../_base_/degradation.py',
          '../_base_/datasets/lq_test_sets.py']
model = dict(
    data_preprocessor=dict(
        type='DegradationDataPreProcessor', degrade='train', degradation=_base_.degradation_preprocessor.degradation))
# ADE20K-LQ validation/test images, as in ../_base_/datasets/ade20k_lq.py (tests check they match)
val_dataloader = dict(dataset=_base_.ade20k_lq_dataset)
test_dataloader = val_dataloader
