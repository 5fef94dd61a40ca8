import copy

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.optim import build_optim_wrapper
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from tests.utils import repo_path


def build_model(cfg: Config, num_classes: int = 4, **overrides):
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.decode_head.num_classes = num_classes
    if model_cfg.decode_head.type == 'Mask2FormerHead':
        model_cfg.decode_head.loss_cls.class_weight = [1.0] * num_classes + [0.1]
    for key, value in overrides.items():
        if key == 'prompt_source':
            model_cfg.backbone[key] = value  # replace, not merge (prompt sources have different keys)
        else:
            model_cfg[key] = value
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def make_batch(num_classes: int = 4, batch: int = 2, height: int = 64, width: int = 64):
    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for i in range(batch):
        inputs.append(torch.randint(0, 256, (3, height, width), generator=generator, dtype=torch.uint8))
        label = torch.zeros(1, height, width, dtype=torch.long)
        label[:, :, width // 2:] = (i + 1) % num_classes
        label[:, :height // 4] = 255  # ignored pixels
        sample = SegDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                             pad_shape=(height, width)))
        sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def head_cfg(name: str) -> Config:
    cfg = Config.fromfile(repo_path('configs', '_base_', 'models', 'rass_tiny-sd_segformer-head.py'))
    if name == 'SegformerHead':
        return cfg
    if name == 'Mask2FormerHead':
        return Config.fromfile(repo_path('configs', '_base_', 'models', 'rass_tiny-sd_mask2former.py'))
    norm_cfg = dict(type='GN', num_groups=8, requires_grad=True)
    heads = dict(
        UPerHead=dict(type='UPerHead', in_channels=[64] * 4, in_index=[0, 1, 2, 3], pool_scales=(1, 2),
                      channels=32, num_classes=4, norm_cfg=norm_cfg),
        FCNHead=dict(type='FCNHead', in_channels=64, in_index=1, channels=32, num_convs=1, num_classes=4,
                     norm_cfg=norm_cfg))
    cfg.model.decode_head = heads[name]
    return cfg


