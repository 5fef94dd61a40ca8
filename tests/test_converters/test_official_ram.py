"""Public RAM / DAPE weights -> RAMTagger: every key used, merged or dropped; the converted tagger scores and tags as
the hand-written public forward (LoRA unmerged) does."""
import copy

import pytest
import torch
import torchvision.transforms as T

from rass_mmseg.converters.official_ram import convert_official_tagger, convert_official_tagger_with_report
from rass_mmseg.models.taggers import RAMTagger
from tests.test_converters import reference_ram_forward as ref
from tests.test_converters.official_checkpoints import Maker
from tests.test_converters.official_ram_checkpoints import (
    PAPER_TAGGER,
    TINY_TAGGER,
    TaggerArch,
    official_tagger_state_dict,
)

A = TINY_TAGGER


def tagger(tmp_path, arch: TaggerArch, thresholds) -> RAMTagger:
    (tmp_path / 'tags.txt').write_text('\n'.join(f'tag{i}' for i in range(arch.num_tags)))
    (tmp_path / 'thr.txt').write_text('\n'.join(map(str, thresholds)))
    return RAMTagger(image_size=arch.image_size, swin=arch.swin_cfg(), head=arch.head_cfg(), label_dim=arch.label_dim,
                     tag_list=str(tmp_path / 'tags.txt'), thresholds=str(tmp_path / 'thr.txt'))


def public_preprocess(images, size):
    """The public code: x * 0.5 + 0.5, torchvision 0.16's Resize((s, s)) on a tensor (no antialias), Normalize."""
    x = T.Resize((size, size), antialias=False)(images * 0.5 + 0.5)
    return T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(x)


@pytest.mark.parametrize('trained_lora', [False, True], ids=['ram', 'dape'])
def test_converted_tagger_scores_and_tags_as_the_public_forward(tmp_path, trained_lora):
    state = official_tagger_state_dict(A, Maker(seed=3, dtype=torch.float64), trained_lora)
    prefixed = {'backbone.feature_extractor.x.' + k: v for k, v in state.items()}
    converted, report = convert_official_tagger_with_report(prefixed, 'backbone.feature_extractor.x.')
    assert sum(report.values()) == len(state)  # every key used, merged or dropped
    assert not any('lora' in key for key in converted)
    images = torch.rand(3, 3, 80, 72, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    expected = ref.scores(public_preprocess(images, A.image_size), state, A)
    thresholds = expected.median(dim=0).values.tolist()  # per-class thresholds that split the images
    model = tagger(tmp_path, A, thresholds).double()
    model.load_state_dict(converted, strict=True)
    torch.testing.assert_close(model.scores(images), expected, rtol=1e-12, atol=1e-12)
    kept = expected > torch.tensor(thresholds, dtype=torch.float64)
    assert model.tag(images) == [', '.join(f'tag{i}' for i in range(A.num_tags) if row[i]) for row in kept]
    without_lora = ref.scores(public_preprocess(images, A.image_size), state, A, lora=False)
    assert (expected - without_lora).abs().max() > 1e-3 if trained_lora else torch.equal(expected, without_lora)
    dropped = convert_official_tagger(prefixed, 'backbone.feature_extractor.x.', lora='drop')
    model.load_state_dict(dropped, strict=True)
    torch.testing.assert_close(model.scores(images), without_lora, rtol=1e-12, atol=1e-12)


def test_tied_tag_encoder_lora_is_merged_as_loralib_eval_does():
    state = official_tagger_state_dict(A, Maker(seed=4, dtype=torch.float64), True)
    name = 'encoder.layer.0.crossattention.self.query'
    state[f'tag_encoder.{name}.lora_B'] = torch.randn(A.hidden, A.rank, dtype=torch.float64)
    converted = convert_official_tagger(state, '')
    own = state[f'tagging_head.{name}.lora_B'] @ state[f'tagging_head.{name}.lora_A']
    other = state[f'tag_encoder.{name}.lora_B'] @ state[f'tag_encoder.{name}.lora_A']
    torch.testing.assert_close(converted[f'head.layers.0.{name[len("encoder.layer.0."):]}.weight'],
                               state[f'tagging_head.{name}.weight'] + (own + other) / A.rank)


def test_paper_size_tagger_maps_onto_the_default_ram_tagger(tmp_path):
    state = official_tagger_state_dict(PAPER_TAGGER, Maker('meta'), True)
    converted, report = convert_official_tagger_with_report(state, '')
    assert sum(report.values()) == len(state)
    (tmp_path / 'tags.txt').write_text('\n'.join(['t'] * PAPER_TAGGER.num_tags))
    (tmp_path / 'thr.txt').write_text('\n'.join(['0.5'] * PAPER_TAGGER.num_tags))
    with torch.device('meta'):
        model = RAMTagger(tag_list=str(tmp_path / 'tags.txt'), thresholds=str(tmp_path / 'thr.txt'))
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in
                                                                 model.state_dict().items()}


@pytest.mark.parametrize('edit, match', [
    (lambda s: s.update({'visual_encoder.head.weight': torch.zeros(1)}), 'unknown'),
    (lambda s: s.update({'tagging_head.encoder.layer.0.attention.self.query.weight': torch.zeros(1)}), 'unknown'),
    (lambda s: s.pop('visual_encoder.layers.0.blocks.0.attn.qkv.lora_B'), 'lora_A/lora_B/weight'),
    (lambda s: s.update({'visual_encoder.layers.0.blocks.0.attn.qkv.lora_A': torch.zeros(3, 16)}),
     'not the public q,v MergedLinear'),
    (lambda s: s.pop('fc.weight'), 'incomplete tagger'),
    (lambda s: s.update({'visual_encoder.layers.0.blocks.1.attn_mask': torch.zeros(4, 16, 16)}), 'image size'),
])
def test_unknown_or_inconsistent_keys_stop_the_conversion(edit, match):
    state = copy.copy(official_tagger_state_dict(A, Maker(seed=5), True))
    edit(state)
    with pytest.raises(ValueError, match=match) as error:
        convert_official_tagger(state, '', image_size=None if 'attn_mask' not in match else A.image_size)
    assert '\n' not in str(error.value)
    with pytest.raises(ValueError, match='no keys under'):
        convert_official_tagger(state, 'missing.')
    with pytest.raises(ValueError, match="lora='add'"):
        convert_official_tagger(state, '', lora='add')
