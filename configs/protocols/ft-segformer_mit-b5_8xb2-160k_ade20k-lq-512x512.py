# FT baseline: the DT SegFormer MiT-B5 checkpoint fine-tuned on ADE20K training images degraded on the fly
# (Real-ESRGAN second order, DegradationDataPreProcessor in degrade='train' mode), tested on ADE20K-LQ.
# The schedule is the base one (160k); the paper does not state the FT length: set train_cfg.max_iters to shorten.
_base_ = ['./dt-segformer_mit-b5_8xb2-160k_ade20k-lq-512x512.py', '../_base_/degradation_paper.py']
model = dict(
    data_preprocessor=dict(
        type='DegradationDataPreProcessor', degrade='train',
        degradation=_base_.paper_degradation))  # the public code's ops, as the paper trained
load_from = 'checkpoints/segformer_mit-b5_512x512_160k_ade20k.pth'
