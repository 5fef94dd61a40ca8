# R2S with RASS itself as the segmentor, tiny: the tiny SCR restorer, then the tiny RASS model trained on clean
# textures (configs/rass/rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py), on the seeded on-the-fly LQ
# textures.
_base_ = ['./r2s_scr-tiny-sd_segformer-mit-tiny_textures-lq-128x128.py']
model = dict(
    segmentor='{{fileDirname}}/../rass/rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py',
    segmentor_checkpoint='work_dirs/rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128/iter_300.pth')
