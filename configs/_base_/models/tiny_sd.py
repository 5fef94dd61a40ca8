# A tiny randomly initialised Stable Diffusion (no weights needed) with the structure of the real one: a VAE with 4
# down blocks, a UNet with 4 up blocks (cross-attention in 3), a CLIP text encoder for the offline byte-level
# tokenizer (514 tokens); all six RASS feature taps exist. Same seed -> same weights, so an SCR adapter trained on it
# merges into a RASS model built from it (adapters record a fingerprint of the base weights).
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
# The tiny RASS trunk shared by the tiny RASS models: the backbone on the tiny SD, the projection to 4 x 64 channels,
# and the preprocessor (images in [-1, 1]).
tiny_rass_backbone = dict(
    type='RASSBackbone',
    **tiny_sd,
    prompt_source=dict(type='FixedTextPrompt', text=''),
    timestep=1,
    latent_mode='mode',  # a random VAE's posterior is wide: sampling it would drown the image
    lora_rank=4,
    lora_alpha=8)
tiny_rass_neck = dict(
    type='FeatureProjection',
    in_channels=[32, 32, 64, 64, 32, 32],
    in_strides=[4, 8, 32, 16, 8, 8],
    out_strides=[4, 8, 16, 32],
    out_channels=64,
    bottleneck_channels=32,
    norm_cfg=dict(type='GN', num_groups=8, requires_grad=True))
tiny_rass_data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size_divisor=64)  # the backbone pads to its own divisor too; this only aligns training batches
