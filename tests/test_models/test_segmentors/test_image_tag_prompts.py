"""Which image an ``ImageTagsPrompt`` tags at test time. The public RASS code (feature_projection.py, single_forward
inside slide_forward) prompts every window with the RAM tags of the whole input image, padded to a multiple of 8:
``scope='image'``. ``scope='window'`` tags each window."""
import copy

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmseg.registry import MODELS

from tests.test_models.test_prompts import tagger_double  # noqa: F401  (registers MeanColourTagger)
from tests.utils import repo_path

MASK2FORMER = repo_path('configs', '_base_', 'models', 'rass_tiny-sd_mask2former.py')
PADDED = ConfigDict(mode='slide_features', pad_to_multiple=8, pad_value=-1.0)


def build(prompt_source: dict, test_cfg=PADDED):
    cfg = copy.deepcopy(Config.fromfile(MASK2FORMER).model)
    cfg.backbone.prompt_source = prompt_source
    cfg.test_cfg = test_cfg
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.eval()


def tags_prompt(scope: str = 'image') -> dict:
    return dict(type='ImageTagsPrompt', tagger=dict(type='MeanColourTagger'), scope=scope)


def metas(height: int, width: int) -> list:
    return [dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width))]


def image() -> torch.Tensor:
    """40x61 (padded to 40x64): two windows, x = 0..40 and 24..64, of other colours than the whole image."""
    inputs = torch.rand(1, 3, 40, 61, generator=torch.Generator().manual_seed(0)) * 0.4 - 0.2
    inputs[:, 0, :, :30] += 0.7  # red on the left, green on the right
    inputs[:, 1, :, 30:] += 0.7
    return inputs


def with_prompt_of(model, tags: str):
    """The same model with a fixed prompt: the caption the tags make, cleaned as the public code does."""
    fixed = build(dict(type='FixedTextPrompt', text=model.backbone.prompt_source.prompt_text(tags)),
                  model.test_cfg)
    fixed.load_state_dict({k: v for k, v in model.state_dict().items() if '.tagger.' not in k})
    return fixed.eval()


def test_scope_image_tags_the_whole_padded_image_once_and_prompts_every_window_with_it():
    model = build(tags_prompt('image'))
    tagger = model.backbone.tagger
    inputs = image()
    with torch.no_grad():
        logits = model.inference(inputs, metas(40, 61))
    assert len(tagger.seen) == 1 and tagger.seen[0].shape[-2:] == (40, 64)  # once, after the padding
    assert torch.equal(tagger.seen[0][..., :61], inputs) and bool((tagger.seen[0][..., 61:] == -1).all())
    padded_tags = tagger.tag(tagger.seen[0])[0]
    assert padded_tags != tagger.tag(inputs)[0]  # the padding changes the tags of this image
    with torch.no_grad():
        expected = with_prompt_of(model, padded_tags).inference(inputs, metas(40, 61))
        unpadded = with_prompt_of(model, tagger.tag(inputs)[0]).inference(inputs, metas(40, 61))
    torch.testing.assert_close(logits, expected)
    assert not torch.allclose(logits, unpadded, atol=1e-4)  # the prompt reaches the UNet


def test_scope_window_tags_each_window():
    model = build(tags_prompt('window'))
    tagger = model.backbone.tagger
    inputs = image()
    with torch.no_grad():
        logits = model.inference(inputs, metas(40, 61))
    assert [tuple(seen.shape[-2:]) for seen in tagger.seen] == [(40, 40), (40, 40)]
    window_tags = [tagger.tag(seen)[0] for seen in tagger.seen[:2]]
    assert window_tags[0] != window_tags[1]
    image_scope = build(tags_prompt('image'))
    image_scope.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(logits, image_scope.inference(inputs, metas(40, 61)), atol=1e-4)
        # each window's features are those of the backbone prompted with that window's own tags
        padded = model._pad_for_slide(inputs)
        for (x1, x2), tags in zip(((0, 40), (24, 64)), window_tags):
            window = padded[..., x1:x2]
            fixed = with_prompt_of(model, tags)
            for ours, theirs in zip(model.extract_feat(window), fixed.extract_feat(window)):
                torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize('scope', ['image', 'window'])
def test_whole_mode_tags_the_image_itself(scope):
    model = build(tags_prompt(scope), ConfigDict(mode='whole'))
    inputs = image()[..., :56]
    with torch.no_grad():
        logits = model.inference(inputs, metas(40, 56))
        expected = with_prompt_of(model, model.backbone.tagger.tag(inputs)[0]).inference(inputs, metas(40, 56))
    torch.testing.assert_close(logits, expected)
