"""SCRHead: decoding and the restoration loss."""
import pytest
import torch
from diffusers import AutoencoderKL
from mmengine.config import Config

from rass_mmseg.models.heads import SCRHead
from tests.utils import repo_path


@pytest.fixture(scope='module')
def vae_cfg() -> dict:
    return Config.fromfile(repo_path('configs', '_base_', 'models', 'tiny_sd.py')).tiny_sd.vae.to_dict()


def test_decode_maps_latents_to_images_in_unit_range(vae_cfg):
    torch.manual_seed(0)
    head = SCRHead(vae=vae_cfg, lpips_weight=0)
    torch.manual_seed(0)
    reference = AutoencoderKL(**vae_cfg).eval()  # same seed: the decoder the head must own
    assert head.vae.encoder is None and not any(p.requires_grad for p in head.parameters())
    latents = torch.randn(2, 4, 8, 6)
    with torch.no_grad():
        decoded = head(latents)
        expected = (reference.decode(latents / reference.config.scaling_factor).sample + 1) / 2
    assert decoded.shape == (2, 3, 64, 48)
    torch.testing.assert_close(decoded, expected)
    clamped = head.predict(latents * 50)
    assert clamped.min() >= 0 and clamped.max() <= 1
    with pytest.raises(ValueError, match='exactly one of pretrained'):
        SCRHead(lpips_weight=0)


def test_l2_loss_is_the_mse_of_images_in_minus_one_one(vae_cfg):
    head = SCRHead(vae=vae_cfg, l2_weight=0.5, lpips_weight=0)
    restored, target = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    losses = head.loss(restored, target)
    assert set(losses) == {'loss_l2'}
    expected = 0.5 * (((restored * 2 - 1) - (target * 2 - 1))**2).mean()
    assert losses['loss_l2'].item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match=r'restored \(2, 3, 8, 8\) and target \(2, 3, 4, 4\) differ'):
        head.loss(restored, target[..., :4, :4])
    with pytest.raises(ValueError, match='weights must be >= 0'):
        SCRHead(vae=vae_cfg, l2_weight=-1)


def test_lpips_term_with_a_random_network(vae_cfg):
    head = SCRHead(vae=vae_cfg, lpips_weight=2.0, lpips_net='alex')
    assert head.lpips is not None and not any(p.requires_grad for p in head.lpips.parameters())
    head.train()
    assert not head.lpips.training
    target = torch.rand(1, 3, 64, 64)
    same = head.loss(target.clone(), target)
    assert same['loss_lpips'].item() == pytest.approx(0.0, abs=1e-6)
    other = head.loss(torch.rand(1, 3, 64, 64), target)
    expected = 2.0 * head.lpips(other_input := torch.rand(1, 3, 64, 64), target).mean()
    assert head.loss(other_input, target)['loss_lpips'].item() == pytest.approx(expected.item(), rel=1e-5)
    assert other['loss_lpips'].item() > 0
