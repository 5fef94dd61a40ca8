"""RAMTagger: file checks, per-class thresholds, tag order and joining, the resize rule, frozen eval-only, dtype."""
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from rass_mmseg.models.taggers import RAMTagger

SWIN = dict(patch_size=4, embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=4)
HEAD = dict(hidden_size=32, num_heads=2, intermediate_size=64, num_layers=2)


def files(tmp_path, tags=('cat', 'dog', 'tree', 'sky'), thresholds=('0.5', '0.5', '0.5', '0.5')):
    (tmp_path / 'tags.txt').write_text('\n'.join(tags))
    (tmp_path / 'thr.txt').write_text('\n'.join(thresholds))
    return dict(tag_list=str(tmp_path / 'tags.txt'), thresholds=str(tmp_path / 'thr.txt'))


def build(tmp_path, **kwargs) -> RAMTagger:
    torch.manual_seed(0)
    paths = {} if 'tag_list' in kwargs else files(tmp_path)
    return RAMTagger(image_size=32, swin=SWIN, head=HEAD, label_dim=24, **paths, **kwargs)


def one_line(error) -> str:
    assert '\n' not in str(error.value)
    return str(error.value)


def test_bad_files_stop_with_one_line_naming_the_file(tmp_path):
    paths = files(tmp_path)
    with pytest.raises(FileNotFoundError, match='nope.txt: no such file') as error:
        RAMTagger(image_size=32, swin=SWIN, head=HEAD, label_dim=24, tag_list=str(tmp_path / 'nope.txt'),
                  thresholds=paths['thresholds'])
    one_line(error)
    with pytest.raises(ValueError, match=r'thr.txt: 3 thresholds for the 4 tags') as error:
        build(tmp_path, **files(tmp_path, thresholds=('0.5', '0.5', '0.5')))
    one_line(error)
    with pytest.raises(ValueError, match="thr.txt: line 2 is 'x'") as error:
        build(tmp_path, **files(tmp_path, thresholds=('0.5', 'x', '0.5', '0.5')))
    one_line(error)
    with pytest.raises(FileNotFoundError, match='w.safetensors: no such file'):
        build(tmp_path, weights=str(tmp_path / 'w.safetensors'))
    state = build(tmp_path).state_dict()
    save_file(dict(state, **{'head.label_embed': torch.zeros(5, 24)}), tmp_path / 'w.safetensors')
    with pytest.raises(ValueError, match='w.safetensors: 5 label embeddings, the tag list has 4 tags') as error:
        build(tmp_path, weights=str(tmp_path / 'w.safetensors'))
    one_line(error)
    save_file({k: v for k, v in state.items() if k != 'head.fc.bias'}, tmp_path / 'x.safetensors')
    with pytest.raises(ValueError, match=r"1 missing keys \(e.g. \['head.fc.bias'\]\)"):
        build(tmp_path, weights=str(tmp_path / 'x.safetensors'))


def test_weights_load_from_safetensors_and_the_tagger_stays_frozen_in_eval(tmp_path):
    source = build(tmp_path)
    with torch.no_grad():
        source.head.fc.bias.fill_(0.25)
    save_file(source.state_dict(), tmp_path / 'w.safetensors')
    loaded = build(tmp_path, weights=str(tmp_path / 'w.safetensors'))
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(loaded.scores(images), source.scores(images))
    loaded.train()
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())


def test_thresholds_apply_per_class_and_tags_join_in_list_order(tmp_path, monkeypatch):
    model = build(tmp_path, **files(tmp_path, thresholds=('0.9', '0.1', '0.5', '0.3')))
    scores = torch.tensor([[0.95, 0.2, 0.5, 0.1], [0.5, 0.05, 0.6, 0.31]])
    monkeypatch.setattr(model, 'scores', lambda images: scores)
    # score == threshold is not kept (strictly greater, as the public code), order is the tag list's
    assert model.tag(torch.zeros(2, 3, 8, 8)) == ['cat, dog', 'tree, sky']


def test_resize_is_bilinear_without_antialias_and_normalises(tmp_path):
    model = build(tmp_path)
    images = torch.rand(2, 3, 80, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    expected = F.interpolate(images * 0.5 + 0.5, size=(32, 32), mode='bilinear', align_corners=False, antialias=False)
    expected = (expected - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(model.preprocess(images), expected)
    antialiased = F.interpolate(images * 0.5 + 0.5, size=(32, 32), mode='bilinear', antialias=True)
    assert (model.preprocess(images) - (antialiased - 0.45) / 0.23).abs().max() > 0.05  # the rule matters


def test_dtype_follows_the_module(tmp_path):
    model = build(tmp_path).to(torch.bfloat16)
    images = torch.rand(1, 3, 40, 40) * 2 - 1
    assert model.scores(images).dtype == torch.bfloat16
    assert model.thresholds.dtype == torch.float32  # compared in float32, as the public code
    with pytest.raises(ValueError, match=r'images of shape \(3, 40, 40\)'):
        model.scores(images[0])
