"""Cross-attention capture: maps of the right layers and shapes, UNet output unchanged."""
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from rass_mmseg.models.utils.cross_attention_capture import (
    CrossAttentionCaptureProcessor,
    cross_attention_layers_at_strides,
    install_cross_attention_capture,
)
from rass_mmseg.models.utils.sd_components import build_sd_components


@pytest.fixture(scope='module')
def tiny_unet():
    from mmengine.config import Config

    from tests.utils import repo_path
    tiny_sd = Config.fromfile(repo_path('configs', '_base_', 'models', 'tiny_sd.py')).tiny_sd
    torch.manual_seed(0)
    _, unet, _, _ = build_sd_components(None, vae=tiny_sd.vae, unet=tiny_sd.unet, text_encoder=tiny_sd.text_encoder)
    return unet.eval()


def test_layers_are_chosen_by_stride(tiny_unet):
    # tiny UNet: cross-attention in down blocks 0-2 (strides 8, 16, 32), mid (64), up blocks 1-3 (32, 16, 8)
    layers = cross_attention_layers_at_strides(tiny_unet, (16, ), latent_stride=8)
    assert layers == ['down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor',
                      'up_blocks.2.attentions.0.transformer_blocks.0.attn2.processor',
                      'up_blocks.2.attentions.1.transformer_blocks.0.attn2.processor']
    mid = cross_attention_layers_at_strides(tiny_unet, (64, ), latent_stride=8)
    assert mid == ['mid_block.attentions.0.transformer_blocks.0.attn2.processor']
    with pytest.raises(ValueError, match=r'no cross-attention layer at strides \[128\]; .*\[8, 16, 32, 64\]'):
        cross_attention_layers_at_strides(tiny_unet, (128, ), latent_stride=8)


def test_capture_shapes_probabilities_and_unchanged_output(tiny_unet):
    latents, text = torch.randn(2, 4, 16, 8), torch.randn(2, 7, 32)
    tiny_unet.set_attn_processor(AttnProcessor2_0())
    with torch.no_grad():
        reference = tiny_unet(latents, 5, encoder_hidden_states=text).sample
    layers = cross_attention_layers_at_strides(tiny_unet, (16, 32), latent_stride=8)
    store = install_cross_attention_capture(tiny_unet, layers)
    processors = tiny_unet.attn_processors
    assert all(isinstance(processors[n], CrossAttentionCaptureProcessor) for n in layers)
    assert sum(isinstance(p, AttnProcessor2_0) for p in processors.values()) == len(processors) - len(layers)
    with torch.no_grad():
        idle = tiny_unet(latents, 5, encoder_hidden_states=text).sample
        assert store.maps == {}  # not recording unless started
        store.start((16, 8))
        captured = tiny_unet(latents, 5, encoder_hidden_states=text).sample
        maps = store.stop()
    torch.testing.assert_close(idle, reference, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(captured, reference, rtol=1e-4, atol=1e-5)
    assert sorted(maps) == sorted(layers)
    for name, probs in maps.items():
        stride = 16 if ('down_blocks.1' in name or 'up_blocks.2' in name) else 32
        assert probs.shape == (2, 8, 128 // stride, 64 // stride, 7)  # 8 heads (attention_head_dim=8)
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))
    assert store.maps == {} and not store.active


def test_capture_matches_an_independent_softmax(tiny_unet):
    """The recorded probabilities equal softmax(q k^T / sqrt(d)) computed from the layer's own projections."""
    layer = 'down_blocks.2.attentions.0.transformer_blocks.0.attn2.processor'
    store = install_cross_attention_capture(tiny_unet, [layer])
    attn = tiny_unet.get_submodule(layer.rsplit('.processor', 1)[0])
    seen = {}
    handle = attn.register_forward_pre_hook(lambda m, args, kwargs: seen.update(x=args[0], ctx=kwargs[
        'encoder_hidden_states']), with_kwargs=True)
    try:
        with torch.no_grad():
            store.start((16, 16))
            tiny_unet(torch.randn(1, 4, 16, 16), 3, encoder_hidden_states=torch.randn(1, 5, 32))
            probs = store.stop()[layer]
    finally:
        handle.remove()
    q = attn.to_q(seen['x']).view(1, -1, attn.heads, 8).transpose(1, 2)
    k = attn.to_k(seen['ctx']).view(1, -1, attn.heads, 8).transpose(1, 2)
    expected = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1).detach()
    torch.testing.assert_close(probs.reshape(1, attn.heads, -1, 5), expected, rtol=1e-4, atol=1e-6)


def test_install_rejects_unknown_layers(tiny_unet):
    with pytest.raises(ValueError, match="no attention processor named 'up_blocks.9.attn2.processor'"):
        install_cross_attention_capture(tiny_unet, ['up_blocks.9.attn2.processor'])
