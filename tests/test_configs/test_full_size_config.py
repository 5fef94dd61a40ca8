"""The paper-size config builds without weights, and its parameter counts match an independent count."""
import glob

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmseg.registry import MODELS
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel

from rass_mmseg.models.adapters.lora_adapters import DEFAULT_LORA_TARGETS
from rass_mmseg.models.utils.sd_components import without_weights
from tests.utils import repo_path

FULL_CONFIG = repo_path('configs', 'rass', 'rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py')
PAPER_TRAINABLE = 27.9e6


def numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def lora_count(unet: nn.Module, rank: int, targets) -> int:
    """LoRA parameters peft adds, from the layer shapes: Linear r*(in+out); Conv r*in*k*k + out*r."""
    total = 0
    for name, module in unet.named_modules():
        if not any(name == t or name.endswith('.' + t) for t in targets):
            continue
        if isinstance(module, nn.Linear):
            total += rank * (module.in_features + module.out_features)
        elif isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += rank * module.in_channels * kh * kw + module.out_channels * rank
    return total


def projection_count(in_channels, bottleneck: int, out: int) -> int:
    """Bottleneck blocks with GroupNorm (affine) and bias-free convolutions."""
    total = 0
    for c in in_channels:
        total += c * bottleneck + 2 * bottleneck + bottleneck * bottleneck * 9 + 2 * bottleneck
        total += bottleneck * out + 2 * out
        if c != out:
            total += c * out + 2 * out
    return total


@pytest.fixture(scope='module')
def full_cfg() -> Config:
    cfg = Config.fromfile(FULL_CONFIG)
    without_weights(cfg.model, cfg.sd21_base_vae, cfg.sd21_base_unet, cfg.sd21_base_text_encoder)
    return cfg


def test_full_size_model_builds_without_weights_and_counts_match(full_cfg):
    with torch.device('meta'):
        model = MODELS.build(full_cfg.model)
        unet = UNet2DConditionModel(**full_cfg.sd21_base_unet)
        vae = AutoencoderKL(**full_cfg.sd21_base_vae)
        text_encoder = CLIPTextModel(CLIPTextConfig(**full_cfg.sd21_base_text_encoder))
        head = MODELS.build(full_cfg.model.decode_head)
    # published sizes of stable-diffusion-2-1-base
    assert numel(unet) == 865_910_724
    assert numel(text_encoder) == 340_387_840
    vae_encoder = numel(vae.encoder) + numel(vae.quant_conv)

    lora = lora_count(unet, 4, DEFAULT_LORA_TARGETS)
    conv_in = numel(unet.conv_in)
    neck = projection_count([256, 512, 1280, 1280, 640, 320], 128, 512)
    expected_trainable = lora + conv_in + neck + numel(head)
    expected_total = numel(unet) + lora + vae_encoder + numel(text_encoder) + neck + numel(head)

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = numel(model)
    print(f'\nRASS full size: total {total / 1e6:.1f}M, trainable {trainable / 1e6:.2f}M '
          f'(Seg LoRA {lora / 1e6:.2f}M + conv_in {conv_in / 1e6:.3f}M + projection {neck / 1e6:.2f}M + '
          f'Mask2Former head {numel(head) / 1e6:.2f}M); paper: 27.9M trainable')
    assert trainable == expected_trainable
    assert total == expected_total
    assert model.backbone.feature_channels == [256, 512, 1280, 1280, 640, 320]
    assert model.backbone.feature_strides == [4, 8, 32, 16, 8, 8]
    # same order of magnitude as the paper's trainable count
    assert 0.5 * PAPER_TRAINABLE < trainable < 2 * PAPER_TRAINABLE


def test_full_size_config_keys(full_cfg):
    assert full_cfg.model.decode_head.num_queries == 100
    assert full_cfg.model.decode_head.transformer_decoder.num_layers == 9
    assert full_cfg.model.decode_head.train_cfg.num_points == 12544
    assert full_cfg.model.test_cfg.mode == 'slide_features'  # the public code's: backbone slides, head runs once
    assert full_cfg.optim_wrapper.optimizer.lr == 1e-4 and full_cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert full_cfg.optim_wrapper.paramwise_cfg.lr_mults == dict(backbone=0.1, neck=0.1)
    assert full_cfg.model.backbone.lora_alpha == 8 and full_cfg.model.backbone.latent_mode == 'sample'
    assert full_cfg.model.data_preprocessor.type == 'DegradationDataPreProcessor'
    assert full_cfg.model.data_preprocessor.degrade == 'train'  # the paper trains on images degraded on the fly
    assert full_cfg.model.data_preprocessor.degradation.ops == 'basicsr'  # the public code's operations
    assert full_cfg.model.data_preprocessor.degradation.kernel_range == [7, 21]  # merged with the base keys
    assert 'ADEChallengeData2016-LQ' in full_cfg.val_dataloader.dataset.data_prefix.img_path
    assert full_cfg.optim_wrapper.type == 'AmpOptimWrapper' and full_cfg.optim_wrapper.clip_grad.max_norm == 0.01
    assert full_cfg.train_cfg.max_iters == 160000 and full_cfg.train_dataloader.batch_size == 2
    assert full_cfg.model.backbone.prompt_source.dataset == 'ADE20KDataset'


@pytest.mark.parametrize('path', sorted(glob.glob(repo_path('configs', 'rass', '*.py'))))
def test_every_config_parses_and_names_registered_types(path):
    cfg = Config.fromfile(path)
    for key in ('backbone', 'decode_head'):
        assert MODELS.get(cfg.model[key].type) is not None, (path, cfg.model[key].type)
    assert 'rass_mmseg' in cfg.custom_imports.imports


