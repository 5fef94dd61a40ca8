# SCR at paper size on ADE20K: clean 512x512 crops degraded on the fly, the prompt of each training image
# lists its ground-truth classes (L_SCL), inference uses the 150 class names. Validation restores the
# ADE20K val images degraded with a fixed seed (an on-the-fly ADE20K-LQ) and reports PSNR/SSIM/LPIPS of the
# restored and of the LQ images (tools/test.py adds NIQE). The exported adapter (work_dir/scr_adapter_iter_N)
# goes into RASS:
#   configs/rass/rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py  model.backbone.merge_adapters=[...]
_base_ = [
    '../_base_/models/scr_sd21-base.py', 'mmseg::_base_/datasets/ade20k.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_160k_rass.py'
]
custom_imports = dict(imports=['rass_mmseg'], allow_failed_imports=False)
model = dict(
    data_preprocessor=dict(size=(512, 512), size_divisor=None),  # training batches: whole crops
    # every training prompt names all 150 classes (absent ones pushed to zero attention), like the test prompt
    negative_classes='all',
    # OSEDiff's third term: variational score distillation against the frozen SD 2.1-base (guidance 7.5), with a
    # regulariser LoRA on the backbone's UNet trained by its own diffusion loss and optimizer
    backbone=dict(regularizer=dict(lora_rank=4, lora_alpha=8)),
    vsd_loss=dict(type='VariationalScoreDistillationLoss', loss_weight=1.0, regularizer_weight=1.0,
                  guidance_scale=7.5, timestep_range=(20, 980), negative_prompt=''))
train_dataloader = dict(batch_size=4)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True, type='RestorationMetric', lpips_weights='checkpoints/lpips_vgg.safetensors', lpips_net='vgg')
# + NIQE (mmagic's, no reference) as Real-IR papers report it; ~0.3 s per image on a CPU core, so only at test time
test_evaluator = dict(val_evaluator, niqe=True)
# OSEDiff's optimisers (AdamW 5e-5, constant; one for the restorer, one for the VSD regulariser), bf16 autocast,
# 100k iterations of batch 16 (4 GPUs x 4 images); loops and hooks of the RASS schedule.
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    dtype='bfloat16',
    constructor='SCRVSDOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=5e-5, betas=(0.9, 0.999), weight_decay=1e-2),
    clip_grad=dict(max_norm=1.0, norm_type=2))
# two updates per step (restorer, then regulariser), each leaving the other's parameters unused
model_wrapper_cfg = dict(type='TwoStepDistributedDataParallel', find_unused_parameters=True)
param_scheduler = [dict(type='ConstantLR', factor=1.0, begin=0, end=100000, by_epoch=False)]
train_cfg = dict(max_iters=100000, val_interval=10000)
default_hooks = dict(checkpoint=dict(interval=10000))
custom_hooks = _base_.custom_hooks + [dict(type='AdapterExportHook', prefix='scr_adapter')]
