"""mmseg data preprocessor that degrades clean batches on the fly (RASS, arXiv 2602.14042, training data).

A thin adapter: the degradation itself is the engine of :mod:`rass_mmseg.degradations`; this class stacks and pads
the batch as mmseg's ``SegDataPreProcessor`` does, picks the random draws (training generator or keyed test-mode
draws) and calls the engine.
"""
from numbers import Number
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.dist import get_rank
from mmengine.structures import PixelData
from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.registry import MODELS
from mmseg.utils import stack_batch

from rass_mmseg.degradations import (
    GeneratorRandomSource,
    KeyedRandomSource,
    RandomSource,
    build_degradation,
    image_identity,
)
from rass_mmseg.models.utils.batch_checks import check_batch_not_empty

__all__ = ['DegradationDataPreProcessor']

#: Values of ``degrade``: which batches are degraded (training only, training and evaluation, none).
DEGRADE_MODES = ('train', 'always', 'never')


@MODELS.register_module()
class DegradationDataPreProcessor(SegDataPreProcessor):
    """:class:`SegDataPreProcessor` that degrades the batch with the Real-ESRGAN second-order pipeline.

    Order of work: cast to the device -> BGR/RGB conversion -> stack and pad (as the parent, see below) ->
    **degrade** -> normalise -> batch augments (training only). The degradation runs on the batch's device with
    per-sample random draws made for the whole batch at once, keeps the image size (scale 1, so labels stay
    aligned and untouched) and returns 8-bit values (multiples of 1/255 before normalisation).

    When to degrade (``degrade``):

    * ``'train'`` (default): training batches only, with fresh draws on every visit from a ``torch.Generator``
      seeded with ``train_seed`` (plus the rank), so a run is reproducible from its seed.
    * ``'always'``: as ``'train'``, and validation/test batches too, each image seeded by ``test_seed`` and its
      identity, the file name of ``data_sample.metainfo['img_path']``. An image then degrades to the same bits
      whatever the batch size, the batch order or the other images (on the CPU): a degraded benchmark (e.g.
      ADE20K-LQ) made on the fly, equal to ``tools/dataset_converters/degrade_dataset.py``'s output for the same image
      and seed.
      An image given as an array (mmseg's ``inference_model`` or ``MMSegInferencer`` with an ``ndarray``) has no
      file name and is refused with a one-line error that says what to do instead.
    * ``'never'``: no degradation (e.g. for ``analysis_tools/benchmark.py``, which runs with ``training=True``).

    The clean batch is kept for models that need the pair (SCR): each data sample gets
    ``data_sample.gt_hq_img = PixelData(data=hq)`` with ``hq`` the clean image as float32 ``(C, H, W)`` in
    [0, 1], in the channel order of ``inputs`` (RGB with ``bgr_to_rgb=True``), after padding. It is set for every
    batch (degraded or not) while ``keep_hq`` is True.

    Padding: the parent pads *normalised* images with ``pad_val``; here padding comes before normalisation, so
    images are padded with ``pad_val * std + mean`` per channel, which normalises to ``pad_val`` as before.

    Args:
        mean: Per-channel mean of the normalisation (``None`` to skip normalisation).
        std: Per-channel standard deviation of the normalisation.
        size: Fixed padding size (training).
        size_divisor: Divisor of the padded size (training).
        pad_val: Padding value of the normalised image.
        seg_pad_val: Padding value of the segmentation map.
        bgr_to_rgb: Convert BGR input (mmseg's loader order) to RGB.
        rgb_to_bgr: Convert RGB input to BGR.
        batch_augments: Batch augmentations (training).
        test_cfg: Padding of validation/test batches (``size`` or ``size_divisor``).
        degrade: ``'train'``, ``'always'`` or ``'never'`` (see above).
        degradation: Keys of :class:`SecondOrderDegradation`; missing keys take the RASS values. ``ops`` picks the
            operations (``'libjpeg'``, default, or ``'basicsr'``, the public RASS code's), ``backend`` where they
            run (``'auto'``: OpenCV for CPU batches with ``ops='libjpeg'``, torch otherwise).
        train_seed: Seed of the training draws; ``None`` takes ``torch.initial_seed()``, the seed mmengine's
            ``randomness=dict(seed=...)`` has set by then (no random number is consumed).
        test_seed: Seed of the test-mode draws (the benchmark seed).
        keep_hq: Attach ``gt_hq_img`` to the data samples. Degraded evaluation batches (``degrade='always'``)
            also get ``data_sample.lq_img`` (uint8 RGB, C x H x W), the image the model saw, which
            ``SideBySideSegVisualizer`` draws for ``--show-dir``.
    """

    def __init__(self,
                 mean: Optional[Sequence[Number]] = None,
                 std: Optional[Sequence[Number]] = None,
                 size: Optional[tuple] = None,
                 size_divisor: Optional[int] = None,
                 pad_val: Number = 0,
                 seg_pad_val: Number = 255,
                 bgr_to_rgb: bool = False,
                 rgb_to_bgr: bool = False,
                 batch_augments: Optional[List[dict]] = None,
                 test_cfg: Optional[dict] = None,
                 degrade: str = 'train',
                 degradation: Optional[Dict[str, Any]] = None,
                 train_seed: Optional[int] = None,
                 test_seed: int = 0,
                 keep_hq: bool = True) -> None:
        super().__init__(mean=mean, std=std, size=size, size_divisor=size_divisor, pad_val=pad_val,
                         seg_pad_val=seg_pad_val, bgr_to_rgb=bgr_to_rgb, rgb_to_bgr=rgb_to_bgr,
                         batch_augments=batch_augments, test_cfg=test_cfg)
        if degrade not in DEGRADE_MODES:
            raise ValueError(f'degrade must be one of {list(DEGRADE_MODES)}, got {degrade!r}')
        self.degrade = degrade
        self.degradation = build_degradation(degradation)
        if train_seed is None:
            # The run's seed (mmengine seeds torch before building the model). Reading it consumes no random
            # numbers, so a model's random initialisation does not depend on which preprocessor it has.
            train_seed = torch.initial_seed() % 2**62
        self.train_seed = int(train_seed)
        self.test_seed = int(test_seed)
        self.keep_hq = keep_hq
        # After the optional conversion the batch is RGB exactly when bgr_to_rgb is set (the loader gives BGR).
        self.inputs_are_rgb = bgr_to_rgb
        self._generators: Dict[str, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        """The training generator of ``device``, seeded with ``train_seed`` and the rank on first use."""
        key = str(device)
        if key not in self._generators:
            generator = torch.Generator(device=device)
            generator.manual_seed((self.train_seed + 1_000_003 * get_rank()) % 2**63)
            self._generators[key] = generator
        return self._generators[key]

    def _random_source(self, batch_size: int, device: torch.device, training: bool,
                       data_samples: Optional[list]) -> Optional[RandomSource]:
        """The draws for this batch, or ``None`` when it is not degraded."""
        if self.degrade == 'never' or (not training and self.degrade != 'always'):
            return None
        if training:
            return GeneratorRandomSource(self._generator(device), batch_size, device)
        identities = []
        for index, data_sample in enumerate(data_samples or [None] * batch_size):
            img_path = None if data_sample is None else data_sample.metainfo.get('img_path')
            if img_path is None:
                raise ValueError(f"degrade='always' seeds each image's degradation from its file name "
                                 f"(data_sample.metainfo['img_path']), which sample {index} of the batch lacks (an "
                                 'image given as an array has none): pass the image file instead, or set '
                                 "model.data_preprocessor.degrade='never' to use the image as it is")
            identities.append(image_identity(img_path))
        return KeyedRandomSource.from_identities(identities, self.test_seed, device)

    def _raw_pad_values(self, channels: int, device: torch.device) -> torch.Tensor:
        """Per-channel padding value before normalisation: ``pad_val * std + mean``, shape ``(C, 1, 1)``."""
        pad = torch.full((channels, 1, 1), float(self.pad_val), device=device)
        if self._enable_normalize:
            pad = pad * self.std.to(device) + self.mean.to(device)
        return pad

    def _stack(self, inputs: List[torch.Tensor], data_samples: Optional[list],
               training: bool) -> Tuple[torch.Tensor, Optional[list]]:
        """Stack (and pad) un-normalised images exactly as the parent does with normalised ones."""
        raw_pad = self._raw_pad_values(inputs[0].shape[0], inputs[0].device)
        uniform_pad = bool((raw_pad == raw_pad.flatten()[0]).all())
        pad_val = float(raw_pad.flatten()[0])
        if training:
            if data_samples is None:
                raise ValueError('DegradationDataPreProcessor needs data_samples in training mode')
            batch, data_samples = stack_batch(inputs=inputs, data_samples=data_samples, size=self.size,
                                              size_divisor=self.size_divisor, pad_val=pad_val,
                                              seg_pad_val=self.seg_pad_val)
        else:
            shapes = {tuple(image.shape[1:]) for image in inputs}
            if len(shapes) != 1:
                raise ValueError(f'validation/test images of one batch must share their size, got {sorted(shapes)}')
            if self.test_cfg:
                batch, padded_samples = stack_batch(inputs=inputs, size=self.test_cfg.get('size', None),
                                                    size_divisor=self.test_cfg.get('size_divisor', None),
                                                    pad_val=pad_val, seg_pad_val=self.seg_pad_val)
                for data_sample, pad_info in zip(data_samples or [], padded_samples):
                    data_sample.set_metainfo({**pad_info})
            else:
                batch = torch.stack(inputs, dim=0)
        if not uniform_pad:
            batch = self._fill_padding(batch, inputs, raw_pad)
        return batch, data_samples

    @staticmethod
    def _fill_padding(batch: torch.Tensor, inputs: List[torch.Tensor], raw_pad: torch.Tensor) -> torch.Tensor:
        """Set the bottom/right padding of each image to the per-channel ``raw_pad``."""
        sizes = torch.tensor([image.shape[1:] for image in inputs], device=batch.device)
        rows = torch.arange(batch.shape[2], device=batch.device).view(1, -1, 1)
        columns = torch.arange(batch.shape[3], device=batch.device).view(1, 1, -1)
        inside = (rows < sizes[:, 0].view(-1, 1, 1)) & (columns < sizes[:, 1].view(-1, 1, 1))
        return torch.where(inside.unsqueeze(1), batch, raw_pad.unsqueeze(0))

    def _degrade(self, hq: torch.Tensor, random: RandomSource) -> torch.Tensor:
        """Degrade a ``[0, 1]`` batch in the channel order of ``inputs``; the engine itself works on RGB."""
        if self.inputs_are_rgb:
            return self.degradation(hq, random)
        return self.degradation(hq.flip(1), random).flip(1)

    @staticmethod
    def _keep_lq(batch: torch.Tensor, data_samples: list) -> None:
        """Store each degraded evaluation image as ``data_sample.lq_img`` (uint8 RGB, C x H x W, padding cropped)
        so ``--show-dir`` can draw the image the model saw."""
        for index, data_sample in enumerate(data_samples):
            height, width = data_sample.metainfo.get('img_shape', batch.shape[-2:])
            lq = batch[index, :, :height, :width].round().clamp(0, 255).to(torch.uint8)
            data_sample.lq_img = PixelData(data=lq)

    def forward(self, data: dict, training: bool = False) -> Dict[str, Any]:
        """Stack, pad, degrade (see the class docstring) and normalise a batch.

        Args:
            data: Data from the dataloader: ``inputs`` (list of ``(C, H, W)`` uint8 tensors) and
                ``data_samples``.
            training: Whether the batch is a training batch.

        Returns:
            ``dict(inputs=(B, C, H, W) float tensor, data_samples=list)``.

        Raises:
            ValueError: The batch is empty.
        """
        check_batch_not_empty(data.get('inputs'), type(self).__name__)
        data = self.cast_data(data)  # type: ignore
        inputs = data['inputs']
        data_samples = data.get('data_samples', None)
        if self.channel_conversion and inputs[0].size(0) == 3:
            inputs = [image[[2, 1, 0], ...] for image in inputs]
        inputs = [image.float() for image in inputs]
        batch, data_samples = self._stack(inputs, data_samples, training)

        random = self._random_source(batch.shape[0], batch.device, training, data_samples)
        if random is not None or (self.keep_hq and data_samples is not None):
            hq = batch / 255.0
            if self.keep_hq and data_samples is not None:
                for index, data_sample in enumerate(data_samples):
                    data_sample.gt_hq_img = PixelData(data=hq[index])
            if random is not None:
                batch = self._degrade(hq, random) * 255.0
                if not training and data_samples is not None:
                    self._keep_lq(batch, data_samples)

        if self._enable_normalize:
            batch = (batch - self.mean) / self.std
        if training and self.batch_augments is not None:
            batch, data_samples = self.batch_augments(batch, data_samples)
        return dict(inputs=batch, data_samples=data_samples)
