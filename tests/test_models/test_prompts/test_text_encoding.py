import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel

from rass_mmseg.models.prompts import ClassNamesPrompt, FixedTextPrompt, encode_phrases
from rass_mmseg.models.utils import build_byte_level_clip_tokenizer


@pytest.fixture(scope='module')
def encoder():
    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=514, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                            num_attention_heads=2, max_position_embeddings=12, bos_token_id=512, eos_token_id=513,
                            pad_token_id=513)
    return build_byte_level_clip_tokenizer(model_max_length=12), CLIPTextModel(config).eval()


def test_short_prompt_is_one_window_equal_to_plain_clip_encoding(encoder):
    tokenizer, model = encoder
    encoding = encode_phrases(['cat', 'dog'], tokenizer, model)
    assert encoding.num_windows == 1
    assert encoding.phrase_token_positions == [[1, 2, 3], [5, 6, 7]]  # 'c a t' ',' 'd o g'
    plain = tokenizer('cat,dog', padding='max_length', max_length=12, return_tensors='pt')['input_ids']
    with torch.no_grad():
        torch.testing.assert_close(encoding.embeddings, model(plain)[0])


def test_long_phrase_is_split_across_windows_never_truncated(encoder):
    tokenizer, model = encoder
    phrase = 'abcdefghijklmnopqrstuvw'  # 23 tokens, windows hold 10
    encoding = encode_phrases([phrase], tokenizer, model)
    assert encoding.num_windows == 3
    assert len(encoding.phrase_token_positions[0]) == 23
    assert encoding.embeddings.shape == (1, 36, 16)


def test_phrases_are_packed_whole_into_windows(encoder):
    tokenizer, model = encoder
    encoding = encode_phrases(['aaaa', 'bbbb', 'cccc'], tokenizer, model)  # 4 + 1 + 4 fit, the third moves on
    assert encoding.num_windows == 2
    assert encoding.phrase_token_positions[2] == [13, 14, 15, 16]


def test_empty_text_is_the_unconditional_prompt_and_bad_input_is_refused(encoder):
    tokenizer, model = encoder
    assert encode_phrases([''], tokenizer, model).embeddings.shape == (1, 12, 16)
    with pytest.raises(ValueError, match='non-empty list of strings'):
        encode_phrases('cat', tokenizer, model)
    with pytest.raises(ValueError, match='non-empty list of strings'):
        encode_phrases([], tokenizer, model)


def test_prompt_sources():
    assert FixedTextPrompt('a photo').phrases() == ['a photo']
    assert ClassNamesPrompt(classes=['sky', 'road'], template='a {}').phrases() == ['a sky', 'a road']
    assert ClassNamesPrompt(dataset='TextureSegDataset').phrases()[:3] == ['brick', 'grass', 'gravel']
    with pytest.raises(ValueError, match='exactly one of classes and dataset'):
        ClassNamesPrompt()
    with pytest.raises(KeyError, match="dataset='NoSuchDataset' is not a registered"):
        ClassNamesPrompt(dataset='NoSuchDataset')
    with pytest.raises(ValueError, match="template must contain"):
        ClassNamesPrompt(classes=['sky'], template='sky')
