# RASS at paper size: Stable Diffusion 2.1-base (VAE encoder + UNet, OpenCLIP-H text encoder) from a local diffusers
# folder, SCR adapter merged (merge_adapters), a new rank-4 Seg LoRA (peft's default alpha 8, as the public code) +
# conv_in trainable, ODISE-style projection to res2..res5 (512 channels) and mmseg's Mask2FormerHead with the
# settings of the public RASS code (./mask2former_head.py).
_base_ = ['./sd21_base.py', './mask2former_head.py']
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[127.5, 127.5, 127.5],  # the VAE takes images in [-1, 1]
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(512, 512))
model = dict(
    type='RASSEncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='RASSBackbone',
        pretrained=_base_.sd21_base_path,
        prompt_source=dict(type='ClassNamesPrompt', dataset='ADE20KDataset'),
        timestep=1,
        latent_mode='sample',  # the public code samples the VAE posterior in training and at test
        lora_rank=4,
        lora_alpha=8,
        # SCR adapter folders, e.g. ['work_dirs/scr_sd21-base_4xb4-100k_ade20k-512x512/scr_adapter_iter_100000']
        merge_adapters=[],
        gradient_checkpointing=False,
        attention='sdpa'),
    neck=dict(
        type='FeatureProjection',
        in_channels=[256, 512, 1280, 1280, 640, 320],
        in_strides=[4, 8, 32, 16, 8, 8],
        out_strides=[4, 8, 16, 32],
        out_channels=512,
        bottleneck_channels=128,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)),
    train_cfg=dict(),
    # The public code's test: the backbone and projection slide square windows of the image's short side (512 after
    # the test Resize) and the head runs once on the whole feature map. mmseg's whole-model sliding instead:
    # test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)).
    test_cfg=dict(mode='slide_features'))
