# R2S: the SCR restorer (SD 2.1-base), then the DT Mask2Former Swin-L, on ADE20K-LQ read from disk. Inference only.
_base_ = ['./dt-mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-lq-640x640.py']
model = dict(
    _delete_=True,
    type='RestoreThenSegment',
    restorer='{{fileDirname}}/../scr/scr_sd21-base_4xb4-100k_ade20k-512x512.py',
    restorer_checkpoint='checkpoints/scr_sd21-base_4xb4-100k_ade20k-512x512.pth',
    segmentor='{{fileDirname}}/dt-mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-lq-640x640.py',
    segmentor_checkpoint='checkpoints/mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640.pth',
    data_preprocessor=dict(
        type='SegDataPreProcessor', mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True, pad_val=0, seg_pad_val=255))