@pytest.mark.parametrize('head', ['SegformerHead', 'UPerHead', 'FCNHead', 'Mask2FormerHead'])
def test_steps_and_forward_modes_with_mmseg_heads(head):
    model = build_model(head_cfg(head))
    optim_wrapper = build_optim_wrapper(model, dict(optimizer=dict(type='AdamW', lr=1e-3)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    log_vars = model.train_step(make_batch(), optim_wrapper)
    assert log_vars['loss'].isfinite()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed <= trainable
    assert any('lora_B.seg' in n for n in changed) and 'backbone.unet.conv_in.base_layer.weight' in changed
    assert not any(n.startswith(('backbone.vae.', 'backbone.text_encoder.')) for n in trainable)
    # exactly: Seg LoRA + conv_in in the backbone, all of the neck and the head
    names = [n for n, _ in model.named_parameters()]
    expected = {n for n in names if n.startswith(('neck.', 'decode_head.')) or '.seg.' in n}
    expected |= {'backbone.unet.conv_in.base_layer.weight', 'backbone.unet.conv_in.base_layer.bias'}
    assert trainable == expected

    for step in (model.val_step, model.test_step):
        results = step(make_batch())
        assert len(results) == 2
        assert tuple(results[0].pred_sem_seg.data.shape) == (1, 64, 64)
        assert results[0].seg_logits.data.shape[0] == 4

    data = model.data_preprocessor(make_batch(), training=False)
    logits = model(data['inputs'], data['data_samples'], mode='tensor')
    assert logits.shape[0] == 2
    assert isinstance(model(data['inputs'], data['data_samples'], mode='loss'), dict)
    assert len(model(data['inputs'], data['data_samples'], mode='predict')) == 2


def test_slide_inference_matches_whole_on_one_window():
    model = build_model(head_cfg('SegformerHead')).eval()
    data = model.data_preprocessor(make_batch(batch=1), training=False)
    whole = model.inference(data['inputs'], [s.metainfo for s in data['data_samples']])
    model.test_cfg = ConfigDict(mode='slide', crop_size=(64, 64), stride=(48, 48))
    slide = model.inference(data['inputs'], [s.metainfo for s in data['data_samples']])
    torch.testing.assert_close(whole, slide)
    model.test_cfg = ConfigDict(mode='slide', crop_size=(48, 48), stride=(32, 32))
    assert model.inference(data['inputs'], [s.metainfo for s in data['data_samples']]).shape == whole.shape


def test_prompt_embeddings_are_cached_not_encoded_per_image():
    model = build_model(head_cfg('SegformerHead'), prompt_source=dict(type='ClassNamesPrompt',
                                                                       classes=['sky', 'tree', 'road', 'car']))
    calls = []
    model.backbone.text_encoder.register_forward_hook(lambda *args: calls.append(1))
    model.eval()
    for _ in range(3):
        model.test_step(make_batch())
    assert len(calls) == 1
    model.load_state_dict(model.state_dict())  # new weights: the cache is dropped and rebuilt once
    model.test_step(make_batch())
    model.test_step(make_batch())
    assert len(calls) == 2


def test_long_class_name_prompt_uses_several_windows_and_keeps_every_class():
    model = build_model(head_cfg('SegformerHead'), prompt_source=dict(type='ClassNamesPrompt', dataset='ADE20KDataset'))
    phrases = model.backbone.prompt_source.phrases()
    assert len(phrases) == 150 and phrases[0] == 'wall'
    encoding = model.backbone.encode_prompt(phrases)
    assert encoding.num_windows > 1
    assert encoding.embeddings.shape == (1, 77 * encoding.num_windows, 32)
    assert model.backbone.prompt_embeddings().shape == encoding.embeddings.shape
    tokenizer = model.backbone.tokenizer
    for phrase, positions in zip(phrases, encoding.phrase_token_positions):
        assert positions, phrase
        assert len(positions) == len(tokenizer(phrase, add_special_tokens=False)['input_ids'])
        assert len({p // 77 for p in positions}) == 1  # short phrases are never split across windows
    all_positions = [p for ps in encoding.phrase_token_positions for p in ps]
    assert len(all_positions) == len(set(all_positions))
    assert all(p % 77 not in (0, 76) for p in all_positions)  # start/end slots hold no phrase token


def test_segmentor_level_backbone_keys_are_refused(tiny_cfg):
    with pytest.raises(ValueError, match='backbone.pretrained'):
        build_model(tiny_cfg, pretrained='sd')
    cfg = copy.deepcopy(tiny_cfg)
    cfg.model.prompt_source = dict(type='FixedTextPrompt', text='')
    with pytest.raises(TypeError, match="unexpected keyword argument 'prompt_source'"):
        MODELS.build(cfg.model)


def test_head_channels_that_do_not_fit_the_neck_are_refused(tiny_cfg):
    cfg = copy.deepcopy(tiny_cfg)
    cfg.model.decode_head.in_channels = [64, 64, 32, 64]
    with pytest.raises(ValueError, match=r'decode_head.in_channels=\[64, 64, 32, 64\].*channels \[64, 64, 64, 64\]'):
        build_model(cfg)
    fcn = head_cfg('FCNHead')
    fcn.model.decode_head.in_channels = 32
    with pytest.raises(ValueError, match='expected in_channels=64'):
        build_model(fcn)


def test_slide_features_mode_runs_the_backbone_per_window_and_the_head_once():
    model = build_model(head_cfg('SegformerHead')).eval()
    inputs = torch.rand(1, 3, 64, 96) * 2 - 1  # short side 64: windows x = 0..64 and 32..96 (the last shifted back)
    metas = [dict(img_shape=(64, 96), ori_shape=(64, 96), pad_shape=(64, 96))]
    model.test_cfg = ConfigDict(mode='slide_features')
    heads, head_forward = [], model.decode_head.forward
    model.decode_head.forward = lambda features: heads.append(features[0].shape) or head_forward(features)
    with torch.no_grad():
        logits = model.inference(inputs, metas)
        assert heads == [(1, 64, 16, 24)] and logits.shape == (1, 4, 64, 96)  # once, on the whole feature map
        del model.decode_head.forward
        # by hand: each window through backbone + neck, placed at offset // stride, averaged where they overlap
        left, right = model.extract_feat(inputs[..., 0:64]), model.extract_feat(inputs[..., 32:96])
        expected_features = []
        for a, b, stride in zip(left, right, (4, 8, 16, 32)):
            total = torch.zeros(1, a.shape[1], 64 // stride, 96 // stride)
            count = torch.zeros(1, 1, 64 // stride, 96 // stride)
            total[..., :, 0:64 // stride] += a
            count[..., :, 0:64 // stride] += 1
            total[..., :, 32 // stride:96 // stride] += b
            count[..., :, 32 // stride:96 // stride] += 1
            expected_features.append(total / count)
        expected = model.decode_head.predict(expected_features, metas, model.test_cfg)
        torch.testing.assert_close(logits, expected)
        # not the whole-image features, and a square image is one window: whole inference
        model.test_cfg = ConfigDict(mode='whole')
        assert not torch.allclose(model.inference(inputs, metas), logits, atol=1e-4)
        square = inputs[..., :64]
        square_metas = [dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64))]
        whole = model.inference(square, square_metas)
        model.test_cfg = ConfigDict(mode='slide_features')
        torch.testing.assert_close(model.inference(square, square_metas), whole)
        model.test_cfg = ConfigDict(mode='slide_features', crop_size=32, stride=16)
        assert model._windows(64, 96)[:3] == [(0, 32, 0, 32), (0, 32, 16, 48), (0, 32, 32, 64)]
        assert model.inference(inputs, metas).shape == (1, 4, 64, 96)
