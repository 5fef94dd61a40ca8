custom_imports = dict(
    allow_failed_imports=False, imports=[
        'rass_mmseg',
    ])
data_preprocessor = dict(
    bgr_to_rgb=True,
    mean=[
        127.5,
        127.5,
        127.5,
    ],
    pad_val=0,
    seg_pad_val=255,
    size_divisor=64,
    std=[
        127.5,
        127.5,
        127.5,
    ],
    type='SegDataPreProcessor')
data_root = 'data/textures'
dataset_type = 'TextureSegDataset'
default_hooks = dict(
    checkpoint=dict(
        by_epoch=False, interval=300, max_keep_ckpts=2, type='CheckpointHook'),
    logger=dict(interval=25, log_metric_by_epoch=False, type='LoggerHook'),
    param_scheduler=dict(type='ParamSchedulerHook'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    timer=dict(type='IterTimerHook'),
    visualization=dict(draw=True, interval=1, type='SegVisualizationHook'))
default_scope = 'mmseg'
env_cfg = dict(
    cudnn_benchmark=False,
    dist_cfg=dict(backend='gloo'),
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
generate_cfg = dict(image_size=128, num_train=80, num_val=20, seed=0)
launcher = 'none'
load_from = 'work_dirs/rass_tiny/iter_300.pth'
log_level = 'INFO'
log_processor = dict(by_epoch=False)
model = dict(
    backbone=dict(
        latent_mode='mode',
        lora_rank=4,
        text_encoder=dict(
            bos_token_id=512,
            eos_token_id=513,
            hidden_size=32,
            intermediate_size=64,
            max_position_embeddings=77,
            num_attention_heads=2,
            num_hidden_layers=2,
            pad_token_id=513,
            vocab_size=514),
        timestep=1,
        type='RASSBackbone',
        unet=dict(
            attention_head_dim=8,
            block_out_channels=(
                32,
                32,
                64,
                64,
            ),
            cross_attention_dim=32,
            down_block_types=(
                'CrossAttnDownBlock2D',
                'CrossAttnDownBlock2D',
                'CrossAttnDownBlock2D',
                'DownBlock2D',
            ),
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=16,
            up_block_types=(
                'UpBlock2D',
                'CrossAttnUpBlock2D',
                'CrossAttnUpBlock2D',
                'CrossAttnUpBlock2D',
            )),
        vae=dict(
            block_out_channels=(
                16,
                32,
                32,
                32,
            ),
            down_block_types=(
                'DownEncoderBlock2D',
                'DownEncoderBlock2D',
                'DownEncoderBlock2D',
                'DownEncoderBlock2D',
            ),
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=8,
            up_block_types=(
                'UpDecoderBlock2D',
                'UpDecoderBlock2D',
                'UpDecoderBlock2D',
                'UpDecoderBlock2D',
            ))),
    data_preprocessor=dict(
        bgr_to_rgb=True,
        mean=[
            127.5,
            127.5,
            127.5,
        ],
        pad_val=0,
        seg_pad_val=255,
        size_divisor=64,
        std=[
            127.5,
            127.5,
            127.5,
        ],
        type='SegDataPreProcessor'),
    decode_head=dict(
        align_corners=False,
        channels=64,
        dropout_ratio=0.1,
        in_channels=[
            64,
            64,
            64,
            64,
        ],
        in_index=[
            0,
            1,
            2,
            3,
        ],
        loss_decode=dict(
            loss_weight=1.0, type='CrossEntropyLoss', use_sigmoid=False),
        norm_cfg=dict(num_groups=8, requires_grad=True, type='GN'),
        num_classes=8,
        type='SegformerHead'),
    neck=dict(
        bottleneck_channels=32,
        in_channels=[
            32,
            32,
            64,
            64,
            32,
            32,
        ],
        in_strides=[
            4,
            8,
            32,
            16,
            8,
            8,
        ],
        norm_cfg=dict(num_groups=8, requires_grad=True, type='GN'),
        out_channels=64,
        out_strides=[
            4,
            8,
            16,
            32,
        ],
        type='FeatureProjection'),
    prompt_source=dict(dataset='TextureSegDataset', type='ClassNamesPrompt'),
    test_cfg=dict(mode='whole'),
    train_cfg=dict(),
    type='RASSEncoderDecoder')
norm_cfg = dict(num_groups=8, requires_grad=True, type='GN')
optim_wrapper = dict(
    clip_grad=dict(max_norm=1.0, norm_type=2),
    optimizer=dict(
        betas=(
            0.9,
            0.999,
        ), lr=0.001, type='AdamW', weight_decay=0.05),
    type='OptimWrapper')
param_scheduler = [
    dict(
        begin=0, by_epoch=False, end=300, eta_min=0, power=0.9, type='PolyLR'),
]
randomness = dict(seed=0)
resume = False
test_cfg = dict(type='TestLoop')
test_dataloader = dict(
    batch_size=1,
    dataset=dict(
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        data_root='data/textures',
        generate_cfg=dict(image_size=128, num_train=80, num_val=20, seed=0),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations'),
            dict(type='PackSegInputs'),
        ],
        type='TextureSegDataset'),
    num_workers=2,
    persistent_workers=True,
    sampler=dict(shuffle=False, type='DefaultSampler'))
test_evaluator = dict(
    iou_metrics=[
        'mIoU',
    ], type='IoUMetric')
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
tiny_sd = dict(
    text_encoder=dict(
        bos_token_id=512,
        eos_token_id=513,
        hidden_size=32,
        intermediate_size=64,
        max_position_embeddings=77,
        num_attention_heads=2,
        num_hidden_layers=2,
        pad_token_id=513,
        vocab_size=514),
    unet=dict(
        attention_head_dim=8,
        block_out_channels=(
            32,
            32,
            64,
            64,
        ),
        cross_attention_dim=32,
        down_block_types=(
            'CrossAttnDownBlock2D',
            'CrossAttnDownBlock2D',
            'CrossAttnDownBlock2D',
            'DownBlock2D',
        ),
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=16,
        up_block_types=(
            'UpBlock2D',
            'CrossAttnUpBlock2D',
            'CrossAttnUpBlock2D',
            'CrossAttnUpBlock2D',
        )),
    vae=dict(
        block_out_channels=(
            16,
            32,
            32,
            32,
        ),
        down_block_types=(
            'DownEncoderBlock2D',
            'DownEncoderBlock2D',
            'DownEncoderBlock2D',
            'DownEncoderBlock2D',
        ),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        up_block_types=(
            'UpDecoderBlock2D',
            'UpDecoderBlock2D',
            'UpDecoderBlock2D',
            'UpDecoderBlock2D',
        )))
train_cfg = dict(max_iters=300, type='IterBasedTrainLoop', val_interval=300)
train_dataloader = dict(
    batch_size=4,
    dataset=dict(
        data_prefix=dict(
            img_path='img_dir/train', seg_map_path='ann_dir/train'),
        data_root='data/textures',
        generate_cfg=dict(image_size=128, num_train=80, num_val=20, seed=0),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations'),
            dict(prob=0.5, type='RandomFlip'),
            dict(type='PackSegInputs'),
        ],
        type='TextureSegDataset'),
    num_workers=2,
    persistent_workers=True,
    sampler=dict(shuffle=True, type='InfiniteSampler'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(prob=0.5, type='RandomFlip'),
    dict(type='PackSegInputs'),
]
tta_model = dict(_scope_='mmseg', type='SegTTAModel')
val_cfg = dict(type='ValLoop')
val_dataloader = dict(
    batch_size=1,
    dataset=dict(
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        data_root='data/textures',
        generate_cfg=dict(image_size=128, num_train=80, num_val=20, seed=0),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations'),
            dict(type='PackSegInputs'),
        ],
        type='TextureSegDataset'),
    num_workers=2,
    persistent_workers=True,
    sampler=dict(shuffle=False, type='DefaultSampler'))
val_evaluator = dict(
    iou_metrics=[
        'mIoU',
    ], type='IoUMetric')
vis_backends = [
    dict(_scope_='mmseg', type='LocalVisBackend'),
]
visualizer = dict(
    _scope_='mmseg',
    name='visualizer',
    save_dir='vis_clean',
    type='SideBySideSegVisualizer',
    vis_backends=[
        dict(type='LocalVisBackend'),
    ])
work_dir = 'work_dirs/rass_tiny_clean'
