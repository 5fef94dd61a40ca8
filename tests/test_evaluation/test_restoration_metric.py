import math
import sys

import cv2
import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.structures import PixelData
from mmseg.registry import METRICS
from mmseg.structures import SegDataSample
from safetensors.torch import save_file
from skimage import color, data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from rass_mmseg.evaluation import RestorationMetric
from rass_mmseg.evaluation.metrics.restoration_metric import rgb_to_y
from rass_mmseg.models.utils import build_lpips
from rass_mmseg.models.utils.lpips_network import lpips_state_dict
from tests.utils import repo_path

KEYS = {'psnr_rgb', 'ssim_rgb', 'psnr_y', 'ssim_y'}
# Observed |this metric - scikit-image| on 8-bit images, both in float64: PSNR <= 2.1e-6 dB (torchmetrics turns
# ln into log10 with a float32 constant, 10 / ln(10)), SSIM < 1e-14.
PSNR_TOL, SSIM_TOL = 1e-5, 1e-9


def real_image(name: str, height: int = 96, width: int = 120) -> np.ndarray:
    """A crop of an image shipped with scikit-image, H x W x 3 float64 in [0, 1] (on the 8-bit grid)."""
    image = {'astronaut': data.astronaut()[100:, 150:], 'chelsea': data.chelsea()[50:, 100:]}[name]
    return image[:height, :width].astype(np.float64) / 255.0


def distort(image: np.ndarray, sigma: float, seed: int, grid: bool = True) -> np.ndarray:
    """Gaussian noise, clipped to [0, 1] and (``grid``) rounded to 8 bit."""
    noisy = np.clip(image + np.random.default_rng(seed).normal(0, sigma, image.shape), 0, 1)
    return np.round(noisy * 255) / 255 if grid else noisy


