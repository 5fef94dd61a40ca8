# The same as dt-segformer_mit-b5_8xb2-160k_ade20k-lq-512x512.py,
# tested on RealLQ (../_base_/datasets/reallq.py; tests check the keys match).
_base_ = ['./dt-segformer_mit-b5_8xb2-160k_ade20k-lq-512x512.py']
val_dataloader = dict(dataset=_base_.reallq_dataset)
test_dataloader = val_dataloader
