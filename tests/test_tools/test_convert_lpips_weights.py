
import pytest
import torch
import torchvision
from safetensors import safe_open

from rass_mmseg.models.utils import build_lpips
from rass_mmseg.models.utils.lpips_network import linear_weights_path
from tests.utils import load_tool

tool = load_tool('model_converters/convert_lpips_weights')
convert_lpips_weights, main = tool.convert_lpips_weights, tool.main

# torchvision model, and the indices of its `features` whose outputs LPIPS compares (the reference
# implementation's relu1_2 ... relu5_3 for VGG16, relu1 ... relu5 for AlexNet, 7 stages for SqueezeNet 1.1).
BACKBONES = {
    'vgg': ('vgg16', [3, 8, 15, 22, 29]),
    'alex': ('alexnet', [1, 4, 7, 9, 11]),
    'squeeze': ('squeezenet1_1', [1, 4, 7, 9, 10, 11, 12]),
}


def fake_torchvision_checkpoint(net_type: str, path, full: bool = False) -> torch.nn.Module:
    """Save a randomly initialised torchvision ImageNet model as a checkpoint like download.pytorch.org's.

    Unless ``full``, only the ``features.*`` tensors are saved (VGG16's classifier alone is 470 MB).
    """
    torch.manual_seed(0)
    model = getattr(torchvision.models, BACKBONES[net_type][0])(weights=None).eval()
    state = {k: v for k, v in model.state_dict().items() if full or k.startswith('features.')}
    torch.save(state, str(path))
    return model


def independent_lpips(model: torch.nn.Module, lins: dict, img1: torch.Tensor, img2: torch.Tensor, taps: list):
    """LPIPS as written in the paper and richzhang/PerceptualSimilarity, from the torchvision model directly."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    features = []
    for image in (img1, img2):
        x, outputs = ((2 * image - 1) - shift) / scale, []
        for index, layer in enumerate(model.features[:taps[-1] + 1]):
            x = layer(x)
            if index in taps:
                outputs.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        features.append(outputs)
    total = 0
    for k, (f1, f2) in enumerate(zip(*features)):
        total = total + torch.nn.functional.conv2d((f1 - f2) ** 2, lins[f'lin{k}.model.1.weight']).mean(dim=(2, 3))
    return total.flatten()


@pytest.mark.parametrize('net_type', ['vgg', 'alex', 'squeeze'])
def test_converted_file_computes_lpips_of_the_torchvision_backbone(net_type, tmp_path):
    checkpoint = tmp_path / f'{net_type}-fake.pth'
    model = fake_torchvision_checkpoint(net_type, checkpoint)
    out = str(tmp_path / f'lpips_{net_type}.safetensors')
    state = convert_lpips_weights(str(checkpoint), out, net_type)

    lins = torch.load(linear_weights_path(net_type), map_location='cpu', weights_only=True)
    for name, value in lins.items():  # the linear layers are torchmetrics' shipped LPIPS v0.1 weights
        assert torch.equal(state[name], value), name
    assert sum(key.startswith('net.') for key in state) == sum(1 for _ in model.features.state_dict())

    torch.manual_seed(123)  # another random backbone, overwritten by the file
    network = build_lpips(net_type, weights=out)
    img1, img2 = torch.rand(2, 2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = independent_lpips(model, lins, img1, img2, BACKBONES[net_type][1])
        actual = network(img1, img2)
    assert (expected > 0).all()
    # float32, features normalised with eps 1e-8 inside the sqrt (torchmetrics) vs 1e-10 outside (reference)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-6)


def test_cli_on_a_full_checkpoint_ignores_the_classifier_and_never_overwrites(tmp_path, capsys):
    checkpoint = tmp_path / 'squeezenet1_1-fake.pth'
    model = fake_torchvision_checkpoint('squeeze', checkpoint, full=True)
    assert any(key.startswith('classifier.') for key in model.state_dict())
    out = tmp_path / 'out' / 'lpips_squeeze.safetensors'
    main([str(checkpoint), str(out), '--net', 'squeeze'])
    assert 'wrote' in capsys.readouterr().out
    with safe_open(str(out), 'pt') as file:
        assert file.metadata()['net_type'] == 'squeeze'
        assert torch.equal(file.get_tensor('net.slices.1.3.expand1x1.weight'),
                           model.state_dict()['features.3.expand1x1.weight'])
        assert not any('classifier' in key for key in file.keys())

    before = out.read_bytes()
    with pytest.raises(FileExistsError, match='refusing to overwrite'):
        main([str(checkpoint), str(out), '--net', 'squeeze'])
    assert out.read_bytes() == before


def test_checkpoints_that_do_not_fit_are_refused(tmp_path):
    checkpoint = tmp_path / 'squeezenet1_1-fake.pth'
    fake_torchvision_checkpoint('squeeze', checkpoint)
    with pytest.raises(ValueError, match=r'do not fit LPIPS-alex.*is --net right\?') as error:
        convert_lpips_weights(str(checkpoint), str(tmp_path / 'a.safetensors'), 'alex')
    assert '\n' not in str(error.value)

    state = torch.load(str(checkpoint), weights_only=True)
    state['features.13.weight'] = torch.zeros(1)  # e.g. a deeper variant of the model
    torch.save(state, str(checkpoint))
    with pytest.raises(ValueError, match='features.13.weight unused'):
        convert_lpips_weights(str(checkpoint), str(tmp_path / 'b.safetensors'), 'squeeze')

    with pytest.raises(ValueError, match='.safetensors file'):
        convert_lpips_weights(str(checkpoint), str(tmp_path / 'c.pth'), 'squeeze')
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        convert_lpips_weights(str(tmp_path / 'missing.pth'), str(tmp_path / 'd.safetensors'), 'squeeze')
    assert not any(path.suffix == '.safetensors' for path in tmp_path.iterdir())
