# The low-quality evaluation sets as dataset overrides, under names that no mmseg base uses: a config whose first
# base is a whole mmseg config (which already defines val_dataloader) can take this file as a second base
# (mmengine refuses keys that two bases share) and set val_dataloader = dict(dataset=_base_.ade20k_lq_dataset).
# ADE20K-LQ (made by tools/degrade_dataset.py, see ade20k_lq.py) and RealLQ (see reallq.py):
ade20k_lq_dataset = dict(
    data_root='data/ade',
    data_prefix=dict(
        img_path='ADEChallengeData2016-LQ/images/validation', seg_map_path='ADEChallengeData2016/annotations/validation'),
    img_suffix='.png')
reallq_dataset = dict(
    data_root='data/RealLQ',
    data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
    img_suffix='.jpg')
