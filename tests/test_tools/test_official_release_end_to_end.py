"""The authors' release, end to end at tiny size: a synthetic ``rass.pth`` in the public layout, converted by
tools/model_converters/convert_official_rass.py, tested by our tools/test.py with the public code's test setting (PIL
short-edge resize, black padding to a multiple of 8, every window prompted with the tags of the whole padded image)
predicts what an independent computation of the public pipeline predicts
(tests/test_converters/public_test_pipeline.py).

The image is 61x83 (no side a multiple of 8); its short side is resized to 64 (64x87, padded to 64x88), so the two
windows are 64 pixels square: the public UNet runs unpadded windows, which ours pads to 64 (a documented difference
that this size avoids). The VAE latent is the posterior's mode in both (the public code samples it).
"""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmseg.registry import HOOKS
from PIL import Image

from rass_mmseg.models.utils.sd_components import build_sd_components
from tests.test_converters.official_checkpoints import TINY, Maker, official_rass_state_dict
from tests.test_converters.public_test_pipeline import public_test
from tests.test_models.test_prompts.tagger_double import MeanColourTagger, write_weights
from tests.utils import load_tool, repo_path

TINY_CONFIG = repo_path('configs', 'rass', 'rass_tiny-sd_mask2former_1xb4-300it_textures-128x128.py')
SD_PARTS = ('vae', 'unet', 'text_encoder')
CLASSES = [f'class{i}' for i in range(TINY.classes)]
RECORDED = []


@HOOKS.register_module(force=True)
class SegLogitsRecorder(Hook):
    """Keeps each test image's class scores (what tools/test.py's model predicted) in ``RECORDED``."""

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        RECORDED.extend((sample.img_path, sample.seg_logits.data.clone(), sample.pred_sem_seg.data.clone())
                        for sample in outputs)


@pytest.fixture(scope='module')
def release(tmp_path_factory):
    """Authors' downloads at tiny size: an SD folder, rass.pth (its frozen VAE and text encoder those of the SD
    folder, as in the release), the tagger's weights file, and a dataset of one 61x83 image."""
    root = tmp_path_factory.mktemp('official_release')
    cfg = Config.fromfile(TINY_CONFIG)
    torch.manual_seed(0)
    vae, unet, text_encoder, tokenizer = build_sd_components(**{k: cfg.tiny_sd[k] for k in SD_PARTS})
    for name, part in dict(vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer).items():
        part.save_pretrained(root / 'sd' / name)
    state = official_rass_state_dict(TINY, cfg.tiny_sd, Maker(seed=11))
    for prefix, part in (('vae.', vae), ('text_encoder.', text_encoder)):
        for key, value in part.state_dict().items():
            if f'backbone.feature_extractor.sd.{prefix}{key}' in state:
                state[f'backbone.feature_extractor.sd.{prefix}{key}'] = value.clone()
    torch.save(dict(model=state, iteration=160000), root / 'rass.pth')
    write_weights(str(root / 'tagger.safetensors'))
    generator = np.random.default_rng(0)
    pixels = generator.integers(0, 256, (61, 83, 3), dtype=np.uint8)
    pixels[:, :40, 0] = np.clip(pixels[:, :40, 0].astype(int) + 90, 0, 255)  # reddish left, brighter bottom
    pixels[30:] = np.clip(pixels[30:].astype(int) + 40, 0, 255)
    for folder in ('img', 'ann'):
        (root / 'data' / folder).mkdir(parents=True)
    Image.fromarray(pixels).save(root / 'data' / 'img' / 'photo.png')
    Image.fromarray(generator.integers(0, TINY.classes, (61, 83), dtype=np.uint8)).save(root / 'data' / 'ann' /
                                                                                          'photo.png')
    return root, state, tokenizer


def official_test_config(root, out_dir, folder: str) -> str:
    """The tiny model with the public code's test setting, as the official-test configs set it at paper size."""
    path = out_dir / 'official_test.py'
    path.write_text(f"""
_base_ = [{TINY_CONFIG!r}, {repo_path('configs', '_base_', 'datasets', 'lq_test_sets.py')!r}]
custom_imports = dict(imports=['rass_mmseg', 'mmdet.models', 'tests.test_models.test_prompts.tagger_double'],
                      allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='RASSBackbone', pretrained={folder!r}, timestep=1, latent_mode='mode',
                  lora_rank=4, lora_alpha=8,
                  prompt_source=dict(type='ImageTagsPrompt', tagger=dict(
                      type='MeanColourTagger', weights={str(root / 'tagger.safetensors')!r}))),
    test_cfg=dict(mode='slide_features', pad_to_multiple=8, pad_value=-1.0))
test_pipeline = [dict(_base_.public_rass_test_pipeline[0]),
                 dict(_base_.public_rass_test_pipeline[1], short_edge_length=64),
                 dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
test_dataloader = dict(_delete_=True, batch_size=1, num_workers=0, persistent_workers=False,
                       sampler=dict(type='DefaultSampler', shuffle=False),
                       dataset=dict(type='BaseSegDataset', data_root={str(root / 'data')!r},
                                    data_prefix=dict(img_path='img', seg_map_path='ann'),
                                    metainfo=dict(classes={CLASSES!r}), img_suffix='.png', seg_map_suffix='.png',
                                    pipeline=test_pipeline))
test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
custom_hooks = [dict(type='SegLogitsRecorder')]
""")
    return str(path)


def test_converted_release_through_tools_test_predicts_the_public_pipeline(release, tmp_path, in_process_tool):
    root, state, tokenizer = release
    converter = load_tool('model_converters/convert_official_rass')
    converter.main([str(root / 'rass.pth'), str(tmp_path / 'rass.pth'), '--config', TINY_CONFIG, '--sd21-base',
                    str(root / 'sd')])
    folder = str(tmp_path / 'rass_sd21-base-scr')
    assert osp.isdir(osp.join(folder, 'unet'))
    RECORDED.clear()
    config = official_test_config(root, tmp_path, folder)
    in_process_tool(repo_path('tools', 'test.py'), config, str(tmp_path / 'rass.pth'), '--work-dir',
                    str(tmp_path / 'work'), '--cfg-options', 'test_dataloader.num_workers=0')
    assert len(RECORDED) == 1
    path, scores, prediction = RECORDED[0]
    assert scores.shape == (TINY.classes, 61, 83)

    tagger = MeanColourTagger(weights=str(root / 'tagger.safetensors'))
    settings = dict(state=state, sd_arch=Config.fromfile(TINY_CONFIG).tiny_sd, tokenizer=tokenizer, short_edge=64,
                    groups=8, enc_heads=TINY.enc_heads, enc_points=TINY.enc_points, enc_layers=TINY.enc_layers,
                    dec_heads=2, dec_layers=TINY.dec_layers)
    expected, caption = public_test(path, tag=tagger.tag, **settings)
    assert tagger.seen[0].shape[-2:] == (64, 88) and caption.startswith('tone ')  # the whole padded image
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(prediction[0], expected.argmax(0))
    assert scores.std(dim=(1, 2)).min() > 1e-3  # the scores vary over the image far beyond the tolerance
    # the comparison sees the prompt: tags of the unpadded image give other scores
    unpadded, other_caption = public_test(path, tag=lambda batch: tagger.tag(batch[..., :64, :87]), **settings)
    assert other_caption != caption and not torch.allclose(scores, unpadded, rtol=1e-4, atol=1e-5)
