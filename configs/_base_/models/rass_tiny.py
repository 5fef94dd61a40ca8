# RASS with a tiny randomly initialised Stable Diffusion (no weights needed) and a light SegFormer head.
# Same structure as the full-size model: VAE encoder with 4 down blocks, UNet with 4 up blocks, CLIP
# text encoder, offline byte-level tokenizer; all six feature taps exist.
tiny_sd = dict(
    vae=dict(
        block_out_channels=(16, 32, 32, 32),
        down_block_types=('DownEncoderBlock2D', ) * 4,
        up_block_types=('UpDecoderBlock2D', ) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8),
    unet=dict(
        sample_size=16,
        block_out_channels=(32, 32, 64, 64),
        layers_per_block=1,
        down_block_types=('CrossAttnDownBlock2D', ) * 3 + ('DownBlock2D', ),
        up_block_types=('UpBlock2D', ) + ('CrossAttnUpBlock2D', ) * 3,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8),
    text_encoder=dict(
        vocab_size=514,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=512,  # ids of the offline byte-level tokenizer (514 tokens)
        eos_token_id=513,
        pad_token_id=513))
norm_cfg = dict(type='GN', num_groups=8, requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size_divisor=64)  # the backbone pads to its own divisor too; this only aligns training batches
model = dict(
    type='RASSEncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='RASSBackbone',
        **tiny_sd,
        prompt_source=dict(type='FixedTextPrompt', text=''),
        timestep=1,
        latent_mode='mode',
        lora_rank=4),
    neck=dict(
        type='FeatureProjection',
        in_channels=[32, 32, 64, 64, 32, 32],
        in_strides=[4, 8, 32, 16, 8, 8],
        out_strides=[4, 8, 16, 32],
        out_channels=64,
        bottleneck_channels=32,
        norm_cfg=norm_cfg),
    decode_head=dict(
        type='SegformerHead',
        in_channels=[64, 64, 64, 64],
        in_index=[0, 1, 2, 3],
        channels=64,
        dropout_ratio=0.1,
        num_classes=8,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
