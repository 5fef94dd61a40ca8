"""The authors' release, end to end at tiny size: a synthetic ``rass.pth`` in the public layout (RAM and DAPE taggers
included), converted by tools/model_converters/convert_official_rass.py, tested by our tools/test.py with the public
code's test setting (PIL short-edge resize, black padding to a multiple of 8, every window prompted with the RAM tags of
the whole padded image, here by ``RAMTagger`` loading the converted ``ram.safetensors``) predicts what an independent
computation of the public pipeline predicts (tests/test_converters/public_test_pipeline.py, RAM by
tests/test_converters/reference_ram_forward.py on the public keys).

The image is 61x83 (no side a multiple of 8); its short side is resized to 64 (64x87, padded to 64x88), so the two
windows are 64 pixels square: the public UNet runs unpadded windows, which ours pads to 64 (a documented difference
that this size avoids). The VAE latent is the posterior's mode in both (the public code samples it). The tagger's
input is 64 pixels square (RAM: 384).
"""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmseg.registry import HOOKS
from PIL import Image
from safetensors.torch import load_file

from rass_mmseg.models.taggers import RAMTagger
from rass_mmseg.models.utils.sd_components import build_sd_components
from tests.test_converters.official_checkpoints import TINY, Maker, official_rass_state_dict
from tests.test_converters.official_ram_checkpoints import TINY_TAGGER
from tests.test_converters.public_test_pipeline import (
    padded_input,
    public_clean_caption,
    public_ram_scores,
    public_ram_tags,
    public_test,
)
from tests.utils import load_tool, repo_path

TINY_CONFIG = repo_path('configs', 'rass', 'rass_tiny-sd_mask2former_1xb4-300it_textures-128x128.py')
SD_PARTS = ('vae', 'unet', 'text_encoder')
CLASSES = [f'class{i}' for i in range(TINY.classes)]
#: The tiny tag list: an apostrophe and spaces, which the public caption cleaning handles.
TAGS = ('sky', 'grass', "children's room", 'car', 'red brick', 'person', 'road')
SHORT_EDGE = 64
RECORDED = []
TAGGED = []


@HOOKS.register_module(force=True)
class SegLogitsRecorder(Hook):
    """Keeps each test image's class scores (what tools/test.py's model predicted) in ``RECORDED``, and every call of
    the backbone's tagger (its images, its tags, the prompt text made of them) in ``TAGGED``."""

    def before_test(self, runner) -> None:
        backbone = getattr(runner.model, 'module', runner.model).backbone
        tagger, tag = backbone.tagger, backbone.tagger.tag

        def recording_tag(images):
            tags = tag(images)
            TAGGED.append((tagger, images.clone(), tags, [backbone.prompt_source.prompt_text(t) for t in tags]))
            return tags

        tagger.tag = recording_tag

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        RECORDED.extend((sample.img_path, sample.seg_logits.data.clone(), sample.pred_sem_seg.data.clone())
                        for sample in outputs)


@pytest.fixture(scope='module')
def release(tmp_path_factory):
    """Authors' downloads at tiny size: an SD folder, rass.pth (its frozen VAE and text encoder those of the SD
    folder, as in the release; its RAM and DAPE taggers tiny, of the public layout) and a dataset of one 61x83 image."""
    root = tmp_path_factory.mktemp('official_release')
    cfg = Config.fromfile(TINY_CONFIG)
    torch.manual_seed(0)
    vae, unet, text_encoder, tokenizer = build_sd_components(**{k: cfg.tiny_sd[k] for k in SD_PARTS})
    for name, part in dict(vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer).items():
        part.save_pretrained(root / 'sd' / name)
    state = official_rass_state_dict(TINY, cfg.tiny_sd, Maker(seed=11))
    assert TINY_TAGGER.num_tags == len(TAGS) and any(k.startswith('backbone.feature_extractor.ram.') for k in state)
    for prefix, part in (('vae.', vae), ('text_encoder.', text_encoder)):
        for key, value in part.state_dict().items():
            if f'backbone.feature_extractor.sd.{prefix}{key}' in state:
                state[f'backbone.feature_extractor.sd.{prefix}{key}'] = value.clone()
    torch.save(dict(model=state, iteration=160000), root / 'rass.pth')
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


def tag_files(out_dir, thresholds) -> dict:
    """The tag list and per-tag thresholds as files (RAM's ``ram_tag_list.txt`` / ``ram_tag_list_threshold.txt``)."""
    (out_dir / 'tags.txt').write_text('\n'.join(TAGS) + '\n')
    (out_dir / 'thresholds.txt').write_text('\n'.join(repr(float(t)) for t in thresholds) + '\n')
    return dict(tag_list=str(out_dir / 'tags.txt'), thresholds=str(out_dir / 'thresholds.txt'))


def tiny_ram_tagger(files: dict, weights) -> dict:
    """A ``RAMTagger`` config of the tiny public tagger's sizes."""
    return dict(type='RAMTagger', image_size=TINY_TAGGER.image_size, swin=TINY_TAGGER.swin_cfg(),
                head=TINY_TAGGER.head_cfg(), label_dim=TINY_TAGGER.label_dim, weights=weights, **files)


