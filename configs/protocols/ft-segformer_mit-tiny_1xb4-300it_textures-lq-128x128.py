# FT baseline, tiny: the DT SegFormer fine-tuned on textures degraded on the fly (Real-ESRGAN second order) and
# tested on the seeded on-the-fly LQ validation set (degrade='always'). Train the DT config first (load_from);
# testing the DT checkpoint with this config gives the DT score.
_base_ = ['./dt-segformer_mit-tiny_1xb4-300it_textures-128x128.py', '../_base_/degradation.py']
model = dict(
    data_preprocessor=dict(
        type='DegradationDataPreProcessor', degrade='always', degradation=_base_.degradation_preprocessor.degradation))
load_from = 'work_dirs/dt-segformer_mit-tiny_1xb4-300it_textures-128x128/iter_300.pth'
