# The same as r2s_scr-sd21-base_segformer-mit-b5_ade20k-lq-512x512.py,
# tested on RealLQ (../_base_/datasets/reallq.py; tests check the keys match).
_base_ = ['./r2s_scr-sd21-base_segformer-mit-b5_ade20k-lq-512x512.py']
val_dataloader = dict(dataset=_base_.reallq_dataset)
test_dataloader = val_dataloader
