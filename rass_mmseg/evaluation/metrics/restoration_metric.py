"""Restoration metrics (PSNR, SSIM, LPIPS, NIQE) of restored images, for mmseg's evaluator.

mmagic's PSNR/SSIM metrics need mmagic's own evaluator and data samples; this metric reads mmseg data samples,
so ``val_evaluator = dict(type='RestorationMetric')`` works with mmseg's Runner and ``tools/test.py``. The
values follow mmagic/BasicSR: per image, then averaged over the dataset; restored images rounded to 8 bit
(``quantize``); the Y channel of ITU-R BT.601; SSIM of Wang et al. (2004) with an 11 x 11 Gaussian window
(sigma 1.5) over the valid region (see :func:`_ssim`), averaged over channels. PSNR and SSIM are torchmetrics'
functional ones, batched over images of equal size, in float64 on the images' device; tests compare them with
mmagic's ``psnr``/``ssim``. NIQE, a no-reference score (lower is better), is mmagic's ``niqe`` function itself.
"""
from collections import defaultdict
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.structures import BaseDataElement
from mmseg.registry import METRICS
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from rass_mmseg.models.utils.lpips_network import build_lpips

__all__ = ['RestorationMetric', 'rgb_to_y']

_METRICS = ('psnr', 'ssim')
_CHANNELS = ('rgb', 'y')
_SSIM_WINDOW = 11
_NIQE_BLOCK = 96  # mmagic's (and the MATLAB reference's) block side; the model fit needs two blocks or more


def rgb_to_y(images: Tensor) -> Tensor:
    """ITU-R BT.601 luma of RGB images in [0, 1], as mmagic/BasicSR (``bgr2ycbcr(y_only=True)``) and MATLAB.

    Args:
        images: (N, 3, H, W) RGB in [0, 1].

    Returns:
        (N, 1, H, W) Y in [16/255, 235/255].
    """
    weights = images.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
    return 16.0 / 255.0 + (images * weights).sum(dim=1, keepdim=True) / 255.0


