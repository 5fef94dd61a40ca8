"""The public RASS checkpoint -> our RASS model: every key mapped once onto what the model trains, and our modules
loaded with the converted tensors compute what the detectron2 modules compute with the original ones."""
import copy

import mmdet.models  # noqa: F401  (Mask2FormerHead's parts)
import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from mmengine.config import Config
from mmseg.registry import MODELS

from rass_mmseg.converters import check_against_expected, convert_rass_state_dict
from rass_mmseg.converters.target_model import trainable_state_shapes
from rass_mmseg.models.utils.sd_components import without_weights
from tests.test_converters import reference_forward as ref
from tests.test_converters.official_checkpoints import PAPER, TINY, Maker, lora_groups, official_rass_state_dict
from tests.utils import repo_path

PAPER_CONFIG = repo_path('configs', 'rass', 'rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py')
TINY_CONFIG = repo_path('configs', 'rass', 'rass_tiny-sd_mask2former_1xb4-300it_textures-128x128.py')
TINY_GROUPS = 8  # GroupNorm groups of the tiny config (an architecture setting, not in checkpoints; 32 at paper size)
D2_UNET = 'backbone.feature_extractor.sd.unet.'


def shapes(state) -> dict:
    return {key: tuple(value.shape) for key, value in state.items()}


@pytest.fixture(scope='module')
def tiny_cfg() -> Config:
    return Config.fromfile(TINY_CONFIG)


@pytest.fixture(scope='module')
def tiny_official(tiny_cfg):
    return official_rass_state_dict(TINY, tiny_cfg.tiny_sd, Maker(seed=1, dtype=torch.float64))


@pytest.fixture(scope='module')
def tiny_converted(tiny_official):
    return convert_rass_state_dict(tiny_official)


def test_paper_size_checkpoint_maps_every_key_once_onto_what_the_paper_model_trains():
    cfg = Config.fromfile(PAPER_CONFIG)
    sd_arch = dict(vae=cfg.sd21_base_vae, unet=cfg.sd21_base_unet, text_encoder=cfg.sd21_base_text_encoder)
    without_weights(cfg.model, sd_arch['vae'], sd_arch['unet'], sd_arch['text_encoder'])
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    trained = {key: tuple(p.shape) for key, p in model.named_parameters() if p.requires_grad}
    source = official_rass_state_dict(PAPER, sd_arch, Maker('meta'))
    converted, report = convert_rass_state_dict(source)
    assert shapes(converted) == trained
    assert len(report.mapped) + sum(report.dropped.values()) == len(source)  # each key mapped or dropped
    assert sorted(report.mapped.values()) == sorted(converted)  # one source per target
    assert all(converted[target] is source[key] for key, target in report.mapped.items())
    assert sum(1 for key in converted if '.lora_' in key) == 2 * 257  # the Seg LoRA of all 257 target modules
    unet_keys = sum(1 for key in source if key.startswith(D2_UNET))
    assert report.dropped[next(r for r in report.dropped if 'UNet' in r)] == unet_keys - 2 * 257 - 2


def test_tool_expectation_is_what_trains(tiny_cfg):
    """The tool's target list (frozen keys left out) equals the parameters that require grad."""
    model = MODELS.build(tiny_cfg.model)
    trained = {key: tuple(p.shape) for key, p in model.named_parameters() if p.requires_grad}
    assert trainable_state_shapes(tiny_cfg, TINY_CONFIG) == trained


def test_tiny_checkpoint_fits_the_tiny_model(tiny_cfg, tiny_converted):
    converted, _ = tiny_converted
    check_against_expected(converted, trainable_state_shapes(tiny_cfg, TINY_CONFIG), TINY_CONFIG)


def test_projection_blocks_compute_the_detectron2_bottlenecks(tiny_cfg, tiny_official, tiny_converted):
    converted, _ = tiny_converted
    neck = MODELS.build(tiny_cfg.model.neck).double()
    neck.load_state_dict({k[len('neck.'):]: v for k, v in converted.items() if k.startswith('neck.')}, strict=True)
    generator = torch.Generator().manual_seed(0)
    for i, channels in enumerate(TINY.feature_dims):
        x = torch.randn(2, channels, 8, 8, generator=generator, dtype=torch.float64)
        expected = ref.bottleneck(x, tiny_official, f'backbone.feature_extractor.feature_projections.{i}.0.',
                                  TINY_GROUPS)
        torch.testing.assert_close(neck.blocks[i](x), expected, rtol=1e-10, atol=1e-10)


