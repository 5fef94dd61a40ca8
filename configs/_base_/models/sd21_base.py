# Stable Diffusion 2.1-base: where its weights are (a local diffusers folder: vae/, unet/, text_encoder/,
# tokenizer/, scheduler/) and its architecture (the config.json of each part), for building the paper-size models
# without weights (shapes, parameter counts, speed: tools/analysis_tools/benchmark.py --without-weights).
sd21_base_path = 'checkpoints/stable-diffusion-2-1-base'
sd21_base_vae = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
    block_out_channels=(128, 256, 512, 512), down_block_types=('DownEncoderBlock2D', ) * 4,
    up_block_types=('UpDecoderBlock2D', ) * 4, norm_num_groups=32, act_fn='silu')
sd21_base_unet = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=('CrossAttnDownBlock2D', ) * 3 + ('DownBlock2D', ),
    up_block_types=('UpBlock2D', ) + ('CrossAttnUpBlock2D', ) * 3,
    cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True, norm_num_groups=32)
sd21_base_text_encoder = dict(
    vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
    max_position_embeddings=77, hidden_act='gelu', projection_dim=512)