def chw(image: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(dtype)


def sample(restored, gt, lq=None, img_shape=None, pad: int = 0) -> dict:
    """A data sample as mmengine's evaluator hands it to metrics (``SegDataSample.to_dict()``)."""
    restored, gt = chw(restored), chw(gt)
    img_shape = img_shape or tuple(gt.shape[1:])
    if pad:  # padded like a batch: different garbage in the two images
        restored = torch.nn.functional.pad(restored, (0, pad, 0, pad), value=1.0)
        gt = torch.nn.functional.pad(gt, (0, pad, 0, pad), value=0.0)
    data_sample = SegDataSample(metainfo=dict(img_shape=img_shape, ori_shape=img_shape))
    data_sample.restored_img = PixelData(data=restored)
    data_sample.gt_hq_img = PixelData(data=gt)
    if lq is not None:
        data_sample.lq_img = PixelData(data=chw(np.round(lq * 255), torch.uint8))
    return data_sample.to_dict()


def skimage_metrics(pred: np.ndarray, gt: np.ndarray, border: int = 0) -> dict:
    """PSNR/SSIM by scikit-image with torchmetrics' (and mmagic's) SSIM settings."""
    values = {}
    for channel in ('rgb', 'y'):
        x, y = (pred, gt) if channel == 'rgb' else (color.rgb2ycbcr(pred)[..., 0] / 255,
                                                    color.rgb2ycbcr(gt)[..., 0] / 255)
        if border:
            x, y = x[border:-border, border:-border], y[border:-border, border:-border]
        values[f'psnr_{channel}'] = peak_signal_noise_ratio(y, x, data_range=1)
        values[f'ssim_{channel}'] = structural_similarity(x, y, gaussian_weights=True, sigma=1.5, data_range=1,
                                                          use_sample_covariance=False,
                                                          channel_axis=-1 if channel == 'rgb' else None)
    return values


def evaluate(metric: RestorationMetric, samples: list) -> dict:
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def assert_matches(result: dict, expected: dict, prefix: str = '') -> None:
    for key, value in expected.items():
        tolerance = PSNR_TOL if key.startswith('psnr') else SSIM_TOL
        assert result[prefix + key] == pytest.approx(value, abs=tolerance, rel=0), prefix + key


def mean_of(dicts: list) -> dict:
    return {key: float(np.mean([d[key] for d in dicts])) for key in dicts[0]}


def test_matches_scikit_image_on_real_images_averaged_per_image():
    gts = [real_image('astronaut'), real_image('chelsea')]
    restored = [distort(gt, sigma, seed) for gt, sigma, seed in zip(gts, (0.03, 0.1), (0, 1))]
    result = evaluate(RestorationMetric(), [sample(r, g) for r, g in zip(restored, gts)])
    assert set(result) == KEYS
    per_image = [skimage_metrics(r, g) for r, g in zip(restored, gts)]
    assert_matches(result, mean_of(per_image))
    # per-image averaging, not a pooled MSE: differs from the PSNR of both images' mean squared error
    pooled = -10 * math.log10(np.mean([np.mean((r - g) ** 2) for r, g in zip(restored, gts)]))
    assert abs(result['psnr_rgb'] - pooled) > 0.5


def test_y_channel_is_bt601_as_scikit_image_and_mmcv():
    image = real_image('astronaut')
    y = rgb_to_y(chw(image, torch.float64)[None])[0, 0].numpy()
    np.testing.assert_allclose(y, color.rgb2ycbcr(image)[..., 0] / 255, rtol=0, atol=1e-12)
    # mmcv's function is the one mmagic's PSNR/SSIM use for convert_to='Y' (float32 there)
    np.testing.assert_allclose(y, mmcv.rgb2ycbcr(image.astype(np.float32), y_only=True), rtol=0, atol=1e-6)
    assert 16 / 255 - 1e-12 <= y.min() and y.max() <= 235 / 255 + 1e-12


def test_images_of_different_sizes_in_one_batch():
    gts = [real_image('astronaut', 64, 80), real_image('chelsea', 48, 40), real_image('chelsea', 64, 80)]
    restored = [distort(gt, 0.05, seed) for seed, gt in enumerate(gts)]
    result = evaluate(RestorationMetric(), [sample(r, g) for r, g in zip(restored, gts)])
    assert_matches(result, mean_of([skimage_metrics(r, g) for r, g in zip(restored, gts)]))


def test_restored_images_are_clamped_and_rounded_to_8_bit_unless_quantize_is_false():
    gt = real_image('astronaut')
    restored = distort(gt, 0.05, 0, grid=False) + 0.002  # off the 8-bit grid, a little above 1 in places
    assert restored.max() > 1
    clamped = np.clip(restored, 0, 1)
    quantized = evaluate(RestorationMetric(), [sample(restored, gt)])
    assert_matches(quantized, skimage_metrics(np.round(clamped * 255) / 255, gt))
    exact = evaluate(RestorationMetric(quantize=False), [sample(restored, gt)])
    # float32 storage of the unrounded restored image: observed PSNR <= 2.1e-6 dB, SSIM <= 6e-9
    for key, value in skimage_metrics(clamped, gt).items():
        assert exact[key] == pytest.approx(value, abs=1e-5, rel=0), key
    offset = np.minimum(gt + 0.4 / 255, 1.0)  # rounds back to gt: lossless once saved as 8 bit
    assert evaluate(RestorationMetric(), [sample(offset, gt)])['psnr_rgb'] == math.inf
    unrounded = evaluate(RestorationMetric(quantize=False), [sample(offset, gt)])['psnr_rgb']
    assert unrounded == pytest.approx(peak_signal_noise_ratio(gt, offset, data_range=1), abs=1e-4)
    assert 50 < unrounded < 60


def test_padding_is_cropped_to_img_shape():
    gt = real_image('chelsea', 64, 72)
    restored = distort(gt, 0.05, 2)
    result = evaluate(RestorationMetric(), [sample(restored, gt, pad=16)])
    assert_matches(result, skimage_metrics(restored, gt))
    uncropped = evaluate(RestorationMetric(), [sample(restored, gt, pad=16, img_shape=(80, 88))])
    assert uncropped['psnr_rgb'] < result['psnr_rgb'] - 1  # the padding (ones vs zeros) would count


def test_crop_border():
    gt = real_image('astronaut')
    restored = gt.copy()
    restored[:4] = distort(gt[:4], 0.3, 3)  # errors only in the top 4 rows
    restored[4:] = distort(gt[4:], 0.02, 4)
    result = evaluate(RestorationMetric(crop_border=4), [sample(restored, gt)])
    assert_matches(result, skimage_metrics(restored, gt, border=4))
    assert result['psnr_rgb'] > evaluate(RestorationMetric(), [sample(restored, gt)])['psnr_rgb'] + 1


def test_lq_input_is_reported_with_the_lq_prefix():
    gts = [real_image('astronaut'), real_image('chelsea')]
    lqs = [distort(gt, 0.15, seed) for seed, gt in enumerate(gts)]
    restored = [distort(gt, 0.03, seed + 10) for seed, gt in enumerate(gts)]
    result = evaluate(RestorationMetric(), [sample(r, g, lq=q) for r, g, q in zip(restored, gts, lqs)])
    assert set(result) == KEYS | {'lq_' + key for key in KEYS}
    assert_matches(result, mean_of([skimage_metrics(q, g) for q, g in zip(lqs, gts)]), prefix='lq_')
    assert_matches(result, mean_of([skimage_metrics(r, g) for r, g in zip(restored, gts)]))
    assert result['psnr_y'] > result['lq_psnr_y'] + 5


def test_metrics_and_channels_options_and_registry():
    metric = METRICS.build(dict(type='RestorationMetric', metrics=['ssim'], channels=['y']))
    gt = real_image('astronaut')
    result = evaluate(metric, [sample(distort(gt, 0.05, 0), gt)])
    assert set(result) == {'ssim_y'}
    assert METRICS.build(dict(type='RestorationMetric', metrics=[], niqe=True)).niqe is not None
    for bad in (dict(metrics=['mse']), dict(channels=['lab']), dict(metrics=[]), dict(crop_border=-1)):
        with pytest.raises(ValueError, match='RestorationMetric'):
            RestorationMetric(**bad)


def test_runs_in_mmengine_evaluator_on_seg_data_samples():
    """The path of mmseg's Runner and tools/test.py: SegDataSample objects in, metrics out."""
    evaluator = Evaluator(dict(type='RestorationMetric', metrics=['psnr'], channels=['rgb']))
    gt = real_image('chelsea', 32, 48)
    restored = distort(gt, 0.05, 5)
    data_sample = SegDataSample(metainfo=dict(img_shape=(32, 48)))
    data_sample.restored_img = PixelData(data=chw(restored))
    data_sample.gt_hq_img = PixelData(data=chw(gt))
    evaluator.process([data_sample], {})
    result = evaluator.evaluate(1)
    assert result == {'psnr_rgb': pytest.approx(peak_signal_noise_ratio(gt, restored, data_range=1), abs=PSNR_TOL)}


@pytest.mark.parametrize('missing', ['gt_hq_img', 'restored_img', 'img_shape'])
def test_a_missing_field_is_named_in_a_one_line_error(missing):
    gt = real_image('astronaut', 32, 32)
    data_sample = sample(gt, gt)
    del data_sample[missing]
    with pytest.raises(ValueError, match=f"no '{missing}'") as error:
        RestorationMetric().process({}, [data_sample])
    assert '\n' not in str(error.value)


def test_empty_dataset_partial_lq_and_shape_errors():
    with pytest.raises(ValueError, match='no samples'):
        RestorationMetric().evaluate(0)

    gt = real_image('astronaut', 32, 32)
    metric = RestorationMetric()
    metric.process({}, [sample(gt, gt, lq=gt), sample(gt, gt)])
    with pytest.raises(ValueError, match='lq_img must be given for all samples or none'):
        metric.evaluate(2)

    with pytest.raises(ValueError, match=r'lq_img \(3, 16, 16\)'):
        RestorationMetric().process({}, [sample(gt, gt, lq=gt[:16, :16])])
    with pytest.raises(ValueError, match='img_shape'):
        RestorationMetric().process({}, [sample(gt, gt, img_shape=(40, 32))])
    with pytest.raises(ValueError, match='under the 11 pixels'):
        RestorationMetric(crop_border=11).process({}, [sample(gt, gt)])


def test_identical_images_give_infinite_psnr_and_unit_ssim():
    gt = real_image('astronaut', 32, 32)
    result = evaluate(RestorationMetric(), [sample(gt, gt)])
    assert result['psnr_rgb'] == math.inf and result['ssim_y'] == pytest.approx(1.0, abs=1e-12)


def test_lpips_only_with_weights(tmp_path):
    gt = real_image('astronaut', 64, 64)
    restored, lq = distort(gt, 0.03, 0), distort(gt, 0.2, 1)
    assert 'lpips' not in evaluate(RestorationMetric(), [sample(restored, gt, lq=lq)])

    torch.manual_seed(0)
    network = build_lpips('squeeze')
    weights = str(tmp_path / 'lpips_squeeze.safetensors')
    save_file(lpips_state_dict(network), weights)
    metric = RestorationMetric(lpips_weights=weights, lpips_net='squeeze', metrics=['psnr'], channels=['y'])
    result = evaluate(metric, [sample(restored, gt, lq=lq, pad=8)])
    assert set(result) == {'psnr_y', 'lpips', 'lq_psnr_y', 'lq_lpips'}
    with torch.no_grad():
        expected = network(torch.stack([chw(restored), chw(lq)]), torch.stack([chw(gt), chw(gt)]))
    assert result['lpips'] == pytest.approx(expected[0].item(), abs=1e-6)
    assert result['lq_lpips'] == pytest.approx(expected[1].item(), abs=1e-6)
    assert 0 < result['lpips'] < result['lq_lpips']

    with pytest.raises(FileNotFoundError, match='missing.safetensors'):  # fails at construction, not mid-test
        RestorationMetric(lpips_weights=str(tmp_path / 'missing.safetensors'))


def degrade(image: np.ndarray, kind: str) -> np.ndarray:
    """Noise, a Gaussian blur (sigma 2) or JPEG at quality 30, on the 8-bit grid."""
    if kind == 'noise':
        return distort(image, 0.05, 0)
    if kind == 'blur':
        return np.round(cv2.GaussianBlur(image, (0, 0), 2.0) * 255) / 255
    _, encoded = cv2.imencode('.jpg', np.round(image * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 30])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR) / 255.0


