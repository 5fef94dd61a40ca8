# The embedded texture dataset with its validation split degraded on disk (the offline counterpart of
# DegradationDataPreProcessor with degrade='always', e.g.
# configs/rass/rass_tiny-sd_segformer-head_1xb4-300it_textures-lq-128x128.py;
# same seed -> the same bits). Training stays clean. Make it once, from the repo root, after data/textures exists:
#   python tools/dataset_converters/degrade_dataset.py data/textures/img_dir/val data/textures_lq/img_dir/val
# The labels are read from data/textures/ann_dir/val.
_base_ = ['./textures.py']
val_dataloader = dict(
    dataset=dict(
        data_root='data',
        data_prefix=dict(img_path='textures_lq/img_dir/val', seg_map_path='textures/ann_dir/val'),
        generate_cfg=None))
test_dataloader = val_dataloader
