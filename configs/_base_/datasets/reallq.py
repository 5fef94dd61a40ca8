# RealLQ: real low-quality photos annotated with the 150 ADE20K classes (evaluation only), as the RASS authors release
# it, in detectron2's ADE20K layout:
#   data/RealLQ/ADEChallengeData2016/images/validation/*.jpg
#   data/RealLQ/ADEChallengeData2016/annotations_detectron2/validation/*.png   (0..149, 255 = ignore)
# With ADE20K-style maps (annotations/validation, 0 = other): dict(dataset=_base_.reallq_ade20k_labels_dataset), or
#   --cfg-options test_dataloader.dataset.label_format=ade20k \
#       test_dataloader.dataset.data_prefix.seg_map_path=ADEChallengeData2016/annotations/validation
# Labels of the wrong format are refused with a one-line error naming the file. Training stays on clean ADE20K.
_base_ = ['mmseg::_base_/datasets/ade20k.py', './lq_test_sets.py']
val_dataloader = dict(dataset=_base_.reallq_dataset)
test_dataloader = val_dataloader
