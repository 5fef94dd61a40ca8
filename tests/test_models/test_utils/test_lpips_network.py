import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from skimage import data, transform
from torch import nn

from rass_mmseg.models.utils import build_lpips
from rass_mmseg.models.utils.lpips_network import LPIPS_NET_TYPES, lpips_state_dict


def _astronaut(size: int = 64) -> torch.Tensor:
    """A real image (scikit-image ships it), (1, 3, size, size) float in [0, 1]."""
    image = transform.resize(data.astronaut(), (size, size), anti_aliasing=True)
    return torch.from_numpy(image).permute(2, 0, 1)[None].float()


def _random_network(net_type: str, seed: int):
    torch.manual_seed(seed)
    return build_lpips(net_type)


@pytest.fixture(scope='module')
def squeeze_file(tmp_path_factory):
    """A squeeze network with non-default linear weights, and its weights saved as safetensors."""
    network = _random_network('squeeze', 0)
    with torch.no_grad():
        for lin in network.lpips.lins:
            lin.model[-1].weight.uniform_(0.0, 0.1)
    path = str(tmp_path_factory.mktemp('lpips') / 'squeeze.safetensors')
    save_file(lpips_state_dict(network), path)
    return network, path


@pytest.mark.parametrize('net_type', LPIPS_NET_TYPES)
def test_distance_shape_zero_for_identical_frozen_and_differentiable(net_type):
    network = _random_network(net_type, 0)
    generator = torch.Generator().manual_seed(0)
    img1 = torch.rand(2, 3, 48, 40, generator=generator)
    img2 = torch.rand(2, 3, 48, 40, generator=generator).requires_grad_()

    distance = network(img1, img2)
    assert distance.shape == (2,)
    assert (distance > 0).all()
    torch.testing.assert_close(network(img1, img1.clone()), torch.zeros(2), atol=1e-6, rtol=0)

    assert not any(param.requires_grad for param in network.parameters())
    distance.sum().backward()  # a loss: gradients reach the image, not the frozen network
    assert img2.grad is not None and img2.grad.abs().sum() > 0
    assert all(param.grad is None for param in network.parameters())


@pytest.mark.parametrize('net_type', LPIPS_NET_TYPES)
def test_more_noise_gives_a_larger_distance(net_type):
    # Random backbone (seed 0), linear layers 1/C: monotone here for seeds 0-2 of every backbone.
    network = _random_network(net_type, 0)
    clean = _astronaut()
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    noisy = torch.cat([(clean + sigma * noise).clamp(0, 1) for sigma in (0.02, 0.05, 0.1, 0.2, 0.4)])
    with torch.no_grad():
        distances = network(clean.expand_as(noisy), noisy)
    assert (distances > 0).all()
    assert (distances[1:] > distances[:-1]).all(), distances


