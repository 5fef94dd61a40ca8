"""CrossAttentionAlignmentLoss on hand-built attention maps and masks."""
import numpy as np
import pytest
import torch

from rass_mmseg.models.losses import CrossAttentionAlignmentLoss


def _maps_from(token_maps: torch.Tensor, heads: int = 2) -> dict:
    """One captured layer (N, heads, h, w, L) whose every head shows ``token_maps`` (N, L, h, w)."""
    return {'layer': token_maps.permute(0, 2, 3, 1)[:, None].repeat(1, heads, 1, 1, 1)}


def _reference(token_maps: np.ndarray, gt: np.ndarray, positions, mode: str, normalization: str = 'max') -> float:
    """Independent numpy version for one layer whose grid equals the label map (no resizing)."""
    values = []
    for image, classes in enumerate(positions):
        for label, tokens in classes.items():
            a = token_maps[image, tokens].mean(axis=0).ravel()
            m = (gt[image] == label).astype(np.float64).ravel()
            if mode == 'kl':
                p, q = m / m.sum(), a / a.sum()
                nz = p > 0
                values.append(float((p[nz] * np.log(p[nz] / q[nz])).sum()))
            else:
                s = a / a.max() if normalization == 'max' else a
                if mode == 'mse':
                    values.append(float(((s - m)**2).mean()))
                else:
                    s = np.clip(s, 1e-8, 1 - 1e-8)
                    values.append(float(-(m * np.log(s) + (1 - m) * np.log(1 - s)).mean()))
    return float(np.mean(values))


@pytest.mark.parametrize('mode', ['mse', 'bce', 'kl'])
def test_value_equals_independent_computation(mode):
    rng = np.random.default_rng(0)
    token_maps = rng.uniform(0.01, 1.0, size=(2, 6, 4, 4))
    gt = rng.integers(0, 3, size=(2, 4, 4))
    gt[1, 0] = 255  # ignored pixels belong to no class
    positions = [{0: [1, 2], 2: [4]}, {1: [3]}]  # class 0's name has two tokens: they are averaged
    loss = CrossAttentionAlignmentLoss(mode=mode, normalization='max', loss_weight=0.5)
    value = loss(_maps_from(torch.tensor(token_maps, dtype=torch.float64)), positions, torch.tensor(gt))
    assert value.item() == pytest.approx(0.5 * _reference(token_maps, gt, positions, mode), rel=1e-6)


@pytest.mark.parametrize('mode', ['mse', 'bce', 'kl'])
def test_zero_when_maps_equal_masks_and_grows_with_separation(mode):
    gt = torch.zeros(1, 8, 8, dtype=torch.long)
    gt[:, :, 4:] = 1
    mask = (gt == 1).float()
    positions = [{1: [0]}]
    loss = CrossAttentionAlignmentLoss(mode=mode, normalization='max')
    values = []
    for shift in range(0, 5):  # the map's column band moves away from the mask
        band = torch.roll(mask, shifts=-shift, dims=2)
        values.append(loss(_maps_from(band[:, None]), positions, gt).item())
    assert values[0] == pytest.approx(0.0, abs=1e-6)
    assert all(b > a for a, b in zip(values, values[1:])), values


def test_maps_of_several_layers_and_sizes_are_averaged_at_the_largest_grid():
    rng = np.random.default_rng(1)
    gt = torch.tensor(rng.integers(0, 2, size=(1, 16, 16)))
    fine = torch.tensor(rng.uniform(0.1, 1, size=(1, 1, 16, 16)))
    coarse = torch.tensor(rng.uniform(0.1, 1, size=(1, 1, 8, 8)))
    maps = {'a': _maps_from(fine)['layer'], 'b': _maps_from(coarse)['layer']}
    # expected: the coarse layer resized bilinearly to 16x16, then the two layers averaged
    upsampled = torch.nn.functional.interpolate(coarse, size=(16, 16), mode='bilinear', align_corners=False)
    averaged = ((fine + upsampled) / 2).numpy()
    for mode in ('mse', 'kl'):
        value = CrossAttentionAlignmentLoss(mode=mode, normalization='max')(maps, [{0: [0], 1: [0]}], gt).item()
        assert value == pytest.approx(_reference(averaged, gt.numpy(), [{0: [0], 1: [0]}], mode), rel=1e-6)


def test_images_without_classes_contribute_nothing_and_never_nan():
    maps = _maps_from(torch.rand(2, 3, 4, 4, requires_grad=True))
    gt = torch.full((2, 4, 4), 255)
    loss = CrossAttentionAlignmentLoss(normalization='max')
    empty = loss(maps, [{}, {}], gt)
    assert empty.item() == 0.0 and torch.isfinite(empty)
    empty.backward()  # the zero still depends on the maps: no unused-parameter errors under DDP
    gt[1] = 2
    only_second = loss(maps, [{}, {2: [1]}], gt)
    alone = loss({'layer': maps['layer'][1:]}, [{2: [1]}], gt[1:])
    assert only_second.item() == pytest.approx(alone.item())


def test_bad_input_errors():
    with pytest.raises(ValueError, match="mode must be 'mse', 'bce' or 'kl', got 'l1'"):
        CrossAttentionAlignmentLoss(mode='l1')
    with pytest.raises(ValueError, match="normalization must be 'max' or 'none'.*got 'sum' with mode 'mse'"):
        CrossAttentionAlignmentLoss(normalization='sum')
    with pytest.raises(ValueError, match="got 'none' with mode 'kl'"):
        CrossAttentionAlignmentLoss(mode='kl', normalization='none')
    loss = CrossAttentionAlignmentLoss(normalization='max')
    maps = _maps_from(torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match='token position 7 of class 0 is outside the prompt of 3 tokens'):
        loss(maps, [{0: [7]}], torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match='1 attention maps, 2 token maps'):
        loss(maps, [{}, {}], torch.zeros(1, 4, 4, dtype=torch.long))


