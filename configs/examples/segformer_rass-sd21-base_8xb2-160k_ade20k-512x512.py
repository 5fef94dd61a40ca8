# Your own config on a stock mmseg config: mmseg's SegFormer (segformer_mit-b5_8xb2-160k_ade20k-512x512.py) with its
# MiT backbone replaced by the RASS backbone (Stable Diffusion 2.1-base from a local folder) and a FeatureProjection
# neck. mmseg's EncoderDecoder, SegformerHead, ADE20K pipelines, AdamW schedule and runtime stay as they are.
# Needs: checkpoints/stable-diffusion-2-1-base and data/ade/ADEChallengeData2016. On a CPU, the same recipe at toy
# size: ./segformer_rass-tiny-sd_1xb4-300it_textures-128x128.py.
_base_ = [
    'mmseg::segformer/segformer_mit-b5_8xb2-160k_ade20k-512x512.py',
    '../_base_/models/sd21_base.py',  # sd21_base_path, and the architecture for builds without weights
    '../_base_/rass_hooks.py',  # the plugin's hooks (a whole mmseg config cannot take ../_base_/default_runtime.py)
]
# 1. Load the plugin: RASSBackbone, FeatureProjection, InputCheckingRunner and the stack fixes.
custom_imports = dict(imports=['rass_mmseg'], allow_failed_imports=False)
model = dict(
    # 2. The VAE reads images in [-1, 1], not ImageNet-normalised ones.
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    # 3. Replace the backbone dict as a whole (_delete_: no MiT key or MiT init_cfg checkpoint is left). The
    #    backbone owns its prompt, so mmseg's plain EncoderDecoder runs it.
    backbone=dict(
        _delete_=True,
        type='RASSBackbone',
        pretrained=_base_.sd21_base_path,
        prompt_source=dict(type='ClassNamesPrompt', dataset='ADE20KDataset')),
    # 4. Add a neck: the six SD features (VAE and UNet taps, strides 4, 8, 32, 16, 8, 8) -> the four levels the head
    #    reads. out_channels is one number per level, the head's in_channels, so the head stays mmseg's. A head that
    #    does not fit the neck is refused at build time, in one line naming both keys.
    neck=dict(
        type='FeatureProjection',
        in_channels=[256, 512, 1280, 1280, 640, 320],
        in_strides=[4, 8, 32, 16, 8, 8],
        out_strides=[4, 8, 16, 32],
        out_channels=[64, 128, 320, 512],  # = model.decode_head.in_channels of segformer_mit-b5
        bottleneck_channels=128,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)))
# 5. The plugin's runner (names every missing input in one error before the model is built) and hooks.
runner_type = 'InputCheckingRunner'
custom_hooks = _base_.rass_custom_hooks
# The schedule is mmseg's (AdamW 6e-5, head lr x10); the paper's (AdamW 1e-4, backbone and neck x0.1) is
# ../_base_/schedules/schedule_160k_rass.py.