def official_test_config(root, out_dir, folder: str, tagger: dict) -> str:
    """The tiny model with the public code's test setting, as the official-test configs set it at paper size."""
    path = out_dir / 'official_test.py'
    path.write_text(f"""
_base_ = [{TINY_CONFIG!r}, {repo_path('configs', '_base_', 'datasets', 'lq_test_sets.py')!r}]
custom_imports = dict(imports=['rass_mmseg', 'mmdet.models'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='RASSBackbone', pretrained={folder!r}, timestep=1, latent_mode='mode',
                  lora_rank=4, lora_alpha=8,
                  prompt_source=dict(type='ImageTagsPrompt', tagger={tagger!r}, suffix='', scope='image')),
    test_cfg=dict(mode='slide_features', pad_to_multiple=8, pad_value=-1.0))
test_pipeline = [dict(_base_.public_rass_test_pipeline[0]),
                 dict(_base_.public_rass_test_pipeline[1], short_edge_length={SHORT_EDGE}),
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
    photo = str(root / 'data' / 'img' / 'photo.png')
    # per-tag thresholds from the public RAM's scores of the padded image: the three best tags are kept, each
    # threshold halfway between its tag's score and the cut between the third and fourth best (so it is per tag)
    padded, _, _ = padded_input(photo, SHORT_EDGE, 2048)
    reference_scores = public_ram_scores(padded, state, TINY_TAGGER)[0]
    ranked = reference_scores.sort(descending=True).values
    cut = (ranked[2] + ranked[3]) / 2
    thresholds = ((reference_scores + cut) / 2).tolist()
    assert (reference_scores - torch.tensor(thresholds)).abs().min() > 1e-5  # no score at a threshold's edge
    files = tag_files(tmp_path, thresholds)

    converter = load_tool('model_converters/convert_official_rass')
    converter.main([str(root / 'rass.pth'), str(tmp_path / 'rass.pth'), '--config', TINY_CONFIG, '--sd21-base',
                    str(root / 'sd')])
    folder = str(tmp_path / 'rass_sd21-base-scr')
    assert osp.isdir(osp.join(folder, 'unet'))
    assert osp.isfile(tmp_path / 'ram.safetensors') and osp.isfile(tmp_path / 'dape.safetensors')
    RECORDED.clear()
    TAGGED.clear()
    config = official_test_config(root, tmp_path, folder, tiny_ram_tagger(files, str(tmp_path / 'ram.safetensors')))
    in_process_tool(repo_path('tools', 'test.py'), config, str(tmp_path / 'rass.pth'), '--work-dir',
                    str(tmp_path / 'work'), '--cfg-options', 'test_dataloader.num_workers=0')
    assert len(RECORDED) == 1 and len(TAGGED) == 1
    path, scores, prediction = RECORDED[0]
    assert scores.shape == (TINY.classes, 61, 83)
    tagger, seen, tags, prompt_texts = TAGGED[0]
    converted = load_file(str(tmp_path / 'ram.safetensors'))
    assert isinstance(tagger, RAMTagger)
    assert all(torch.equal(value, converted[key]) for key, value in tagger.state_dict().items())

    settings = dict(state=state, sd_arch=Config.fromfile(TINY_CONFIG).tiny_sd, tokenizer=tokenizer,
                    short_edge=SHORT_EDGE, groups=8, enc_heads=TINY.enc_heads, enc_points=TINY.enc_points,
                    enc_layers=TINY.enc_layers, dec_heads=2, dec_layers=TINY.dec_layers)

    def public_tags(batch):
        return public_ram_tags(public_ram_scores(batch, state, TINY_TAGGER), TAGS, thresholds)

    expected, caption = public_test(path, tag=public_tags, **settings)
    # the tagger saw the whole padded image and tagged it as the public RAM does: some tags kept, some not
    assert seen.shape == (1, 3, 64, 88)
    torch.testing.assert_close(seen, padded, rtol=0, atol=1e-6)
    assert caption == "sky, children's room, red brick, "
    assert tags == [caption[:-2]] and prompt_texts == [public_clean_caption(caption)]
    torch.testing.assert_close(tagger.scores(seen)[0], reference_scores, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(prediction[0], expected.argmax(0))
    assert scores.std(dim=(1, 2)).min() > 1e-3  # the scores vary over the image far beyond the tolerance
    # the comparison sees the prompt: tags of the unpadded image give other scores
    unpadded, other_caption = public_test(path, tag=lambda batch: public_tags(batch[..., :64, :87]), **settings)
    assert other_caption != caption and not torch.allclose(scores, unpadded, rtol=1e-4, atol=1e-5)
    # and the tags come from the converted RAM weights: other weights (DAPE's, random ones) tag the image otherwise
    for weights in (str(tmp_path / 'dape.safetensors'), None):
        torch.manual_seed(0)
        assert RAMTagger(**{k: v for k, v in tiny_ram_tagger(files, weights).items() if k != 'type'}).tag(seen) != tags
