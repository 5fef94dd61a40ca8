# The same as r2s_scr-sd21_rass_sd21-mask2former_ade20k-lq-512x512.py,
# tested on RealLQ (../_base_/datasets/reallq.py; tests check the keys match).
_base_ = ['./r2s_scr-sd21_rass_sd21-mask2former_ade20k-lq-512x512.py']
val_dataloader = dict(dataset=_base_.reallq_dataset)
test_dataloader = val_dataloader