def test_stays_in_eval_mode_inside_a_training_model():
    network = _random_network('squeeze', 0)
    parent = nn.Sequential(nn.Conv2d(3, 3, 1), network)
    parent.train()
    assert not network.training and not any(module.training for module in network.modules())
    img1, img2 = torch.rand(2, 1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():  # dropout (in the reference linear layers) inactive: repeated calls agree exactly
        assert torch.equal(network(img1, img2), network(img1, img2))


def test_safetensors_and_pth_round_trip(squeeze_file, tmp_path):
    network, path = squeeze_file
    pth = str(tmp_path / 'squeeze.pth')
    torch.save(lpips_state_dict(network), pth)
    img1, img2 = torch.rand(2, 2, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = network(img1, img2)
        other_random = _random_network('squeeze', 1)(img1, img2)
        assert not torch.allclose(other_random, expected)  # the loaded weights must matter
        for weights in (path, pth):
            torch.manual_seed(1)  # the same random start as other_random, then overwritten by the file
            loaded = build_lpips('squeeze', weights=weights)
            torch.testing.assert_close(loaded(img1, img2), expected, rtol=0, atol=0)
            for name, value in lpips_state_dict(network).items():
                assert torch.equal(lpips_state_dict(loaded)[name], value), name
    assert not loaded.training and not any(param.requires_grad for param in loaded.parameters())


def _single_line(error) -> str:
    message = str(error.value)
    assert '\n' not in message
    return message


def test_missing_file_is_a_one_line_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        build_lpips('squeeze', weights=str(tmp_path / 'nope.safetensors'))
    assert 'nope.safetensors' in _single_line(error)


@pytest.mark.parametrize('change, words', [
    ('drop', ['missing 1 keys', 'lin0.model.1.weight']),
    ('extra', ['unexpected 1 keys', 'extra.weight']),
    ('aliases', ['unexpected 7 keys', 'lins.0.model.1.weight']),
    ('shape', ['wrong shape', 'lin2.model.1.weight']),
])
def test_incomplete_or_mismatched_state_dict_is_a_one_line_value_error(squeeze_file, tmp_path, change, words):
    network, _ = squeeze_file
    state = lpips_state_dict(network)
    if change == 'drop':
        del state['lin0.model.1.weight']
    elif change == 'extra':
        state['extra.weight'] = torch.zeros(1)
    elif change == 'aliases':  # a raw nn.Module state dict: lins.<k> duplicates are not part of the format
        state = {name: value.clone() for name, value in network.lpips.state_dict().items()}
    else:
        state['lin2.model.1.weight'] = torch.zeros(1, 3, 1, 1)
    path = str(tmp_path / 'bad.pth')
    torch.save(state, path)
    with pytest.raises(ValueError) as error:
        build_lpips('squeeze', weights=path)
    message = _single_line(error)
    assert 'bad.pth' in message
    for word in words:
        assert word in message


def test_unsafe_or_unreadable_files_are_refused(tmp_path):
    pickled = str(tmp_path / 'pickled.pth')
    torch.save({'lin0.model.1.weight': np.dtype}, pickled)  # not loadable with weights_only=True
    with pytest.raises(ValueError, match='weights_only=True') as error:
        build_lpips('squeeze', weights=pickled)
    assert 'pickled.pth' in _single_line(error)

    garbage = tmp_path / 'garbage.safetensors'
    garbage.write_bytes(b'not a safetensors file')
    with pytest.raises(ValueError, match='garbage.safetensors'):
        build_lpips('squeeze', weights=str(garbage))

    nested = str(tmp_path / 'nested.pth')
    torch.save({'state_dict': {'a': torch.zeros(1)}}, nested)
    with pytest.raises(ValueError, match='flat'):
        build_lpips('squeeze', weights=nested)

    other = tmp_path / 'weights.bin'
    other.write_bytes(b'')
    with pytest.raises(ValueError, match='.safetensors, .pth or .pt'):
        build_lpips('squeeze', weights=str(other))


def test_bad_net_type_and_bad_inputs():
    with pytest.raises(ValueError, match="'resnet'"):
        build_lpips('resnet')
    network = _random_network('squeeze', 0)
    with pytest.raises(ValueError, match='equal shape'):
        network(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 16))
    with pytest.raises(ValueError, match='equal shape'):
        network(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))


def test_alex_distance_equals_the_lpips_formula_on_torchvision_features():
    """The LPIPS distance recomputed from its definition on torchvision's AlexNet with the same weights: inputs
    mapped to [-1, 1] and shifted/scaled per channel, features after the five ReLUs unit-normalised over channels,
    squared differences weighted per channel by the linear layers, averaged over space, summed over layers."""
    from torchvision.models import alexnet
    network = _random_network('alex', 0)
    with torch.no_grad():
        for lin in network.lpips.lins:
            lin.model[-1].weight.uniform_(0.0, 0.1)
    features = alexnet(weights=None).features.eval()
    backbone = {name.split('.', 1)[1]: value for name, value in network.lpips.net.state_dict().items()}
    features.load_state_dict(backbone, strict=False)
    assert set(backbone) == {k for k in features.state_dict()}  # every conv of the five slices was copied
    shift = torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1)
    scale = torch.tensor([.458, .448, .450]).view(1, 3, 1, 1)
    img1, img2 = torch.rand(2, 2, 3, 64, 64, generator=torch.Generator().manual_seed(5))

    def taps(image):
        x = ((image * 2 - 1) - shift) / scale
        out = []
        for index, layer in enumerate(features):
            x = layer(x)
            if index in (1, 4, 7, 9, 11):  # the ReLUs after conv1-conv5
                out.append(x)
        return out

    with torch.no_grad():
        expected = torch.zeros(2)
        for layer, (f1, f2) in enumerate(zip(taps(img1), taps(img2))):
            f1 = f1 / (f1.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            f2 = f2 / (f2.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            weight = network.lpips.lins[layer].model[-1].weight.flatten()
            expected += ((f1 - f2).pow(2) * weight.view(1, -1, 1, 1)).sum(1).mean((1, 2))
        torch.testing.assert_close(network(img1, img2), expected, rtol=1e-4, atol=1e-6)
