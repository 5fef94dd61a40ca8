# R2S, tiny: the tiny SCR restorer, then the DT Mask2Former, on the seeded on-the-fly LQ textures (inference only).
_base_ = ['./r2s_scr-tiny-sd_segformer-mit-tiny_textures-lq-128x128.py']
custom_imports = dict(imports=['rass_mmseg', 'mmdet.models'], allow_failed_imports=False)
model = dict(
    segmentor='{{fileDirname}}/dt-mask2former_mit-tiny_1xb4-300it_textures-128x128.py',
    segmentor_checkpoint='work_dirs/dt-mask2former_mit-tiny_1xb4-300it_textures-128x128/iter_300.pth')
