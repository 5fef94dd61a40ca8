# RealLQ: real low-quality photos annotated with the 150 ADE20K classes, in ADE20K's folder layout (evaluation only):
#   data/RealLQ/images/validation/*.jpg, data/RealLQ/annotations/validation/*.png (0 = other, reduce_zero_label)
# Set img_suffix if the photos are not .jpg. Training stays on clean ADE20K (mmseg's ade20k.py).
_base_ = ['mmseg::_base_/datasets/ade20k.py', './lq_test_sets.py']
val_dataloader = dict(dataset=_base_.reallq_dataset)
test_dataloader = val_dataloader
