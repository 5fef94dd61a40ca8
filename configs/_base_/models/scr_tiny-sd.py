# SCR (stage 1 of RASS) with the tiny randomly initialised Stable Diffusion of ./tiny_sd.py, so an SCR adapter
# trained with it merges into the tiny RASS models (same seed -> same random base weights; the adapter records a
# fingerprint of them and merging into another base fails).
_base_ = ['./tiny_sd.py', '../degradation.py']
model = dict(
    type='SemanticConstrainedRestorer',
    # training batches degraded on the fly (LQ input, HQ target); val/test batches with a fixed seed per image
    data_preprocessor=dict(_base_.degradation_preprocessor, degrade='always'),
    # gt_class_prompt: set by the config that picks the dataset (the class names of its labels)
    backbone=dict(
        type='SCRBackbone',
        **_base_.tiny_sd,
        prompt_source=dict(type='FixedTextPrompt', text=''),
        timestep=999,
        latent_mode='mode',
        lora_rank=4,
        lora_alpha=8,
        attention_strides=(16, 32)),
    # No LPIPS weights exist offline and a random LPIPS network is no perceptual loss: L2 only here.
    decode_head=dict(type='SCRHead', vae=_base_.tiny_sd.vae, l2_weight=1.0, lpips_weight=0.0),
    alignment_loss=dict(type='CrossAttentionAlignmentLoss', mode='mse', loss_weight=1.0))