# mmagic, the independent oracle: observed |this metric - mmagic| <= 3.9e-6 dB PSNR (mmagic's float32 images),
# SSIM <= 8.1e-9 on Y (float32 luma) and <= 5e-15 on RGB.
MMAGIC_PSNR_TOL, MMAGIC_SSIM_TOL = {'rgb': 1e-5, 'y': 1e-5}, {'rgb': 1e-12, 'y': 5e-8}


@pytest.mark.parametrize('crop_border', [0, 4])
@pytest.mark.parametrize('name', ['astronaut', 'chelsea'])
def test_psnr_and_ssim_equal_mmagic_functions(name, crop_border):
    from mmagic.evaluation.metrics import psnr, ssim  # importable with the pinned stack: compat.mmagic_imports

    gt = real_image(name)
    for kind in ('noise', 'blur', 'jpeg'):
        restored = degrade(gt, kind)
        result = evaluate(RestorationMetric(crop_border=crop_border), [sample(restored, gt)])
        for channel, convert_to in (('rgb', None), ('y', 'Y')):  # mmagic works on [0, 255]
            kwargs = dict(crop_border=crop_border, input_order='HWC', convert_to=convert_to, channel_order='rgb')
            expected_psnr, expected_ssim = psnr(gt * 255, restored * 255, **kwargs), ssim(gt * 255, restored * 255,
                                                                                          **kwargs)
            assert result[f'psnr_{channel}'] == pytest.approx(expected_psnr, abs=MMAGIC_PSNR_TOL[channel], rel=0), kind
            assert result[f'ssim_{channel}'] == pytest.approx(expected_ssim, abs=MMAGIC_SSIM_TOL[channel], rel=0), kind