def test_full_size_scr_builds_without_weights_and_trains_only_lora_and_conv_in(full_cfg):
    cfg = Config.fromfile(repo_path('configs', 'scr', 'scr_sd21-base_4xb4-100k_ade20k-512x512.py'))
    without_weights(cfg.model, cfg.sd21_base_vae, cfg.sd21_base_unet, cfg.sd21_base_text_encoder)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
        unet = UNet2DConditionModel(**cfg.sd21_base_unet)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lora = lora_count(unet, 4, DEFAULT_LORA_TARGETS)
    expected = lora + numel(unet.conv_in) + lora  # SCR LoRA + conv_in, and VSD's regulariser LoRA (own optimizer)
    print(f'\nSCR full size: trainable {trainable / 1e6:.2f}M (SCR LoRA + conv_in + VSD regulariser LoRA), '
          f'total {numel(model) / 1e6:.1f}M')
    assert trainable == expected
    assert model.decode_head.vae.decoder is not None and model.backbone.vae.decoder is None
    assert model.backbone.timestep == 999
    # the 16x16 and 32x32 cross-attention maps of a 512x512 input: down blocks 1-2, up blocks 1-2
    assert len(model.backbone.capture_layers) == 2 * 2 + 3 * 2
    assert model.gt_class_prompt.classes[0] == 'wall' and len(model.gt_class_prompt.classes) == 150
    assert cfg.model.data_preprocessor.type == 'DegradationDataPreProcessor'
    assert cfg.model.data_preprocessor.degradation.ops == 'basicsr'
    assert tuple(cfg.model.data_preprocessor.size) == (512, 512) and cfg.val_evaluator.type == 'RestorationMetric'


@pytest.mark.parametrize('path', sorted(glob.glob(repo_path('configs', 'scr', '*.py'))))
def test_every_scr_config_parses_and_names_registered_types(path):
    cfg = Config.fromfile(path)
    for key in ('backbone', 'decode_head', 'alignment_loss'):
        assert MODELS.get(cfg.model[key].type) is not None, (path, cfg.model[key].type)
    assert 'rass_mmseg' in cfg.custom_imports.imports
    assert any(h.type == 'AdapterExportHook' for h in cfg.custom_hooks)


def test_full_size_segformer_variant_differs_from_the_paper_config_only_in_its_head(full_cfg):
    cfg = Config.fromfile(repo_path('configs', 'rass', 'rass_sd21-base_segformer-head_8xb2-160k_ade20k-lq-512x512.py'))
    without_weights(cfg.model, cfg.sd21_base_vae, cfg.sd21_base_unet, cfg.sd21_base_text_encoder)
    assert cfg.model.backbone == full_cfg.model.backbone and cfg.model.neck == full_cfg.model.neck
    assert cfg.optim_wrapper == full_cfg.optim_wrapper and cfg.train_cfg == full_cfg.train_cfg
    assert 'mmdet.models' not in cfg.custom_imports.imports
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
        paper = MODELS.build(full_cfg.model)
        head = MODELS.build(cfg.model.decode_head)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    paper_trainable = sum(p.numel() for p in paper.parameters() if p.requires_grad)
    assert trainable == paper_trainable - numel(paper.decode_head) + numel(head)
    assert type(model.decode_head).__name__ == 'SegformerHead' and model.decode_head.num_classes == 150


def test_paper_optimizer_lr_and_decay_per_parameter():
    """The public code's detectron2 solver: backbone and projection at lr x0.1, no decay on norms and embeddings."""
    schedule = Config.fromfile(repo_path('configs', '_base_', 'schedules', 'schedule_160k_rass.py'))
    model_cfg = Config.fromfile(repo_path('configs', 'rass', 'rass_tiny-sd_mask2former_1xb4-300it_textures-128x128.py'))
    model = MODELS.build(model_cfg.model)
    optim_cfg = schedule.optim_wrapper.to_dict()
    optim_cfg.update(type='OptimWrapper')  # AmpOptimWrapper needs a GPU; the parameter groups are the same
    optim_cfg.pop('dtype')
    wrapper = build_optim_wrapper(model, optim_cfg)
    group_of = {id(p): g for g in wrapper.optimizer.param_groups for p in g['params']}
    settings = {name: (group_of[id(p)]['lr'], group_of[id(p)]['weight_decay'])
                for name, p in model.named_parameters() if p.requires_grad}
    lora = next(n for n in settings if 'lora_A' in n)
    expected = {
        lora: (1e-5, 0.05),
        'backbone.unet.conv_in.base_layer.weight': (1e-5, 0.05),
        'neck.blocks.0.reduce.conv.weight': (1e-5, 0.05),
        'neck.blocks.0.reduce.gn.weight': (1e-5, 0.0),
        'decode_head.query_embed.weight': (1e-4, 0.0),
        'decode_head.query_feat.weight': (1e-4, 0.0),
        'decode_head.level_embed.weight': (1e-4, 0.0),
        'decode_head.cls_embed.weight': (1e-4, 0.05),
    }
    for name, (lr, decay) in expected.items():
        assert settings[name] == pytest.approx((lr, decay)), name
    norms = [n for n in settings if n.startswith('decode_head') and ('.norm' in n or '.gn.' in n)]
    assert norms and all(settings[n][1] == 0 for n in norms)
