# The same as dt-mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-lq-640x640.py,
# tested on RealLQ (../_base_/datasets/reallq.py; tests check the keys match).
_base_ = ['./dt-mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-lq-640x640.py']
val_dataloader = dict(dataset=_base_.reallq_dataset)
test_dataloader = val_dataloader
