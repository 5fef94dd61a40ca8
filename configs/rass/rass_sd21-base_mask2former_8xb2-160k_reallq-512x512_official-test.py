# The authors' released model tested as their public code tests it (see
# ./rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512_official-test.py), on RealLQ
# (../_base_/datasets/lq_test_sets.py, detectron2-style labels).
_base_ = ['./rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512_official-test.py']
val_dataloader = dict(dataset=_base_.reallq_dataset)
test_dataloader = val_dataloader
