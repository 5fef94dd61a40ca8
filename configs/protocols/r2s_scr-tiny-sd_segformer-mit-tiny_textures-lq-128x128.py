# R2S, tiny: the tiny SCR restorer restores the seeded on-the-fly LQ textures (degrade='always', the same images the
# FT config tests on), then the DT SegFormer segments them. Inference only; train both sub-models first:
#   python tools/train.py configs/scr/scr_tiny-sd_1xb4-300it_textures-128x128.py
#   python tools/train.py configs/protocols/dt-segformer_mit-tiny_1xb4-300it_textures-128x128.py
#   python tools/test.py configs/protocols/r2s_scr-tiny-sd_segformer-mit-tiny_textures-lq-128x128.py \
#       work_dirs/dt-segformer_mit-tiny_1xb4-300it_textures-128x128/iter_300.pth
_base_ = [
    '../_base_/datasets/textures.py', '../_base_/default_runtime.py', '../_base_/schedules/schedule_tiny_cpu.py',
    '../_base_/degradation.py'
]
model = dict(
    type='RestoreThenSegment',
    restorer='{{fileDirname}}/../scr/scr_tiny-sd_1xb4-300it_textures-128x128.py',
    restorer_checkpoint='work_dirs/scr_tiny-sd_1xb4-300it_textures-128x128/iter_300.pth',
    segmentor='{{fileDirname}}/dt-segformer_mit-tiny_1xb4-300it_textures-128x128.py',
    segmentor_checkpoint='work_dirs/dt-segformer_mit-tiny_1xb4-300it_textures-128x128/iter_300.pth',
    data_preprocessor=dict(_base_.degradation_preprocessor, degrade='always'))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
