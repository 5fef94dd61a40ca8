# R2S: the SCR restorer (SD 2.1-base, configs/scr) restores each ADE20K-LQ image, then the DT SegFormer MiT-B5
# segments it. Inference only. The restorer's normalisation ([-1, 1], RGB) on the LQ images read from disk:
#   python tools/test.py configs/protocols/r2s_scr-sd21-base_segformer-mit-b5_ade20k-lq-512x512.py \
#       checkpoints/segformer_mit-b5_512x512_160k_ade20k.pth
_base_ = ['./dt-segformer_mit-b5_8xb2-160k_ade20k-lq-512x512.py']
model = dict(
    _delete_=True,
    type='RestoreThenSegment',
    restorer='{{fileDirname}}/../scr/scr_sd21-base_4xb4-100k_ade20k-512x512.py',
    restorer_checkpoint='checkpoints/scr_sd21-base_4xb4-100k_ade20k-512x512.pth',
    segmentor='{{fileDirname}}/dt-segformer_mit-b5_8xb2-160k_ade20k-lq-512x512.py',
    segmentor_checkpoint='checkpoints/segformer_mit-b5_512x512_160k_ade20k.pth',
    data_preprocessor=dict(
        type='SegDataPreProcessor', mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True, pad_val=0, seg_pad_val=255))
