"""SCRBackbone: one-step restoration latents, trainable set, prompt padding."""
import pytest
import torch
from diffusers import DDPMScheduler
from mmengine.config import Config
from mmseg.registry import MODELS

from rass_mmseg.models.adapters.lora_adapters import lora_parameter_names
from tests.utils import repo_path


@pytest.fixture(scope='module')
def scr_backbone_cfg() -> dict:
    return Config.fromfile(repo_path('configs', '_base_', 'models', 'scr_tiny-sd.py')).model.backbone.to_dict()


def build(cfg: dict, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return MODELS.build({**cfg, **overrides})


def test_trainable_set_is_scr_lora_and_conv_in(scr_backbone_cfg):
    backbone = build(scr_backbone_cfg)
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    lora = set(lora_parameter_names(backbone, 'scr'))
    assert lora and trainable == lora | {'unet.conv_in.base_layer.weight', 'unet.conv_in.base_layer.bias'}
    assert backbone.vae.decoder is None  # the SCR head owns the decoder
    assert backbone.capture_layers


def test_one_step_equals_the_ddpm_x0_formula(scr_backbone_cfg):
    backbone = build(scr_backbone_cfg, timestep=700).eval()
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    text = torch.randn(1, 9, 32)
    with torch.no_grad():
        x0 = backbone(images, text)
        latents = backbone.vae.encode(images).latent_dist.mode() * backbone.vae.config.scaling_factor
        eps = backbone.unet(latents, torch.tensor([700, 700]), encoder_hidden_states=text.expand(2, -1, -1)).sample
    # Stable Diffusion's scaled_linear schedule, written out independently of diffusers
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64)**2
    alpha_bar = torch.cumprod(1 - betas, 0)[700].float()
    expected = (latents - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()
    assert x0.shape == (2, 4, 8, 8)
    torch.testing.assert_close(x0, expected, rtol=1e-4, atol=1e-4)


def test_forward_diffusion_is_the_schedulers_add_noise(scr_backbone_cfg):
    backbone = build(scr_backbone_cfg)
    assert isinstance(backbone.scheduler, DDPMScheduler)
    timesteps = torch.tensor([0, 20, 500, 999])
    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        clean = torch.randn(4, 4, 8, 8, generator=generator).to(dtype)
        noise = torch.randn(4, 4, 8, 8, generator=generator).to(dtype)
        # the backbone's own formula before it used diffusers' (the schedule of its clean_latents): same bits
        alpha = backbone.alphas_cumprod[timesteps].to(dtype).view(-1, 1, 1, 1)
        expected = alpha.sqrt() * clean + (1 - alpha).sqrt() * noise
        noisy = backbone.scheduler.add_noise(clean, noise, timesteps)
        assert noisy.dtype == dtype and torch.equal(noisy, expected), dtype


def test_padded_prompts_with_a_mask_match_unpadded(scr_backbone_cfg):
    backbone = build(scr_backbone_cfg).eval()
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    text = torch.randn(1, 5, 32)
    padded = torch.cat([text, torch.zeros(1, 3, 32)], dim=1)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]])
    with torch.no_grad():
        reference = backbone(images, text)
        masked = backbone(images, padded, encoder_attention_mask=mask, capture_attention=True)
        maps = backbone.attention_store.stop()
    torch.testing.assert_close(masked, reference, rtol=1e-4, atol=1e-5)
    assert all(m[..., 5:].abs().max() < 1e-6 for m in maps.values())  # padding gets no attention


def test_odd_sizes_are_padded_and_bad_settings_fail(scr_backbone_cfg, tmp_path):
    backbone = build(scr_backbone_cfg).eval()
    with torch.no_grad():
        assert backbone(torch.zeros(1, 3, 37, 70), torch.randn(1, 4, 32)).shape == (1, 4, 8, 16)
    with pytest.raises(ValueError, match=r'SCRBackbone timestep=1000 must lie in \[0, 1000\)'):
        build(scr_backbone_cfg, timestep=1000)
    with pytest.raises(ValueError, match='capture_attention needs attention_strides'):
        build(scr_backbone_cfg, attention_strides=())(torch.zeros(1, 3, 64, 64), torch.randn(1, 4, 32),
                                                      capture_attention=True)
    with pytest.raises(FileNotFoundError, match=r'missing .*scheduler/scheduler_config.json \(or give scheduler'):
        type(backbone)._build_scheduler(str(tmp_path), None)


def test_export_adapter_refuses_a_non_empty_folder(scr_backbone_cfg, tmp_path):
    backbone = build(scr_backbone_cfg)
    (tmp_path / 'keep.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='is not empty'):
        backbone.export_adapter(str(tmp_path))
    assert (tmp_path / 'keep.txt').read_text() == 'mine'
