# R2S on the tiny pretrained SD: the SCR restorer trained on it restores the seeded on-the-fly LQ textures, then the
# clean-trained RASS model on the same SD segments them.
_base_ = ['./r2s_scr-tiny-sd_segformer-mit-tiny_textures-lq-128x128.py']
model = dict(
    restorer='{{fileDirname}}/../scr/scr_tiny-sd-textures_1xb4-300it_textures-128x128.py',
    restorer_checkpoint='work_dirs/scr_tiny-sd-textures_1xb4-300it_textures-128x128/iter_300.pth',
    segmentor='{{fileDirname}}/../rass/rass_tiny-sd-textures_segformer-head_1xb4-300it_textures-128x128.py',
    segmentor_checkpoint='work_dirs/rass_tiny-sd-textures_segformer-head_1xb4-300it_textures-128x128/iter_300.pth')