def test_niqe_is_mmagics_niqe_of_the_gray_image_and_rises_with_blur():
    from mmagic.evaluation.metrics import niqe

    def mmagic_niqe(image: np.ndarray, crop_border: int = 0) -> float:  # mmagic's NIQE metric default: gray
        return float(niqe(image[..., ::-1] * 255, crop_border, input_order='HWC', convert_to='gray'))

    gts = [real_image('astronaut', 192, 288), real_image('chelsea', 192, 288)]
    blurred = [degrade(gt, 'blur') for gt in gts]
    noisy = [distort(gt, 0.05, seed) for seed, gt in enumerate(gts)]
    metric = RestorationMetric(metrics=['psnr'], channels=['y'], niqe=True)
    result = evaluate(metric, [sample(b, g, lq=n) for b, g, n in zip(blurred, gts, noisy)])
    assert set(result) == {'psnr_y', 'niqe', 'lq_psnr_y', 'lq_niqe'}
    assert result['niqe'] == pytest.approx(np.mean([mmagic_niqe(b) for b in blurred]), abs=1e-9, rel=0)
    assert result['lq_niqe'] == pytest.approx(np.mean([mmagic_niqe(n) for n in noisy]), abs=1e-9, rel=0)
    # a property of NIQE itself (lower is more natural): blurring or noising a photo raises it
    for gt, blur, noise in zip(gts, blurred, noisy):
        clean = evaluate(RestorationMetric(metrics=[], niqe=True), [sample(gt, gt)])['niqe']
        assert clean == pytest.approx(mmagic_niqe(gt), abs=1e-9, rel=0)
        assert clean + 2 < mmagic_niqe(blur) and clean + 2 < mmagic_niqe(noise)

    cropped = evaluate(RestorationMetric(metrics=[], niqe=True, crop_border=8), [sample(gts[0], gts[0], pad=8)])
    assert cropped['niqe'] == pytest.approx(mmagic_niqe(gts[0], crop_border=8), abs=1e-9, rel=0)
    assert 'niqe' not in evaluate(RestorationMetric(), [sample(gts[0], gts[0])])


