# The schedule of the public RASS code (detectron2 Mask2Former solver): AdamW 1e-4, weight decay 0.05 but 0 on
# normalisation layers and embeddings (WEIGHT_DECAY_NORM = WEIGHT_DECAY_EMBED = 0: Mask2Former's query and level
# embeddings), lr x0.1 for the backbone *and* the feature projection (the public code builds the projection inside its
# detectron2 backbone), poly decay, 160k iterations, AMP, full-model gradient clipping at 0.01 (batch 16 = 8 x 2).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    constructor='Detectron2OptimWrapperConstructor',  # the lr and decay rules apply independently, as in detectron2
    paramwise_cfg=dict(lr_mults=dict(backbone=0.1, neck=0.1), norm_decay_mult=0.0, embedding_decay_mult=0.0))
param_scheduler = [dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=160000, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=16000, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