@pytest.mark.parametrize('mode', ['mse', 'bce', 'kl'])
def test_absent_classes_are_pushed_to_zero_relative_to_the_present_peak(mode):
    gt = torch.zeros(1, 4, 4, dtype=torch.long)
    gt[:, :, 2:] = 1  # classes 0 and 1 present; class 5 is named in the prompt but absent
    present = torch.rand(1, 2, 4, 4, dtype=torch.float64) * 0.5 + 0.1
    absent = torch.rand(1, 1, 4, 4, dtype=torch.float64) * 0.3
    absent.requires_grad_(True)
    present.requires_grad_(True)
    positions = [{0: [0], 1: [1], 5: [2]}]
    maps = _maps_from(torch.cat([present, absent], dim=1))
    loss = CrossAttentionAlignmentLoss(mode=mode, normalization='max', negative_weight=0.5)
    value = loss(maps, positions, gt)
    # by hand: the present pairs as before, plus 0.5 x the absent map over the peak of the present maps vs nothing
    positive = _reference(present.detach().numpy(), gt.numpy(), [{0: [0], 1: [1]}], mode)
    scaled = (absent.detach() / present.detach().max()).numpy().ravel()
    negative = {'mse': (scaled**2).mean(), 'bce': -np.log(1 - scaled).mean(), 'kl': np.abs(scaled).mean()}[mode]
    assert value.item() == pytest.approx(positive + 0.5 * negative, rel=1e-6)
    value.backward()
    assert (absent.grad >= 0).all() and absent.grad.abs().sum() > 0  # less attention on the absent class is better
    # the peak is a reference, not a target: the present maps get the gradient of the positive term only
    present_grad = present.grad.clone()
    present.grad = None
    loss_without = CrossAttentionAlignmentLoss(mode=mode, normalization='max', negative_weight=0.0)
    loss_without(_maps_from(torch.cat([present, absent.detach()], dim=1)), positions, gt).backward()
    torch.testing.assert_close(present_grad, present.grad)


@pytest.mark.parametrize('mode', ['mse', 'bce'])
def test_unnormalised_terms_compare_the_probabilities_themselves(mode):
    rng = np.random.default_rng(2)
    token_maps = rng.uniform(0.01, 0.9, size=(1, 4, 4, 4))
    gt = np.zeros((1, 4, 4), dtype=np.int64)
    gt[:, 2:] = 1  # classes 0 and 1 present, class 3 named but absent
    positions = [{0: [0], 1: [1, 2], 3: [3]}]
    loss = CrossAttentionAlignmentLoss(mode=mode, normalization='none', negative_weight=0.25, loss_weight=2.0)
    terms = loss.terms(_maps_from(torch.tensor(token_maps)), positions, torch.tensor(gt))
    positive = _reference(token_maps, gt, [{0: [0], 1: [1, 2]}], mode, normalization='none')
    absent = token_maps[0, 3].ravel()  # not divided by the present peak
    negative = (absent**2).mean() if mode == 'mse' else -np.log(1 - absent).mean()
    assert terms['positive'].item() == pytest.approx(positive, rel=1e-6)
    assert terms['negative'].item() == pytest.approx(negative, rel=1e-6)
    value = loss(_maps_from(torch.tensor(token_maps)), positions, torch.tensor(gt))
    assert value.item() == pytest.approx(2.0 * (positive + 0.25 * negative), rel=1e-6)


def test_moving_the_attention_to_other_tokens_is_free_under_max_normalisation_only():
    """The way out measured in the toy study: every word's attention scaled down (the rest goes to the start, end
    and padding tokens) keeps the max-normalised loss and lowers nothing, but costs under ``'none'``."""
    gt = torch.zeros(1, 4, 4, dtype=torch.long)
    gt[:, :, 2:] = 1
    aligned = torch.stack([(gt[0] == 0).double(), (gt[0] == 1).double(), torch.zeros(4, 4).double()])[None]
    aligned = aligned * 0.9 + 0.05  # words take most of their class's attention
    positions = [{0: [0], 1: [1], 3: [2]}]
    for normalization, grows in (('max', False), ('none', True)):
        loss = CrossAttentionAlignmentLoss(normalization=normalization)
        before = loss.terms(_maps_from(aligned), positions, gt)
        after = loss.terms(_maps_from(aligned * 0.01), positions, gt)
        assert (after['positive'].item() > 10 * before['positive'].item()) == grows, normalization
        if not grows:
            assert after['positive'].item() == pytest.approx(before['positive'].item(), rel=1e-9)


def test_the_default_compares_the_probabilities_themselves():
    """The default is ``normalization='none'``, the setting of both SCR configs and the one the toy study found
    correct; ``mode='kl'`` has no such setting and says so."""
    assert CrossAttentionAlignmentLoss().normalization == 'none'
    assert CrossAttentionAlignmentLoss(mode='bce').normalization == 'none'
    with pytest.raises(ValueError, match="'max' for mode 'kl'"):
        CrossAttentionAlignmentLoss(mode='kl')
    assert CrossAttentionAlignmentLoss(mode='kl', normalization='max').normalization == 'max'
