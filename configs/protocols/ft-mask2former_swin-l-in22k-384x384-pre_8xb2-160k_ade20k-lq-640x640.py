# FT baseline: the DT Mask2Former Swin-L checkpoint fine-tuned on ADE20K training images degraded on the fly
# (degrade='train'), tested on ADE20K-LQ. Base schedule (160k); set train_cfg.max_iters to shorten.
_base_ = [
    './dt-mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-lq-640x640.py', '../_base_/degradation_paper.py'
]
model = dict(
    data_preprocessor=dict(
        type='DegradationDataPreProcessor', degrade='train',
        degradation=_base_.paper_degradation))  # the public code's ops, as the paper trained
load_from = 'checkpoints/mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640.pth'
