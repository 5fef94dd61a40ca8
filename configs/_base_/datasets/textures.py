# dataset settings: the embedded texture dataset (8 classes, 128x128 PNG), generated offline by
# `python tools/dataset_converters/generate_dataset.py data/textures --seed 0` (or automatically: see generate_cfg).
dataset_type = 'TextureSegDataset'
data_root = 'data/textures'
# Generate data_root on first use when it is absent (reused when identical, refused when different);
# set to None to only read an existing folder.
generate_cfg = dict(seed=0, num_train=80, num_val=20, image_size=128)
train_pipeline = [
    dict(type='LoadImageFromFileChecked'),  # one-line error naming an unreadable file
    dict(type='LoadAnnotations'),  # reduce_zero_label=False comes from the dataset
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFileChecked'),  # one-line error naming an unreadable file
    dict(type='LoadAnnotations'),  # reduce_zero_label=False comes from the dataset
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
        generate_cfg=generate_cfg,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        generate_cfg=generate_cfg,
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
