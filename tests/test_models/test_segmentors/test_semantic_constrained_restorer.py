"""SemanticConstrainedRestorer (SCR): losses, gradients, ground-truth prompts and prediction."""
import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS

from tests.utils import repo_path
from tests.utils import scr_batch as batch

CLASSES = ('brick', 'grass', 'gravel', 'tissue', 'text', 'sand', 'fabric', 'cloud')


@pytest.fixture(scope='module')
def scr_cfg() -> dict:
    cfg = Config.fromfile(repo_path('configs', 'scr', 'scr_tiny-sd_1xb4-300it_textures-128x128.py'))
    return cfg.model.to_dict()


def build(cfg: dict, **overrides):
    torch.manual_seed(0)
    return MODELS.build({**cfg, **overrides})


def test_ground_truth_prompts_name_the_present_classes(scr_cfg):
    model = build(scr_cfg, negative_classes=0)
    gt = torch.full((2, 8, 8), 255)
    gt[0, :4], gt[0, 4:], gt[1, :2] = 5, 1, 7
    embeddings, mask, token_maps = model._gt_class_prompts(gt)
    assert mask is None and embeddings.shape[0] == 2
    assert sorted(token_maps[0]) == [1, 5] and sorted(token_maps[1]) == [7]
    tokenizer = model.backbone.tokenizer
    ids = tokenizer('grass,sand', add_special_tokens=True)['input_ids']  # one window: BOS, tokens, EOS
    assert [ids[p] for p in token_maps[0][1]] == tokenizer('grass', add_special_tokens=False)['input_ids']
    assert [ids[p] for p in token_maps[0][5]] == tokenizer('sand', add_special_tokens=False)['input_ids']
    with pytest.raises(ValueError, match='label 9 has no name in gt_class_prompt'):
        model._gt_class_prompts(torch.full((1, 4, 4), 9))


def test_prompts_of_different_lengths_are_padded_with_a_mask(scr_cfg):
    names = ['x' * 100, 'short']  # the byte-level tokenizer: one token per character, > 1 window
    model = build(scr_cfg, gt_class_prompt=dict(type='ClassNamesPrompt', classes=names), negative_classes=0)
    gt = torch.stack([torch.zeros(4, 4, dtype=torch.long), torch.ones(4, 4, dtype=torch.long)])
    embeddings, mask, token_maps = model._gt_class_prompts(gt)
    assert embeddings.shape[1] == 2 * 77 and mask.tolist()[1] == [1] * 77 + [0] * 77
    assert len(token_maps[0][0]) == 100 and len(token_maps[1][1]) == 5


def test_loss_and_gradients_reach_only_lora_and_conv_in(scr_cfg):
    model = build(scr_cfg).train()
    data = batch(model, training=True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_l2', 'loss_scl', 'scl_positive', 'scl_negative'}
    assert all(torch.isfinite(v) for v in losses.values()) and losses['loss_l2'] > 0 and losses['loss_scl'] > 0
    # L_SCL's two terms are logged, not optimised: detached, and left out of the sum mmengine optimises
    assert not losses['scl_positive'].requires_grad and not losses['scl_negative'].requires_grad
    terms = {'positive': losses['scl_positive'], 'negative': losses['scl_negative']}
    torch.testing.assert_close(losses['loss_scl'].detach(), model.alignment_loss.weigh(terms))
    total, _ = model.parse_losses(losses)
    torch.testing.assert_close(total, losses['loss_l2'] + losses['loss_scl'])
    losses['loss_scl'].backward()  # L_SCL alone: through the attention maps
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert with_grad and with_grad <= trainable
    assert all('lora_' in n or 'conv_in' in n for n in trainable)
    assert any('attn2.to_q' in n for n in with_grad) and any('attn2.to_k' in n for n in with_grad)


def test_loss_needs_the_clean_image(scr_cfg):
    model = build(scr_cfg, data_preprocessor=dict(scr_cfg['data_preprocessor'], keep_hq=False)).train()
    with pytest.raises(ValueError, match='needs data_sample.gt_hq_img'):
        model(**batch(model, training=True), mode='loss')
    with pytest.raises(ValueError, match='alignment_loss needs gt_class_prompt'):
        build(scr_cfg, gt_class_prompt=None)
    with pytest.raises(ValueError, match='backbone.pretrained'):  # None is accepted: mmseg's init_model sets it
        build(scr_cfg, pretrained='checkpoints/sd21')


def test_predict_restore_and_tensor_mode_agree(scr_cfg):
    model = build(scr_cfg).eval()
    data = batch(model, training=False)
    with torch.no_grad():
        samples = model(**data, mode='predict')
        restored = model.restore(data['inputs'])
        tensor = model(data['inputs'], mode='tensor')
    assert restored.shape == (2, 3, 64, 64) and 0 <= restored.min() and restored.max() <= 1
    torch.testing.assert_close(tensor, restored)
    torch.testing.assert_close(torch.stack([s.restored_img.data for s in samples]), restored)
    assert all('lq_img' in s and 'gt_hq_img' in s for s in samples)  # degrade='always': LQ input and clean target


def test_negative_classes_add_absent_names_in_class_order(scr_cfg):
    gt = torch.full((2, 8, 8), 255)
    gt[0, :4], gt[0, 4:], gt[1, :2] = 5, 1, 7
    model = build(scr_cfg, negative_classes=2)
    torch.manual_seed(3)
    _, _, token_maps = model._gt_class_prompts(gt)
    for present, classes in zip(({1, 5}, {7}), token_maps):
        assert present <= set(classes) and len(classes) == len(present) + 2
    # the prompt lists its names in class order, like the test-time prompt of all class names
    names = model.gt_class_prompt.phrases()
    first = sorted(token_maps[0])
    tokenizer_ids = model.backbone.tokenizer(','.join(names[c] for c in first), add_special_tokens=True)['input_ids']
    assert [tokenizer_ids[p] for p in token_maps[0][first[0]]] == model.backbone.tokenizer(
        names[first[0]], add_special_tokens=False)['input_ids']
    everything = build(scr_cfg, negative_classes='all')
    embeddings, _, token_maps = everything._gt_class_prompts(gt)
    assert all(sorted(classes) == list(range(8)) for classes in token_maps)
    # with every class named, the training prompt is the test-time prompt of all class names
    test_time = everything.backbone.encode_prompt(names).embeddings
    torch.testing.assert_close(embeddings[:1], test_time)
    with pytest.raises(ValueError, match="negative_classes must be an int >= 0 or 'all'"):
        build(scr_cfg, negative_classes=-1)


def test_loss_with_negatives_trains(scr_cfg):
    model = build(scr_cfg, negative_classes=3).train()
    losses = model(**batch(model, training=True), mode='loss')
    assert torch.isfinite(losses['loss_scl']) and losses['loss_scl'] > 0


def test_decoder_keys_under_the_backbone_are_unexpected_not_moved(scr_cfg):
    # no checkpoint ever held the VAE decoder under the backbone (0.1.0 published none): no hook renames such keys
    model = build(scr_cfg)
    old, new = 'backbone.vae.decoder.', 'decode_head.vae.decoder.'
    state = {(old + key[len(new):] if key.startswith(new) else key): value for key, value in model.state_dict().items()}
    assert any(key.startswith(old) for key in state)
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "decode_head\.vae\.decoder\.'):
        model.load_state_dict(state)
