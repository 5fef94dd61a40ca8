# RASS at paper size: Stable Diffusion 2.1-base (VAE encoder + UNet, OpenCLIP-H text encoder) read from a
# local diffusers folder, SCR LoRA merged, new rank-4 Seg LoRA + conv_in trainable, ODISE-style projection
# to res2..res5 (512 channels), and mmseg's Mask2FormerHead with the settings of the public RASS code.
# Build without weights (shapes, parameter counts): set backbone.pretrained=None and backbone.vae/unet/
# text_encoder to the sd21_base_* dicts below (see tests/test_configs).
sd21_base_path = 'checkpoints/stable-diffusion-2-1-base'
# Architecture of stable-diffusion-2-1-base (its vae/unet/text_encoder config.json), for weight-free builds.
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
num_classes = 150
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[127.5, 127.5, 127.5],  # the VAE takes images in [-1, 1]
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(512, 512))
model = dict(
    type='RASSEncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='RASSBackbone',
        pretrained=sd21_base_path,
        prompt_source=dict(type='ClassNamesPrompt', dataset='ADE20KDataset'),
        timestep=1,
        latent_mode='mode',
        lora_rank=4,
        merge_adapters=[],  # SCR adapter folders, e.g. ['work_dirs/scr_sd21_ade20k/scr_adapter']
        gradient_checkpointing=False,
        attention='sdpa'),
    neck=dict(
        type='FeatureProjection',
        in_channels=[256, 512, 1280, 1280, 640, 320],
        in_strides=[4, 8, 32, 16, 8, 8],
        out_strides=[4, 8, 16, 32],
        out_channels=512,
        bottleneck_channels=128,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)),
    decode_head=dict(
        type='Mask2FormerHead',
        in_channels=[512, 512, 512, 512],
        strides=[4, 8, 16, 32],
        feat_channels=256,
        out_channels=256,
        num_classes=num_classes,
        num_queries=100,
        num_transformer_feat_level=3,
        align_corners=False,
        pixel_decoder=dict(
            type='mmdet.MSDeformAttnPixelDecoder',
            num_outs=3,
            norm_cfg=dict(type='GN', num_groups=32),
            act_cfg=dict(type='ReLU'),
            encoder=dict(
                num_layers=6,
                layer_cfg=dict(
                    self_attn_cfg=dict(
                        embed_dims=256, num_heads=8, num_levels=3, num_points=4, im2col_step=64, dropout=0.0,
                        batch_first=True, norm_cfg=None, init_cfg=None),
                    ffn_cfg=dict(
                        embed_dims=256, feedforward_channels=1024, num_fcs=2, ffn_drop=0.0,
                        act_cfg=dict(type='ReLU', inplace=True))),
                init_cfg=None),
            positional_encoding=dict(num_feats=128, normalize=True),
            init_cfg=None),
        enforce_decoder_input_project=False,
        positional_encoding=dict(num_feats=128, normalize=True),
        transformer_decoder=dict(  # 9 layers + the query prediction = 10 supervised outputs
            return_intermediate=True,
            num_layers=9,
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=256, num_heads=8, attn_drop=0.0, proj_drop=0.0, dropout_layer=None,
                                   batch_first=True),
                cross_attn_cfg=dict(embed_dims=256, num_heads=8, attn_drop=0.0, proj_drop=0.0, dropout_layer=None,
                                    batch_first=True),
                ffn_cfg=dict(embed_dims=256, feedforward_channels=2048, num_fcs=2,
                             act_cfg=dict(type='ReLU', inplace=True), ffn_drop=0.0, dropout_layer=None,
                             add_identity=True)),
            init_cfg=None),
        loss_cls=dict(type='mmdet.CrossEntropyLoss', use_sigmoid=False, loss_weight=2.0, reduction='mean',
                      class_weight=[1.0] * num_classes + [0.1]),
        loss_mask=dict(type='mmdet.CrossEntropyLoss', use_sigmoid=True, reduction='mean', loss_weight=5.0),
        loss_dice=dict(type='mmdet.DiceLoss', use_sigmoid=True, activate=True, reduction='mean', naive_dice=True,
                       eps=1.0, loss_weight=5.0),
        train_cfg=dict(
            num_points=12544,
            oversample_ratio=3.0,
            importance_sample_ratio=0.75,
            assigner=dict(
                type='mmdet.HungarianAssigner',
                match_costs=[
                    dict(type='mmdet.ClassificationCost', weight=2.0),
                    dict(type='mmdet.CrossEntropyLossCost', weight=5.0, use_sigmoid=True),
                    dict(type='mmdet.DiceCost', weight=5.0, pred_act=True, eps=1.0)
                ]),
            sampler=dict(type='mmdet.MaskPseudoSampler'))),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
