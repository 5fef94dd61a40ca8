# R2S with RASS as the segmentor (its R2S column in Table 1): the SCR restorer, then a trained RASS model, on
# ADE20K-LQ read from disk. Inference only.
_base_ = ['../rass/rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py']
model = dict(
    _delete_=True,
    type='RestoreThenSegment',
    restorer='{{fileDirname}}/../scr/scr_sd21-base_4xb4-100k_ade20k-512x512.py',
    restorer_checkpoint='checkpoints/scr_sd21-base_4xb4-100k_ade20k-512x512.pth',
    segmentor='{{fileDirname}}/../rass/rass_sd21-base_mask2former_8xb2-160k_ade20k-512x512.py',
    segmentor_checkpoint='checkpoints/rass_sd21-base_mask2former_8xb2-160k_ade20k-512x512.pth',
    data_preprocessor=dict(
        type='SegDataPreProcessor', mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True, pad_val=0, seg_pad_val=255))
