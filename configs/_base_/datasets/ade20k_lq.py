# ADE20K-LQ: the 2000 ADE20K validation images degraded offline with the Real-ESRGAN second-order pipeline (the
# degradation of DegradationDataPreProcessor in degrade='test' mode, seed 0), scored against ADE20K's own labels.
# Training stays on clean ADE20K (mmseg's ade20k.py). Make the images once, from the repo root:
#   python tools/degrade_dataset.py data/ade/ADEChallengeData2016/images/validation \
#       data/ade/ADEChallengeData2016-LQ/images/validation
# (PNG, same stems; manifest.json records seed and parameters). The degradation is applied at the original image
# size, before the test pipeline's Resize, as an offline benchmark is.
# On the fly instead (no files; degraded after the test pipeline's Resize, so not the same bits): keep mmseg's
# ade20k.py and give the model the degradation preprocessor in test mode, e.g. with '../_base_/degradation.py'
# among the bases:  model = dict(data_preprocessor=dict(type='DegradationDataPreProcessor', degrade='test',
#                                                       degradation=_base_.degradation_preprocessor.degradation))
_base_ = ['mmseg::_base_/datasets/ade20k.py', './lq_test_sets.py']
val_dataloader = dict(dataset=_base_.ade20k_lq_dataset)
test_dataloader = val_dataloader
