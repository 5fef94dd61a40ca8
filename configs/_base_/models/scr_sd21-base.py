# SCR at paper size: Stable Diffusion 2.1-base as a one-step restorer (OSEDiff style: timestep 999, one DDPM step to
# the clean latent, frozen VAE decoder in the head), rank-4 SCR LoRA + conv_in trainable, L_res = L2 + 2 x LPIPS
# (VGG) and the cross-attention alignment loss on the 16x16 and 32x32 maps of a 512x512 crop.
# Needs checkpoints/stable-diffusion-2-1-base (a local diffusers folder) and checkpoints/lpips_vgg.safetensors
# (python tools/model_converters/convert_lpips_weights.py vgg16-397923af.pth checkpoints/lpips_vgg.safetensors
#  --net vgg).
_base_ = ['./sd21_base.py', '../degradation_paper.py']
model = dict(
    type='SemanticConstrainedRestorer',
    # training batches degraded on the fly (LQ input, HQ target), val/test batches with a fixed seed per image
    data_preprocessor=dict(_base_.degradation_preprocessor, degrade='always', degradation=_base_.paper_degradation),
    gt_class_prompt=dict(type='ClassNamesPrompt', dataset='ADE20KDataset'),
    backbone=dict(
        type='SCRBackbone',
        pretrained=_base_.sd21_base_path,
        prompt_source=dict(type='ClassNamesPrompt', dataset='ADE20KDataset'),
        timestep=999,
        latent_mode='mode',
        lora_rank=4,
        lora_alpha=8,
        attention_strides=(16, 32),
        gradient_checkpointing=True),
    decode_head=dict(
        type='SCRHead', pretrained=_base_.sd21_base_path, l2_weight=1.0, lpips_weight=2.0, lpips_net='vgg',
        lpips_weights='checkpoints/lpips_vgg.safetensors'),
    alignment_loss=dict(type='CrossAttentionAlignmentLoss', mode='mse', loss_weight=1.0))
