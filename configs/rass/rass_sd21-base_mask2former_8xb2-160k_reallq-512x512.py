# The paper's RASS (./rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py: trained on ADE20K degraded on the
# fly) tested on RealLQ: real low-quality photos annotated with the 150 ADE20K classes (../_base_/datasets/reallq.py).
_base_ = ['./rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py']
val_dataloader = dict(dataset=_base_.reallq_dataset)
test_dataloader = val_dataloader