def test_niqe_refuses_images_under_two_blocks_in_one_line():
    gt = real_image('astronaut', 128, 128)  # the tiny configs' size: one 96 x 96 block, no covariance to fit
    with pytest.raises(ValueError, match=r'NIQE needs two 96 x 96 blocks or more.*\(128, 128\)') as error:
        RestorationMetric(niqe=True).process({}, [sample(gt, gt)])
    assert '\n' not in str(error.value)
    metric = RestorationMetric(niqe=True, crop_border=1)  # 96 x 192 is enough, minus the border it is not
    with pytest.raises(ValueError, match=r'leave \(94, 190\)'):
        metric.process({}, [sample(real_image('astronaut', 96, 192), real_image('astronaut', 96, 192))])
    assert 'niqe' in evaluate(RestorationMetric(niqe=True), [sample(*[real_image('chelsea', 96, 192)] * 2)])


def test_niqe_without_mmagic_fails_at_construction_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, 'mmagic.evaluation.metrics.niqe', None)  # as if mmagic were not installed
    with pytest.raises(ImportError, match=r'RestorationMetric\(niqe=True\) computes NIQE with mmagic') as error:
        RestorationMetric(niqe=True)
    assert '\n' not in str(error.value)
    RestorationMetric()  # PSNR/SSIM/LPIPS never need mmagic


def test_paper_scr_config_reports_niqe_at_test_time_only():
    cfg = Config.fromfile(repo_path('configs', 'scr', 'scr_sd21-base_4xb4-100k_ade20k-512x512.py'))
    assert cfg.test_evaluator.type == 'RestorationMetric' and cfg.test_evaluator.niqe is True
    assert 'niqe' not in cfg.val_evaluator  # ~0.3 s per 512 x 512 image: not at every validation
    assert {key: value for key, value in cfg.test_evaluator.items() if key != 'niqe'} == cfg.val_evaluator
    for tiny in ('scr_tiny-sd_1xb4-300it_textures-128x128.py', 'scr_tiny-sd-textures_1xb4-300it_textures-128x128.py'):
        assert 'niqe' not in Config.fromfile(repo_path('configs', 'scr', tiny)).test_evaluator  # 128 x 128: too small
