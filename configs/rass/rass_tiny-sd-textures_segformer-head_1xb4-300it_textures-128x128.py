# Tiny RASS + SegformerHead on the tiny *pretrained* Stable Diffusion that tools/misc/make_tiny_sd.py writes to
# checkpoints/tiny-sd-textures (its VAE trained as an autoencoder and its UNet + text encoder as a text-conditioned
# latent diffusion model on the textures), trained on clean textures (the DT model):
#   python tools/misc/make_tiny_sd.py configs/scr/scr_tiny-sd-textures_1xb4-300it_textures-128x128.py
#   python tools/train.py THIS_CONFIG
# That SD has a stride-2 VAE with two blocks and a UNet with three downsamplings: the taps are the two VAE blocks
# (stride 2) and the four UNet up blocks (strides 8, 4, 2, 2), projected to three levels (strides 2, 4, 8).
_base_ = ['./rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py']
tiny_sd_path = 'checkpoints/tiny-sd-textures'
model = dict(
    backbone=dict(pretrained=tiny_sd_path, vae=None, unet=None, text_encoder=None, vae_feature_indices=(0, 1)),
    neck=dict(in_channels=[32, 32, 64, 64, 32, 32], in_strides=[2, 2, 8, 4, 2, 2], out_strides=[2, 4, 8]),
    decode_head=dict(in_channels=[64, 64, 64], in_index=[0, 1, 2]))
