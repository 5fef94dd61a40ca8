# ADE20K-LQ: clean ADE20K training (mmseg's ade20k.py); validation and test on the 2000 ADE20K validation images
# degraded offline, as the RASS authors release them (JPEG, in data/ade/ADEChallengeData2016-LQ/images/validation),
# scored against ADE20K's own labels (data/ade/ADEChallengeData2016/annotations/validation, label_format='ade20k').
# Other layouts (./lq_test_sets.py): detectron2 labels -> dict(dataset=_base_.ade20k_lq_detectron2_labels_dataset);
# the images made here -> dict(dataset=_base_.ade20k_lq_generated_dataset), after, from the repo root:
#   python tools/dataset_converters/degrade_dataset.py data/ade/ADEChallengeData2016/images/validation \
#       data/ade/ADEChallengeData2016-LQ-generated/images/validation
# (PNG, same stems; manifest.json records seed and parameters; the degradation of DegradationDataPreProcessor in
# degrade='always' mode, applied at the original image size before the test pipeline's Resize, as an offline
# benchmark is; statistically like the release, not the same bits).
# The public RASS code's test resize (PIL, antialiased; ./lq_test_sets.py), as the paper configs use it:
#   val_dataloader = dict(dataset=dict(_base_.ade20k_lq_dataset, pipeline=_base_.public_rass_test_pipeline))
# On the fly instead (no files; degraded after the test pipeline's Resize): keep mmseg's ade20k.py and give the model
# the degradation preprocessor with degrade='always', e.g. with '../_base_/degradation.py' among the bases:
#   model = dict(data_preprocessor=dict(type='DegradationDataPreProcessor', degrade='always',
#                                       degradation=_base_.degradation_preprocessor.degradation))
_base_ = ['mmseg::_base_/datasets/ade20k.py', './lq_test_sets.py']
val_dataloader = dict(dataset=_base_.ade20k_lq_dataset)
test_dataloader = val_dataloader
