"""ops='basicsr' (alias 'public_rass'): the operations of the public RASS code (BasicSR's), each checked against
facts read from that code (BasicSR ``basicsr/utils/diffjpeg.py`` and ``basicsr/data/degradations.py``, called by
``rass/modeling/backbone/rass_backbone.py`` of Ka1Guan/RASS) and computed independently here.
"""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rass_mmseg.degradations import KeyedRandomSource, RandomSource, SecondOrderDegradation
from rass_mmseg.degradations.basicsr_backend import BasicSRTorchBackend
from rass_mmseg.degradations.diffjpeg import diffjpeg_ragged, diffjpeg_tables
from rass_mmseg.degradations.jpeg import jpeg_ragged
from rass_mmseg.degradations.noise import add_distinct_poisson_noise, distinct_level_counts
from rass_mmseg.degradations.resize import resize_ragged
from rass_mmseg.degradations.torch_backend import TorchBackend
from tests.test_degradations.helpers import keyed, photo

# ---- reference facts read from BasicSR's DiffJPEG
#: Annex K luminance table as printed (row = vertical frequency); DiffJPEG applies its TRANSPOSE.
ANNEX_K_LUMA = np.array([[16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
                         [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
                         [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
                         [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=np.float64)
ANNEX_K_CHROMA = np.full((8, 8), 99.0)
ANNEX_K_CHROMA[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]
RGB_TO_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
YCBCR_TO_RGB = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]])


def factor(quality: float) -> float:
    """DiffJPEG's quality_to_factor: no integer arithmetic, no clipping."""
    return (5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality) / 100.0


def reference_diffjpeg(image: np.ndarray, quality: float) -> np.ndarray:
    """DiffJPEG's rules in float64 with explicit cosines, written from the facts above; ``image`` (h, w, 3)."""
    height, width = image.shape[:2]
    padded = np.zeros((-(-height // 16) * 16, -(-width // 16) * 16, 3))
    padded[:height, :width] = image  # zero padding to a multiple of 16
    ycbcr = padded * 255.0 @ RGB_TO_YCBCR.T + np.array([0.0, 128.0, 128.0])
    planes = [ycbcr[..., 0]] + [ycbcr[..., c].reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2).mean((1, 3))
                                for c in (1, 2)]  # 2x2 averaged chroma
    position = np.arange(8)
    cosine = np.cos((2 * position[None, :] + 1) * position[:, None] * np.pi / 16)  # [frequency, position]
    alpha = np.where(position == 0, 1 / np.sqrt(2), 1.0)
    decoded = []
    for index, plane in enumerate(planes):
        table = (ANNEX_K_LUMA if index == 0 else ANNEX_K_CHROMA).T * factor(quality)  # transposed
        output = np.empty_like(plane)
        for row, column in itertools.product(range(0, plane.shape[0], 8), range(0, plane.shape[1], 8)):
            block = plane[row:row + 8, column:column + 8] - 128.0
            coefficients = 0.25 * np.outer(alpha, alpha) * (cosine @ block @ cosine.T)
            coefficients = np.round(coefficients / table) * table
            output[row:row + 8, column:column + 8] = 0.25 * cosine.T @ (np.outer(alpha, alpha) * coefficients) @ \
                cosine + 128.0
        decoded.append(output if index == 0 else output.repeat(2, 0).repeat(2, 1))  # nearest upsampling
    shifted = np.stack([decoded[0], decoded[1] - 128.0, decoded[2] - 128.0], axis=-1)
    return (np.clip(shifted @ YCBCR_TO_RGB.T, 0.0, 255.0) / 255.0)[:height, :width]


def test_tables_are_the_transposed_annex_k_tables_scaled_without_rounding():
    luma, chroma = diffjpeg_tables(torch.tensor([50.0, 30.0, 95.0]))
    luma, chroma = luma.view(3, 8, 8).double(), chroma.view(3, 8, 8).double()
    assert luma[0, 0, 1] == 12 and luma[0, 1, 0] == 11 and luma[0, 0, 2] == 14 and luma[0, 2, 0] == 10
    torch.testing.assert_close(luma[0], torch.from_numpy(ANNEX_K_LUMA.T), atol=0, rtol=0)
    torch.testing.assert_close(luma[1, 0, 0], torch.tensor(16 * 5000 / 30 / 100, dtype=torch.float64), rtol=1e-6,
                               atol=0)
    assert math.isclose(luma[2, 0, 0].item(), 1.6, rel_tol=1e-6)  # libjpeg: floor((16 * 10 + 50) / 100) = 2
    assert math.isclose(chroma[2, 0, 0].item(), 1.7, rel_tol=1e-6)


def test_a_constant_16x16_image_keeps_only_its_quantised_dc():
    """A constant 8x8 block has one DCT coefficient, 8 (v - 128), quantised with the table's (0, 0) step."""
    colour = np.array([0.7, 0.3, 0.55])
    quality = 37.0
    coded = diffjpeg_ragged(torch.tensor(colour, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 16, 16),
                            torch.tensor([[16, 16]]), torch.tensor([quality]))
    y, cb, cr = RGB_TO_YCBCR @ (colour * 255) + np.array([0, 128, 128])

    def dc(value: float, step: float) -> float:
        return 128 + np.round(8 * (value - 128) / (step * factor(quality))) * step * factor(quality) / 8

    expected = YCBCR_TO_RGB @ np.array([dc(y, 16), dc(cb, 17) - 128, dc(cr, 17) - 128]) / 255
    torch.testing.assert_close(coded[0, :, 0, 0].double(), torch.from_numpy(expected), atol=1e-5, rtol=0)
    assert torch.equal(coded[0], coded[0, :, :1, :1].expand(3, 16, 16))


@pytest.mark.parametrize('size, quality', [((16, 16), 37.0), ((10, 13), 80.0), ((24, 40), 55.5)])
def test_diffjpeg_matches_an_independent_float64_computation(size, quality):
    image = photo(64)[0, :, 20:20 + size[0], 10:10 + size[1]]
    coded = diffjpeg_ragged(image[None].contiguous(), torch.tensor([size]), torch.tensor([quality]))[0]
    expected = reference_diffjpeg(image.permute(1, 2, 0).double().numpy(), quality)
    assert coded.shape == (3, *size)
    torch.testing.assert_close(coded.permute(1, 2, 0).double(), torch.from_numpy(expected), atol=2e-5, rtol=0)


def test_zero_padding_darkens_the_bottom_right_edge_where_libjpeg_repeats_it():
    bright = torch.full((1, 3, 10, 12), 0.9)
    sizes, quality = torch.tensor([[10, 12]]), torch.tensor([60.0])
    public, libjpeg = diffjpeg_ragged(bright, sizes, quality), jpeg_ragged(bright, sizes, quality)
    assert (libjpeg - 0.9).abs().max() < 2 / 255
    assert public[0, :, -1, -1].mean() < 0.9 - 5 / 255  # the black padding leaks into the last row and column


def test_ragged_batch_codes_each_image_as_alone():
    images = photo(48).expand(3, -1, -1, -1).contiguous()
    sizes, quality = torch.tensor([[48, 48], [30, 41], [17, 9]]), torch.tensor([30.0, 60.0, 90.0])
    coded = diffjpeg_ragged(images, sizes, quality)
    for index, (height, width) in enumerate(sizes.tolist()):
        alone = diffjpeg_ragged(images[index:index + 1, :, :height, :width].contiguous(), sizes[index:index + 1],
                                quality[index:index + 1])
        assert torch.equal(coded[index:index + 1, :, :height, :width], alone)


# ---- Poisson levels: L = 2 ** ceil(log2(number of distinct 8-bit values)), BasicSR's generate_poisson_noise_pt
def test_distinct_level_counts_follow_the_power_of_two_rule_inside_each_image():
    levels = torch.zeros(6, 3, 20, 20)
    for index, distinct in enumerate([1, 2, 3, 5, 129, 256]):
        levels[index].view(-1)[:distinct] = torch.arange(distinct, dtype=torch.float32)
    assert distinct_level_counts(levels, None) == [1, 2, 4, 8, 256, 256]
    levels[0, :, 10:, :] = 77.0  # outside the image's region: not counted
    assert distinct_level_counts(levels[:1], torch.tensor([[10, 20]])) == [1]


class MedianSource(RandomSource):
    """Every uniform is 0.5 (the median count of each Poisson rate)."""

    def uniform(self, stream, shape=()):
        return torch.full((self.batch_size, *shape), 0.5)

    def subset(self, index):
        return MedianSource(int(index.numel()), self.device)


def test_a_one_valued_gray_image_gets_one_level_and_torchvision_luma():
    """One distinct value: L = 1, so Poisson(k / 255) has median 0 and the noise is -k / 255: it reveals the gray
    level k, which follows torchvision's weights (0.2989, 0.587, 0.114), not BT.601's 0.299."""
    colour = None
    for red, green in itertools.product(range(150), range(0, 40)):
        torchvision = round(255 * np.float32(0.2989 * red / 255 + 0.587 * green / 255))
        bt601 = round(255 * np.float32(0.299 * red / 255 + 0.587 * green / 255))
        if torchvision != bt601:
            colour = (red / 255, green / 255, 0.0)
            break
    assert colour is not None
    image = torch.tensor(colour, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 8, 8).contiguous()
    noisy = add_distinct_poisson_noise(image, MedianSource(1, torch.device('cpu')), 'p', torch.ones(1),
                                       torch.tensor([True]))
    level = round(float((image - noisy)[0, 0, 0, 0]) * 255)
    assert level == round(255 * (0.2989 * colour[0] + 0.587 * colour[1]))
    noise = noisy - image  # gray: one field on every channel
    torch.testing.assert_close(noise[0], noise[0, :1].expand(3, -1, -1), atol=1e-6, rtol=0)


@pytest.mark.parametrize('distinct, levels', [(5, 8), (200, 256)])
def test_poisson_noise_variance_follows_the_level_count(distinct, levels):
    values = torch.linspace(40, 240, distinct).round() / 255
    image = values[torch.arange(256 * 256) % distinct].view(1, 1, 256, 256).expand(1, 3, -1, -1).contiguous()
    noise = add_distinct_poisson_noise(image, keyed(1), 'p', torch.ones(1), torch.tensor([False])) - image
    for value in values[::max(1, distinct // 5)]:
        inside = (image[0] - value).abs() < 1e-6
        # Var(Poisson(L x) / L) = x / L
        assert noise[0][inside].var().item() == pytest.approx(value.item() / levels, rel=0.08)


# ---- resizes: the first with F.interpolate(scale_factor=...), every one by F.interpolate itself
@pytest.mark.parametrize('mode_index, mode', [(1, 'bilinear'), (2, 'bicubic'), (0, 'area')])
def test_scale_factor_grid_is_interpolate_with_scale_factor(mode_index, mode):
    image = photo(64)[:, :, :37, :53].contiguous()
    for scale in (0.15, 0.4273, 1.0, 1.3377):
        options = {} if mode == 'area' else dict(align_corners=False)
        expected = F.interpolate(image, scale_factor=scale, mode=mode, **options)
        out_size = tuple(expected.shape[-2:])
        assert out_size == (math.floor(37 * scale), math.floor(53 * scale))
        arguments = (image, torch.tensor([[37, 53]]), torch.tensor([out_size]), torch.tensor([mode_index]), out_size)
        taps = resize_ragged(*arguments, scales=torch.tensor([scale], dtype=torch.float64))
        assert (taps - expected).abs().max() < 1e-5
        on_public = BasicSRTorchBackend().resize(*arguments, scales=torch.tensor([scale], dtype=torch.float64))
        assert torch.equal(on_public, expected)  # the public op itself
        if mode != 'area' and scale != 1.0:
            sized = F.interpolate(image, size=out_size, mode=mode, **options)
            assert (sized - expected).abs().max() > 0.01  # the two grids differ


def test_only_the_first_resize_uses_the_scale_factor(monkeypatch):
    calls = []
    for backend_class in (TorchBackend, BasicSRTorchBackend):

        def recording(self, batch, sizes, out_sizes, modes, canvas, scales=None, original=backend_class.resize):
            calls.append(scales is not None)
            return original(self, batch, sizes, out_sizes, modes, canvas, scales)

        monkeypatch.setattr(backend_class, 'resize', recording)
    SecondOrderDegradation(ops='basicsr')(photo(32).expand(2, -1, -1, -1).contiguous(), keyed(2))
    assert calls == [True, False, False]
    calls.clear()
    SecondOrderDegradation(ops='libjpeg', backend='torch')(photo(32).expand(2, -1, -1, -1).contiguous(), keyed(2))
    assert calls == [False, False, False]


# ---- the preset in the engine
def test_basicsr_runs_on_torch_and_refuses_what_it_cannot_do():
    engine = SecondOrderDegradation(ops='basicsr')
    assert isinstance(engine.backend_for(torch.device('cpu')), BasicSRTorchBackend)
    assert engine.backend_for(torch.device('cpu')).ops == 'basicsr'
    assert engine.to_dict()['ops'] == 'basicsr' and SecondOrderDegradation().to_dict()['ops'] == 'libjpeg'
    for keys, message in ((dict(backend='opencv'), "implements ops='libjpeg' only"),
                          (dict(jpeg_range2=[30, 100]), "'jpeg_range2' must stay below 100"),
                          (dict(ops='diffjpeg'), "'ops' must be one of ['libjpeg', 'basicsr']")):
        with pytest.raises(ValueError, match=message.replace('[', r'\[').replace(']', r'\]')) as error:
            SecondOrderDegradation(**dict(dict(ops='basicsr'), **keys))
        assert '\n' not in str(error.value)


def test_public_rass_is_another_name_of_basicsr():
    alias = SecondOrderDegradation(ops='public_rass')
    assert alias.ops == 'basicsr' and alias.to_dict() == SecondOrderDegradation(ops='basicsr').to_dict()
    assert isinstance(alias.backend_for(torch.device('cpu')), BasicSRTorchBackend)
    images = photo(40).expand(3, -1, -1, -1).contiguous()
    assert torch.equal(alias(images, keyed(3)), SecondOrderDegradation(ops='basicsr')(images, keyed(3)))
    with pytest.raises(ValueError, match="implements ops='libjpeg' only, got ops='public_rass'"):
        SecondOrderDegradation(ops='public_rass', backend='opencv')


def test_basicsr_keyed_output_is_independent_of_the_batch():
    torch.manual_seed(0)
    images = (torch.rand(5, 3, 40, 48) * 255).round() / 255
    names = [f'img_{index}.jpg' for index in range(5)]
    engine = SecondOrderDegradation(ops='basicsr')
    full = engine(images, KeyedRandomSource.from_identities(names, 2))
    for order in ([4, 1], [3], [2, 0, 4, 1, 3]):
        assert torch.equal(engine(images[order], KeyedRandomSource.from_identities([names[i] for i in order], 2)),
                           full[order])


def test_same_draws_give_harsher_images_with_the_public_ops():
    clean = photo(96).expand(24, -1, -1, -1).contiguous()
    libjpeg = SecondOrderDegradation(backend='torch')(clean, keyed(24, seed=1))
    public = SecondOrderDegradation(ops='basicsr')(clean, keyed(24, seed=1))

    def psnr(images):
        return 10 * torch.log10(1 / ((images - clean)**2).mean(dim=(1, 2, 3)))

    difference = psnr(public) - psnr(libjpeg)
    assert -1.0 < difference.mean() < -0.1  # dB: the issue measured about -0.4
    assert (difference < 0).float().mean() > 0.7
