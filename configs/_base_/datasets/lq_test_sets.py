# The low-quality evaluation sets as dataset overrides, under names that no mmseg base uses: a config whose first
# base is a whole mmseg config (which already defines val_dataloader) can take this file as a second base
# (mmengine refuses keys that two bases share) and set val_dataloader = dict(dataset=_base_.ade20k_lq_dataset).
# Each override keeps the base's test pipeline (512 or 640 resize); ADE20KFormatDataset swaps its LoadAnnotations for
# LoadAnnotationsChecked, which refuses label maps of the other label format with a one-line error naming the file.
#
# The public RASS code's test geometry (detectron2's default test mapper): images decoded by PIL, the short side
# resized to 512 (long side at most 2048) with detectron2's size arithmetic and PIL's antialiased bilinear filter
# (mmseg's Resize uses OpenCV, unfiltered: up to 29 grey levels apart on ADE20K). The paper configs
# (../../rass/rass_sd21-base_mask2former_*) test with it and with the black padding to a multiple of 8 of
# test_cfg=dict(mode='slide_features', pad_to_multiple=8, pad_value=-1.0); any config can take it with
#   val_dataloader = dict(dataset=dict(_base_.ade20k_lq_dataset, pipeline=_base_.public_rass_test_pipeline))
public_rass_test_pipeline = [
    dict(type='LoadImageFromFileChecked', imdecode_backend='pillow'),
    dict(type='PILResizeShortestEdge', short_edge_length=512, max_size=2048),
    dict(type='LoadAnnotations', reduce_zero_label=True),  # after the resize: scored at the original size
    dict(type='PackSegInputs')
]
#
# Label formats (label_format): 'ade20k' = ADEChallengeData2016/annotations (0..150, 0 = other; mmseg's ADE20K
# download); 'detectron2' = ADEChallengeData2016/annotations_detectron2 (0..149, 255 = ignore; what the public RASS
# code evaluates with, made by Mask2Former's datasets/prepare_ade20k_sem_seg.py).
#
# ADE20K-LQ as the RASS authors release it (README "Download Degraded ADE20K"): the 2000 ADE20K validation images
# degraded offline with Real-ESRGAN, JPEG files with ADE20K's names that replace images/validation. Unpack them to
#   data/ade/ADEChallengeData2016-LQ/images/validation/ADE_val_*.jpg
# next to the clean data/ade/ADEChallengeData2016 (whose labels they use).
ade20k_lq_dataset = dict(
    type='ADE20KFormatDataset',
    data_root='data/ade',
    data_prefix=dict(
        img_path='ADEChallengeData2016-LQ/images/validation',
        seg_map_path='ADEChallengeData2016/annotations/validation'),
    img_suffix='.jpg',
    label_format='ade20k')
ade20k_lq_detectron2_labels_dataset = dict(
    ade20k_lq_dataset,
    data_prefix=dict(
        img_path='ADEChallengeData2016-LQ/images/validation',
        seg_map_path='ADEChallengeData2016/annotations_detectron2/validation'),
    label_format='detectron2')
# ADE20K-LQ made here instead (tools/dataset_converters/degrade_dataset.py, PNG, same stems; see ade20k_lq.py): not
# the released bits.
ade20k_lq_generated_dataset = dict(
    ade20k_lq_dataset,
    data_prefix=dict(
        img_path='ADEChallengeData2016-LQ-generated/images/validation',
        seg_map_path='ADEChallengeData2016/annotations/validation'),
    img_suffix='.png')
# RealLQ as released (README "Download RealLQ"; the public code reads it with DETECTRON2_DATASETS=/path/to/RealLQ,
# and its demo script reads RealLQ/ADEChallengeData2016/images/validation/*.jpg). Unpack it so that
#   data/RealLQ/ADEChallengeData2016/images/validation/*.jpg
#   data/RealLQ/ADEChallengeData2016/annotations_detectron2/validation/*.png   (0..149, 255 = ignore)
# exist. With ADE20K-style maps (annotations/validation, 0 = other) use reallq_ade20k_labels_dataset.
reallq_dataset = dict(
    type='ADE20KFormatDataset',
    data_root='data/RealLQ',
    data_prefix=dict(
        img_path='ADEChallengeData2016/images/validation',
        seg_map_path='ADEChallengeData2016/annotations_detectron2/validation'),
    img_suffix='.jpg',
    label_format='detectron2')
reallq_ade20k_labels_dataset = dict(
    reallq_dataset,
    data_prefix=dict(
        img_path='ADEChallengeData2016/images/validation', seg_map_path='ADEChallengeData2016/annotations/validation'),
    label_format='ade20k')