def test_mask2former_head_computes_the_detectron2_head(tiny_cfg, tiny_official, tiny_converted):
    """Pixel decoder (deformable encoder, FPN level, mask features) and every decoder layer's class and mask
    logits, in float64 (mmdet computes positional encodings and reference points in float32, hence 1e-6)."""
    converted, _ = tiny_converted
    head = MODELS.build(tiny_cfg.model.decode_head).double().eval()
    head.load_state_dict({k[len('decode_head.'):]: v for k, v in converted.items() if k.startswith('decode_head.')},
                         strict=True)
    generator = torch.Generator().manual_seed(1)
    sizes = {'res2': 16, 'res3': 8, 'res4': 4, 'res5': 2}
    features = {name: torch.randn(2, TINY.projection_dim, size, size + 2, generator=generator, dtype=torch.float64)
                for name, size in sizes.items()}
    inputs = [features[name] for name in sizes]
    mask_features, multi_scale = ref.pixel_decoder(features, tiny_official, TINY_GROUPS, TINY.enc_heads,
                                                   TINY.enc_points, TINY.enc_layers)
    with torch.no_grad():
        our_mask_features, our_multi_scale = head.pixel_decoder(inputs)
        classes, masks = head(inputs, None)
    torch.testing.assert_close(our_mask_features, mask_features, rtol=1e-6, atol=1e-6)
    for ours, theirs in zip(our_multi_scale, multi_scale):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    expected = ref.predictor(multi_scale, mask_features, tiny_official, 2, TINY.dec_layers)
    assert len(classes) == len(expected) == TINY.dec_layers + 1
    for (our_classes, our_masks), (their_classes, their_masks) in zip(zip(classes, masks), expected):
        torch.testing.assert_close(our_classes, their_classes, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(our_masks, their_masks, rtol=1e-6, atol=1e-6)


def test_seg_lora_and_conv_in_compute_the_public_adapters(tiny_cfg, tiny_official, tiny_converted):
    """Each LoRA module: base output + (alpha / rank) * B(A(x)) with A and B of the public adapter it was in."""
    converted, _ = tiny_converted
    backbone = MODELS.build(tiny_cfg.model.backbone).double()
    result = backbone.load_state_dict({k[len('backbone.'):]: v for k, v in converted.items()
                                       if k.startswith('backbone.')}, strict=False)
    assert not result.unexpected_keys
    assert set(result.missing_keys) == set(backbone.frozen_state_keys())
    with torch.device('meta'):
        groups = lora_groups(UNet2DConditionModel(**tiny_cfg.tiny_sd.unet),
                             ('default_encoder_s2', 'default_decoder_s2', 'default_others_s2'))
    owner = {module: group for group, modules in groups.items() for module in modules}
    scale = 8 / 4  # peft's default alpha over rank 4
    generator = torch.Generator().manual_seed(2)
    names = ['conv_in', 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q',
             'down_blocks.0.attentions.0.proj_in', 'down_blocks.0.resnets.0.conv1', 'mid_block.resnets.0.conv2',
             'up_blocks.1.attentions.0.transformer_blocks.0.ff.net.2', 'up_blocks.0.upsamplers.0.conv']
    for name in names:
        module = backbone.unet.get_submodule(name)
        base = module.get_base_layer()
        a = tiny_official[f'{D2_UNET}{name}.lora_A.{owner[name]}.weight']
        b = tiny_official[f'{D2_UNET}{name}.lora_B.{owner[name]}.weight']
        if isinstance(base, torch.nn.Linear):
            x = torch.randn(2, 5, base.in_features, generator=generator, dtype=torch.float64)
            expected = F.linear(x, base.weight, base.bias) + scale * (x @ a.T @ b.T)
        else:
            x = torch.randn(2, base.in_channels, 6, 6, generator=generator, dtype=torch.float64)
            weight, bias = base.weight, base.bias
            if name == 'conv_in':  # trained in full: the checkpoint's own base weights
                weight, bias = (tiny_official[f'{D2_UNET}conv_in.base_layer.{p}'] for p in ('weight', 'bias'))
            conv = dict(stride=base.stride, padding=base.padding)
            expected = F.conv2d(x, weight, bias, **conv) + scale * F.conv2d(F.conv2d(x, a, **conv), b)
        with torch.no_grad():
            torch.testing.assert_close(module(x), expected, rtol=1e-10, atol=1e-10, msg=name)


def one_line(error) -> str:
    message = str(error.value)
    assert '\n' not in message
    return message


@pytest.mark.parametrize('edit, match', [
    (lambda s: s.update({'sem_seg_head.predictor.static_query.weight': torch.zeros(1)}), 'static_query'),
    (lambda s: s.update({D2_UNET + 'conv_in.lora_A.default_encoder.weight': torch.zeros(4, 4, 3, 3)}),
     "adapter 'default_encoder'"),
    (lambda s: s.update({D2_UNET + 'up_blocks.0.resnets.0.conv1.lora_A.default_encoder_s2.weight': torch.zeros(1)}),
     "puts module 'up_blocks.0.resnets.0.conv1' in 'default_decoder_s2'"),
    (lambda s: s.update({D2_UNET + 'conv_in.lora_embedding_A.default_encoder_s2': torch.zeros(1)}),
     'unknown LoRA tensor'),
    (lambda s: s.update({D2_UNET + 'conv_in.weight': torch.zeros(1)}), 'both map to backbone.unet.conv_in'),
    (lambda s: s.update({D2_UNET + 'mid_block.resnets.0.conv1.lora_A.default_others_s2.weight': torch.zeros(8, 1)}),
     'ranks'),
])
def test_unknown_or_inconsistent_keys_stop_the_conversion(tiny_official, edit, match):
    state = copy.copy(tiny_official)
    edit(state)
    with pytest.raises(ValueError, match=match) as error:
        convert_rass_state_dict(state)
    one_line(error)


def test_missing_or_misshapen_tensors_do_not_fit_the_model(tiny_cfg, tiny_converted):
    converted, _ = tiny_converted
    expected = trainable_state_shapes(tiny_cfg, TINY_CONFIG)
    missing = dict(converted)
    missing.pop('decode_head.cls_embed.weight')
    with pytest.raises(ValueError, match=r"1 missing keys \(e.g. \['decode_head.cls_embed.weight'\]\)") as error:
        check_against_expected(missing, expected, TINY_CONFIG)
    one_line(error)
    wrong = dict(converted, **{'decode_head.cls_embed.weight': torch.zeros(151, 32)})
    with pytest.raises(ValueError, match=r'decode_head.cls_embed.weight \(151, 32\) where the model has \(9, 32\)'):
        check_against_expected(wrong, expected, TINY_CONFIG)
