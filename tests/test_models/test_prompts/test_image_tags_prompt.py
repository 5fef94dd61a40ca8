"""``ImageTagsPrompt``: each image prompted with its tags as the public RASS code does (``caption = f'{tags},
{pos_prompt_vsd}'``, cleaned and tokenized by ``encode_prompt`` of restoration_adaptation/ras.py into one padded,
truncated 77-token window), with a frozen tagger that checkpoints leave out when it loads its own weights file."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmseg.registry import MODELS, TASK_UTILS

from rass_mmseg.models.prompts.image_tags_prompt import clean_caption
from tests.test_models.test_prompts.tagger_double import write_weights
from tests.utils import repo_path

TINY_SD = repo_path('configs', '_base_', 'models', 'tiny_sd.py')
TINY_MODEL = repo_path('configs', 'rass', 'rass_tiny-sd_mask2former_1xb4-300it_textures-128x128.py')
TAGGER = dict(type='MeanColourTagger')


def backbone(prompt_source: dict):
    cfg = copy.deepcopy(Config.fromfile(TINY_SD).tiny_rass_backbone)
    cfg.prompt_source = prompt_source
    torch.manual_seed(0)
    return MODELS.build(cfg).eval()


def public_encode_prompt(model, caption: str) -> torch.Tensor:
    """encode_prompt of the public ras.py, written from its description: strip '[] ,', drop apostrophes, commas to
    spaces, tokenizer(max_length=model_max_length, padding='max_length', truncation=True), last hidden state."""
    caption = caption.strip('[] ,').replace("'", '')
    caption = ' '.join(caption.split(','))
    ids = model.tokenizer(caption, max_length=model.tokenizer.model_max_length, padding='max_length',
                          truncation=True, return_tensors='pt').input_ids
    with torch.no_grad():
        return model.text_encoder(ids)[0]


def test_clean_caption_is_the_public_text_handling():
    assert clean_caption('tree, sky, ') == 'tree  sky'
    assert clean_caption("[children's room, bed], ") == 'childrens room  bed'
    assert clean_caption(', ') == ''


@pytest.mark.parametrize('extra', ['', 'a very long tag ' * 8])  # the second is cut at 75 tokens, as the public code
def test_each_image_gets_the_public_encoding_of_its_own_tags(extra):
    model = backbone(dict(type='ImageTagsPrompt', tagger=dict(TAGGER, extra=extra)))
    images = torch.stack([torch.full((3, 24, 40), -0.8), torch.full((3, 24, 40), 0.5)])
    images[1, 1] = 0.9  # green
    tags = model.tagger.tag(images)
    assert tags[0] != tags[1] and tags[0].startswith('tone ')
    embeddings = model.image_prompt_embeddings(images)
    assert embeddings.shape == (2, 77, 32)
    for index, tag in enumerate(tags):
        expected = public_encode_prompt(model, f'{tag}, ')  # pos_prompt_vsd = '' by default
        torch.testing.assert_close(embeddings[index:index + 1], expected)
    with_suffix = backbone(dict(type='ImageTagsPrompt', tagger=dict(TAGGER, extra=extra), suffix='clean, sharp'))
    torch.testing.assert_close(with_suffix.image_prompt_embeddings(images)[:1],
                               public_encode_prompt(with_suffix, f'{tags[0]}, clean, sharp'))


def test_each_distinct_prompt_is_encoded_once_and_the_backbone_prompts_its_input():
    model = backbone(dict(type='ImageTagsPrompt', tagger=TAGGER))
    calls = []
    model.text_encoder.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    images = torch.full((3, 3, 24, 40), 0.2)
    model.image_prompt_embeddings(images)
    model.image_prompt_embeddings(images[:1])
    assert calls == [1]  # one caption for three images, then from the cache
    with torch.no_grad():
        features = model(images[:1])
        reference = model(images[:1], public_encode_prompt(model, f'{model.tagger.tag(images[:1])[0]}, '))
    for ours, theirs in zip(features, reference):
        torch.testing.assert_close(ours, theirs)


def test_training_phrases_and_bad_settings_are_refused_in_one_line():
    model = backbone(dict(type='ImageTagsPrompt', tagger=TAGGER)).train()
    assert not model.tagger.training  # frozen and in eval mode even when the backbone trains
    with pytest.raises(ValueError, match='test-time prompt') as error:
        model(torch.zeros(1, 3, 32, 32))
    assert '\n' not in str(error.value)
    with pytest.raises(ValueError, match='no fixed phrases'):
        model.prompt_embeddings()
    for bad, match in ((dict(scope='crop'), 'scope must be one of'), (dict(template='{suffix}'), "naming '{tags}'"),
                       (dict(template='{tags} {other}'), 'may name only'), (dict(tagger='RAM'), 'config dict')):
        with pytest.raises(ValueError, match=match) as error:
            TASK_UTILS.build(dict(dict(type='ImageTagsPrompt', tagger=TAGGER), **bad))
        assert '\n' not in str(error.value)


def test_tagger_is_frozen_out_of_the_optimizer_and_out_of_checkpoints_with_its_own_weights(tmp_path):
    weights = write_weights(str(tmp_path / 'tagger.safetensors'))
    cfg = Config.fromfile(TINY_MODEL)
    plain = MODELS.build(copy.deepcopy(cfg.model))
    cfg.model.backbone.prompt_source = dict(type='ImageTagsPrompt', tagger=dict(TAGGER, weights=weights))
    tagged = MODELS.build(copy.deepcopy(cfg.model))
    assert torch.equal(tagged.backbone.tagger.weight, torch.tensor([1.0, 0.5, 2.0]))
    assert not any(p.requires_grad for p in tagged.backbone.tagger.parameters())
    wrapper = build_optim_wrapper(tagged, cfg.optim_wrapper)
    optimized = {id(p) for group in wrapper.optimizer.param_groups for p in group['params'] if p.requires_grad}
    assert id(tagged.backbone.tagger.weight) not in optimized
    assert not any('tagger' in key for key in tagged.state_dict())
    # a checkpoint of the class-name model (what training and the converter write) loads strictly onto it
    tagged.load_state_dict(plain.state_dict(), strict=True)
    assert torch.equal(tagged.backbone.tagger.weight, torch.tensor([1.0, 0.5, 2.0]))  # kept from its file
    # a tagger without a weights file is random: it is saved and expected like the other weights
    cfg.model.backbone.prompt_source.tagger = TAGGER
    unsaved = MODELS.build(copy.deepcopy(cfg.model))
    assert 'backbone.tagger.weight' in unsaved.state_dict()
    with pytest.raises(RuntimeError, match='backbone.tagger.weight'):
        unsaved.load_state_dict(plain.state_dict(), strict=True)
