# SCR on the embedded texture dataset, CPU, on a tiny "pretrained" SD whose VAE was trained on the textures
# (python tools/misc/make_tiny_sd.py THIS_CONFIG writes it to checkpoints/tiny-sd-textures first). With a VAE that
# can reproduce the clean images, the restored PSNR rises above the degraded input's, which the random VAE of
# scr_tiny-sd_1xb4-300it_textures-128x128.py cannot allow.
_base_ = ['./scr_tiny-sd_1xb4-300it_textures-128x128.py']
tiny_sd_path = 'checkpoints/tiny-sd-textures'
# What tools/misc/make_tiny_sd.py builds: a stride-2 VAE with 12 latent channels (64x64x12 latents for 128x128
# images, as many numbers as pixels, so it can learn a near-lossless code in minutes), a UNet with attention
# only at latent strides 2 and 4 (pixel strides 4 and 8), the tiny text encoder.
tiny_sd_architecture = dict(
    vae=dict(
        block_out_channels=(32, 32),
        down_block_types=('DownEncoderBlock2D', ) * 2,
        up_block_types=('UpDecoderBlock2D', ) * 2,
        latent_channels=12,
        layers_per_block=1,
        norm_num_groups=8),
    unet=dict(
        sample_size=64,
        in_channels=12,
        out_channels=12,
        block_out_channels=(32, 32, 64, 64),
        layers_per_block=1,
        down_block_types=('DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'),
        up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8),
    text_encoder=_base_.tiny_sd.text_encoder)
model = dict(
    backbone=dict(
        pretrained=tiny_sd_path,
        vae=None,
        unet=None,
        text_encoder=None,
        # One step from timestep 100: the UNet's output moves the LQ latent by 0.34 x its noise prediction, a
        # correction a random UNet + LoRA learns in minutes. OSEDiff's 999 asks the UNet to predict the whole
        # latent (x0 = 14.6 x_t - 14.6 eps), which needs a pretrained SD UNet; 1 (0.04 x eps) learns slowly.
        timestep=100,
        attention_strides=(4, 8)),
    decode_head=dict(pretrained=tiny_sd_path, vae=None))
optim_wrapper = dict(optimizer=dict(lr=2e-3))