@METRICS.register_module()
class RestorationMetric(BaseMetric):
    """PSNR and SSIM on RGB and on the Y channel, and LPIPS, of ``restored_img`` against ``gt_hq_img``; NIQE.

    Each data sample (a ``SegDataSample`` or its ``to_dict()``, as mmengine's evaluator passes it) holds
    ``restored_img`` (``PixelData``, float RGB (3, H, W) in [0, 1], possibly padded), ``gt_hq_img`` (float RGB
    (3, H, W) in [0, 1], padded the same way) and the metainfo ``img_shape`` (unpadded height, width): both are
    cropped to ``img_shape``. With ``lq_img`` (uint8 RGB (3, h, w), already cropped to ``img_shape``) the same
    metrics of the input the model saw are reported with an ``lq_`` prefix, so restored and input quality can
    be compared. Result keys: ``psnr_rgb``, ``ssim_rgb``, ``psnr_y``, ``ssim_y``, ``lpips``, ``niqe`` and their
    ``lq_`` versions. PSNR of identical images is ``inf``, as in mmagic.

    The restored image is clamped to [0, 1] and, with ``quantize``, rounded to 8 bit as saved images are (as
    mmagic and BasicSR evaluate). ``quantize`` rounds the ground truth too: read from 8-bit files and stored
    as float32 ``k / 255``, it only loses the float32 error (so identical images give ``inf``, as in mmagic).
    The LQ image (uint8) is used as given.

    NIQE (``niqe=True``; needs mmagic, which ``tools/install/install.sh`` installs) is computed by mmagic 1.2.0's
    ``niqe`` on the grayscale image (``convert_to='gray'``: the official MATLAB code's ``rgb2gray``, mmagic's
    ``NIQE`` metric default), in 96 x 96 blocks after ``crop_border``: images need two blocks or more (e.g.
    96 x 192); the 128 x 128 tiny configs are too small. It costs about 0.3 s per 512 x 512 image on one CPU core.

    Args:
        metrics: Any of ``'psnr'``, ``'ssim'``.
        channels: Any of ``'rgb'``, ``'y'`` (BT.601 luma, :func:`rgb_to_y`).
        crop_border: Pixels left out at each edge for PSNR and SSIM (as mmagic's ``crop_border``; usually the
            super-resolution scale). LPIPS sees the whole image.
        quantize: Round the restored image (and the 8-bit ground truth) to 8 bit before the metrics.
        lpips_weights: Local LPIPS weights file (``tools/model_converters/convert_lpips_weights.py``); LPIPS is
            computed only when it is given.
        lpips_net: LPIPS backbone: ``'vgg'``, ``'alex'`` or ``'squeeze'``.
        niqe: Also report NIQE (``niqe``, and ``lq_niqe`` with ``lq_img``), the no-reference score of the image
            alone.
        collect_device: Device for collecting results across ranks, ``'cpu'`` or ``'gpu'``.
        prefix: Prefix of the result keys (none by default).
        collect_dir: Directory for collecting results across ranks on the CPU.
    """

    default_prefix: Optional[str] = None

    def __init__(self,
                 metrics: Sequence[str] = ('psnr', 'ssim'),
                 channels: Sequence[str] = ('rgb', 'y'),
                 crop_border: int = 0,
                 quantize: bool = True,
                 lpips_weights: Optional[str] = None,
                 lpips_net: str = 'vgg',
                 niqe: bool = False,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        metrics, channels = tuple(metrics), tuple(channels)
        if not metrics and lpips_weights is None and not niqe:
            raise ValueError('RestorationMetric: nothing to compute (empty metrics, no lpips_weights, niqe=False)')
        if not set(metrics) <= set(_METRICS) or len(set(metrics)) != len(metrics):
            raise ValueError(f'RestorationMetric: metrics must be distinct values of {_METRICS}, got {metrics}')
        if metrics and (not channels or not set(channels) <= set(_CHANNELS) or len(set(channels)) != len(channels)):
            raise ValueError(f'RestorationMetric: channels must be distinct values of {_CHANNELS}, got {channels}')
        if crop_border < 0:
            raise ValueError(f'RestorationMetric: crop_border must be >= 0, got {crop_border}')
        self.metrics = metrics
        self.channels = channels
        self.crop_border = int(crop_border)
        self.quantize = quantize
        # Built now, so a wrong path fails before the test loop starts.
        self.lpips = None if lpips_weights is None else build_lpips(lpips_net, weights=lpips_weights)
        self.niqe = _mmagic_niqe() if niqe else None  # imported now, so a missing mmagic fails before the loop

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Compute the per-image metrics of a batch, batched over images of equal size.

        Args:
            data_batch: The batch from the dataloader (unused).
            data_samples: Data samples from the model, as dicts (mmengine's evaluator converts them) or
                ``SegDataSample`` objects.
        """
        images = [self._read_sample(sample) for sample in data_samples]
        groups: Dict[Tuple, List[int]] = defaultdict(list)
        for index, (restored, _, lq) in enumerate(images):
            groups[(tuple(restored.shape), lq is not None)].append(index)
        results: List[dict] = [{} for _ in images]
        with torch.no_grad():
            for (_, has_lq), indices in groups.items():
                gt = torch.stack([images[i][1] for i in indices])
                candidates = [('', torch.stack([images[i][0] for i in indices]))]
                if has_lq:
                    candidates.append(('lq_', torch.stack([images[i][2] for i in indices])))
                for key_prefix, pred in candidates:
                    for key, values in self._compute(pred, gt).items():
                        for i, value in zip(indices, values.tolist()):
                            results[i][key_prefix + key] = value
        self.results.extend(results)

    def _read_sample(self, sample) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """Restored, ground-truth and (optional) LQ image of one sample: float64 (3, h, w), cropped, in [0, 1]."""
        if isinstance(sample, BaseDataElement):
            sample = sample.to_dict()
        for key in ('restored_img', 'gt_hq_img', 'img_shape'):
            if key not in sample:
                raise ValueError(f"RestorationMetric: a data sample has no '{key}' (it has {sorted(sample)})")
        restored, gt = _pixels(sample['restored_img']), _pixels(sample['gt_hq_img'])
        height, width = (int(size) for size in sample['img_shape'][:2])
        if restored.ndim != 3 or restored.shape[0] != 3 or restored.shape != gt.shape:
            raise ValueError(f'RestorationMetric: restored_img {tuple(restored.shape)} and gt_hq_img '
                             f'{tuple(gt.shape)} must both be (3, H, W)')
        if height > restored.shape[1] or width > restored.shape[2]:
            raise ValueError(f'RestorationMetric: img_shape {(height, width)} exceeds the images '
                             f'{tuple(restored.shape[1:])}')
        gt = gt[:, :height, :width].to(device=restored.device, dtype=torch.float64)
        restored = restored[:, :height, :width].to(torch.float64).clamp(0, 1)
        if self.quantize:
            restored, gt = (restored * 255.0).round() / 255.0, (gt * 255.0).round() / 255.0
        lq = None
        if 'lq_img' in sample:
            lq = _pixels(sample['lq_img']).to(restored.device)
            if tuple(lq.shape) != (3, height, width):
                raise ValueError(f'RestorationMetric: lq_img {tuple(lq.shape)} must be (3, {height}, {width}), '
                                 f'the unpadded img_shape')
            lq = lq.to(torch.float64) / 255.0 if lq.dtype == torch.uint8 else lq.to(torch.float64)
        return restored, gt, lq

    def _compute(self, pred: Tensor, gt: Tensor) -> Dict[str, Tensor]:
        """Per-image metrics of ``pred`` against ``gt``, both (N, 3, H, W) float64 in [0, 1]."""
        values = {}
        border = self.crop_border
        for channel in self.channels if self.metrics else ():  # no channel loop for an LPIPS-only metric
            x, y = (pred, gt) if channel == 'rgb' else (rgb_to_y(pred), rgb_to_y(gt))
            if border:
                x, y = x[..., border:-border, border:-border], y[..., border:-border, border:-border]
            smallest = 1 if 'ssim' not in self.metrics else _SSIM_WINDOW
            if min(x.shape[-2:]) < smallest:
                raise ValueError(f'RestorationMetric: images of {tuple(pred.shape[-2:])} minus crop_border '
                                 f'{border} leave {tuple(x.shape[-2:])}, under the {smallest} pixels needed')
            for metric in self.metrics:
                if metric == 'psnr':
                    value = peak_signal_noise_ratio(x, y, data_range=1.0, reduction='none', dim=(1, 2, 3))
                else:
                    value = _ssim(x, y)
                values[f'{metric}_{channel}'] = value
        if self.lpips is not None:
            self.lpips.to(pred.device)
            values['lpips'] = self.lpips(pred.float(), gt.float())
        if self.niqe is not None:
            values['niqe'] = torch.tensor([self._niqe(image) for image in pred], dtype=torch.float64)
        return values

    def _niqe(self, image: Tensor) -> float:
        """mmagic's NIQE of one (3, H, W) RGB image in [0, 1] (given to it as BGR in [0, 255], as it expects)."""
        height, width = (size - 2 * self.crop_border for size in image.shape[-2:])
        if (height // _NIQE_BLOCK) * (width // _NIQE_BLOCK) < 2:
            raise ValueError(f'RestorationMetric: NIQE needs two {_NIQE_BLOCK} x {_NIQE_BLOCK} blocks or more, but '
                             f'images of {tuple(image.shape[-2:])} minus crop_border {self.crop_border} leave '
                             f'{(height, width)}; set niqe=False for images this small')
        bgr = (image.flip(0) * 255.0).permute(1, 2, 0).cpu().numpy()
        return float(self.niqe(bgr, crop_border=self.crop_border, input_order='HWC', convert_to='gray'))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Average the per-image values over the dataset.

        Args:
            results: Per-image dicts from :meth:`process`, gathered from all ranks.

        Returns:
            The mean of each key.
        """
        if not results:
            raise ValueError('RestorationMetric got no samples: the evaluated dataset is empty')
        counts: Dict[str, int] = defaultdict(int)
        for result in results:
            for key in result:
                counts[key] += 1
        partial = {key: count for key, count in counts.items() if count != len(results)}
        if partial:
            raise ValueError(f'RestorationMetric: {partial} of {len(results)} samples have these keys; lq_img must '
                             f'be given for all samples or none')
        return {key: float(sum(result[key] for result in results) / len(results)) for key in counts}


def _ssim(x: Tensor, y: Tensor) -> Tensor:
    """Per-image SSIM over the valid region, where the 11 x 11 window lies inside the image.

    torchmetrics 1.9 averages its SSIM map over the whole image, borders filled by reflection included; the
    reference (Wang et al.'s MATLAB code), mmagic/BasicSR and scikit-image leave out the 5-pixel border where
    the window would leave the image. That border is cropped from torchmetrics' full map here.
    """
    _, ssim_map = structural_similarity_index_measure(x, y, data_range=1.0, reduction='none', return_full_image=True)
    half = _SSIM_WINDOW // 2
    return ssim_map[..., half:-half, half:-half].mean(dim=(1, 2, 3))


def _mmagic_niqe() -> Callable[..., np.ndarray]:
    """mmagic's ``niqe`` function (importable with the pinned stack through ``rass_mmseg.compat.mmagic_imports``)."""
    try:
        from mmagic.evaluation.metrics.niqe import niqe
    except ImportError as error:
        raise ImportError(f'RestorationMetric(niqe=True) computes NIQE with mmagic 1.2.0, which does not import here '
                          f'(tools/install/install.sh installs it): {type(error).__name__}: {error}') from None
    return niqe


def _pixels(value) -> Tensor:
    """The tensor of a ``PixelData``, of its ``to_dict()`` or of a plain tensor."""
    if isinstance(value, dict):
        return value['data']
    return value.data if isinstance(value, BaseDataElement) else value
