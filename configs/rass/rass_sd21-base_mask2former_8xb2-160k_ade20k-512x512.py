# The DT baseline of RASS: the paper's model and schedule (./rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py)
# trained and validated on clean ADE20K (no degradation). Testing its checkpoint with the ade20k-lq / reallq configs
# gives the DT protocol (a model trained on clean images, tested on low-quality ones).
_base_ = ['./rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py']
model = dict(data_preprocessor=dict(degrade='never'))
val_dataloader = dict(
    dataset=dict(
        data_root='data/ade/ADEChallengeData2016',
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        img_suffix='.jpg'))
test_dataloader = val_dataloader
