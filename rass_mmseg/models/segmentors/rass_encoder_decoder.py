"""The RASS segmentor: mmseg's EncoderDecoder plus what it cannot do for a RASS backbone and any head."""
import inspect
import math
from typing import List, Optional, Tuple

import torch
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, OptMultiConfig, OptSampleList, SampleList
from torch import Tensor

from ..utils.batch_checks import check_batch_not_empty, check_label_range, refuse_empty_batches
from .model_pretrained import refuse_model_pretrained

__all__ = ['RASSEncoderDecoder']


@MODELS.register_module()
class RASSEncoderDecoder(EncoderDecoder):
    """mmseg's ``EncoderDecoder`` for :class:`~rass_mmseg.models.backbones.RASSBackbone` with any mmseg decode head.

    The backbone owns its prompt, so mmseg's plain ``EncoderDecoder`` runs it too; this subclass adds:

    - a one-line error at build time when the decode head's ``in_channels`` do not fit the neck's outputs;
    - ``mode='tensor'`` (``_forward``) for heads whose ``forward`` needs data samples (``Mask2FormerHead``): it
      returns their semantic logits instead of failing;
    - ``test_cfg=dict(mode='slide_features')``, the public RASS code's test mode: the backbone and the neck run on
      square windows (side ``crop_size``, default the image's short side; step ``stride``, default the window side,
      the last window shifted back inside the image), the features of each output stride are placed at their
      window's position (floor of the pixel offset / stride) and averaged where windows overlap, and the head runs
      once on the whole feature map. With ``pad_to_multiple`` the image is first padded at its bottom and right to
      a multiple of it with ``pad_value`` (in the backbone's [-1, 1] image range; -1 is black), the windows slide
      over the padded image, the head's output is sized to it and cropped back: the public code's test geometry
      (detectron2 pads with zeros to ``SIZE_DIVISIBILITY=8`` before its backbone maps pixels to [-1, 1]). mmseg's
      ``'slide'`` instead runs the whole model per 512 crop and averages logits; ``'whole'`` runs it once on the
      image;
    - one-line errors for ``model.pretrained`` (the backbone's own ``pretrained`` names the Stable Diffusion
      folder), for an empty batch (at the data preprocessor, whichever it is, and at ``forward``), and for
      ground-truth labels outside ``0..num_classes-1`` and the head's ``ignore_index`` in ``loss`` and ``predict``
      (naming the label file; without it training fails with ``Target 200 is out of bounds`` and ``IoUMetric`` drops
      such pixels silently).

    Everything else (``loss``, ``predict``, whole/slide inference from ``test_cfg``) is mmseg's ``EncoderDecoder``.

    Args:
        backbone: Config of a backbone (``RASSBackbone``).
        decode_head: Config of any mmseg decode head.
        neck: Optional neck config, e.g. ``FeatureProjection``.
        auxiliary_head: Optional auxiliary head config(s).
        train_cfg: Training config.
        test_cfg: Test config: ``mode='whole'``, ``'slide'`` (``crop_size``, ``stride``) or ``'slide_features'``
            (optional ``crop_size``, ``stride``: ints or (h, w) pairs; square windows of the short side by default;
            optional ``pad_to_multiple`` (int, default None: no padding) and ``pad_value`` (default -1.0)).
        data_preprocessor: Data preprocessor config.
        pretrained: Must stay None: the backbone's own ``pretrained`` names the Stable Diffusion folder.
        init_cfg: mmengine init config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 decode_head: ConfigType,
                 neck: OptConfigType = None,
                 auxiliary_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 pretrained: Optional[str] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        refuse_model_pretrained(type(self).__name__, pretrained, 'backbone.pretrained (the Stable Diffusion folder)')
        super().__init__(backbone=backbone, decode_head=decode_head, neck=neck, auxiliary_head=auxiliary_head,
                         train_cfg=train_cfg, test_cfg=test_cfg, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self._check_head_channels()
        self._check_slide_padding()
        refuse_empty_batches(self.data_preprocessor, type(self).__name__)
        self._head_needs_samples = 'batch_data_samples' in inspect.signature(self.decode_head.forward).parameters

    def _check_head_channels(self) -> None:
        """One-line error at build time when an mmseg decode head's in_channels do not fit the features."""
        head = self.decode_head
        if not (hasattr(head, 'in_channels') and hasattr(head, 'in_index')):
            return  # heads that are not mmseg BaseDecodeHeads (e.g. Mask2Former) check their own inputs
        if self.with_neck and hasattr(self.neck, 'out_strides'):
            available = list(self.neck.out_channels_per_level)
        elif not self.with_neck and hasattr(self.backbone, 'feature_channels'):
            available = list(self.backbone.feature_channels)
        else:
            return
        indices = head.in_index if isinstance(head.in_index, (list, tuple)) else [head.in_index]
        wanted = head.in_channels if isinstance(head.in_channels, (list, tuple)) else [head.in_channels]
        if getattr(head, 'input_transform', None) == 'resize_concat':
            wanted = [sum(wanted)]
            got = [sum(available[i] for i in indices if -len(available) <= i < len(available))]
        else:
            got = [available[i] if -len(available) <= i < len(available) else None for i in indices]
        if list(wanted) != got:
            raise ValueError(f'decode_head.in_channels={head.in_channels} (in_index={head.in_index}) does not fit the '
                             f'{"neck" if self.with_neck else "backbone"} outputs, which have channels {available}; '
                             f'expected in_channels={got if len(got) > 1 else got[0]}')

    def _check_slide_padding(self) -> None:
        """One-line error for a ``test_cfg`` padding setting that is not a positive int, or outside slide_features."""
        cfg = self.test_cfg or {}
        multiple, value = cfg.get('pad_to_multiple'), cfg.get('pad_value', -1.0)
        if multiple is None:
            return
        if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
            raise ValueError(f'{type(self).__name__}: test_cfg.pad_to_multiple must be a positive int, got '
                             f'{multiple!r}')
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f'{type(self).__name__}: test_cfg.pad_value must be a number, got {value!r}')
        if cfg.get('mode') != 'slide_features':
            raise ValueError(f"{type(self).__name__}: test_cfg.pad_to_multiple applies to mode='slide_features' only, "
                             f"got mode={cfg.get('mode')!r}")

    def _check_labels(self, data_samples: OptSampleList) -> None:
        """One-line error naming the file for a ground-truth label the decode head has no class for."""
        check_label_range(data_samples, self.decode_head.num_classes, getattr(self.decode_head, 'ignore_index', 255),
                          type(self).__name__)

    def forward(self, inputs: Tensor, data_samples: OptSampleList = None, mode: str = 'tensor'):
        """mmseg's ``forward``; an empty batch is refused in one line."""
        check_batch_not_empty(inputs, type(self).__name__)
        return super().forward(inputs, data_samples, mode)

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        """mmseg's ``loss``, after the labels are checked against the decode head's classes."""
        self._check_labels(data_samples)
        return super().loss(inputs, data_samples)

    def predict(self, inputs: Tensor, data_samples: OptSampleList = None) -> SampleList:
        """mmseg's ``predict``; ground-truth labels, when the data samples hold them (validation, test), are checked
        against the decode head's classes first, so ``IoUMetric`` never meets one it would drop."""
        self._check_labels(data_samples)
        return super().predict(inputs, data_samples)

    def _forward(self, inputs: Tensor, data_samples: OptSampleList = None) -> Tensor:
        """Raw head output (``mode='tensor'``); semantic logits for heads that need data samples."""
        x = self.extract_feat(inputs)
        if not self._head_needs_samples:
            return self.decode_head.forward(x)
        if data_samples:
            batch_img_metas = [sample.metainfo for sample in data_samples]
        else:
            shape = tuple(inputs.shape[-2:])
            batch_img_metas = [dict(img_shape=shape, pad_shape=shape, ori_shape=shape)] * inputs.shape[0]
        return self.decode_head.predict(x, batch_img_metas, self.test_cfg)

    def inference(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """Semantic logits of ``inputs``; ``test_cfg.mode`` picks whole, slide or slide-features inference."""
        self._check_slide_padding()
        if self.test_cfg.get('mode') != 'slide_features':
            return super().inference(inputs, batch_img_metas)
        height, width = inputs.shape[-2:]
        padded = self._pad_for_slide(inputs)
        if padded is inputs:
            return self.decode_head.predict(self.slide_extract_feat(inputs), batch_img_metas, self.test_cfg)
        shape = tuple(padded.shape[-2:])
        padded_metas = [dict(meta, img_shape=shape, pad_shape=shape) for meta in batch_img_metas]
        logits = self.decode_head.predict(self.slide_extract_feat(padded), padded_metas, self.test_cfg)
        return logits[..., :height, :width]

    def _pad_for_slide(self, inputs: Tensor) -> Tensor:
        """``inputs`` padded at the bottom and right to a multiple of ``test_cfg.pad_to_multiple`` with
        ``test_cfg.pad_value`` given in the backbone's [-1, 1] range (mapped to the preprocessor's range when the
        backbone undoes another normalisation, ``input_normalization``); ``inputs`` itself when nothing is padded."""
        multiple = self.test_cfg.get('pad_to_multiple')
        height, width = inputs.shape[-2:]
        if not multiple or (height % multiple == 0 and width % multiple == 0):
            return inputs
        value = torch.full((1, inputs.shape[1], 1, 1), float(self.test_cfg.get('pad_value', -1.0)),
                           dtype=inputs.dtype, device=inputs.device)
        if getattr(self.backbone, 'normalizes_input', False):  # x_vae = x * input_scale + input_shift
            value = (value - self.backbone.input_shift.to(value)) / self.backbone.input_scale.to(value)
        padded = value.expand(inputs.shape[0], -1, height + (-height) % multiple, width + (-width) % multiple).clone()
        padded[..., :height, :width] = inputs
        return padded

    def _windows(self, height: int, width: int) -> List[Tuple[int, int, int, int]]:
        """(y1, y2, x1, x2) of the sliding windows over an image, as the public RASS code places them."""
        crop = self.test_cfg.get('crop_size') or min(height, width)
        crop_h, crop_w = (crop, crop) if isinstance(crop, int) else crop
        crop_h, crop_w = min(crop_h, height), min(crop_w, width)
        stride = self.test_cfg.get('stride') or (crop_h, crop_w)
        stride_h, stride_w = (stride, stride) if isinstance(stride, int) else stride
        windows = []
        for h_index in range(max(height - crop_h + stride_h - 1, 0) // stride_h + 1):
            for w_index in range(max(width - crop_w + stride_w - 1, 0) // stride_w + 1):
                y2, x2 = min(h_index * stride_h + crop_h, height), min(w_index * stride_w + crop_w, width)
                windows.append((max(y2 - crop_h, 0), y2, max(x2 - crop_w, 0), x2))
        return windows

    def _feature_strides(self, window_height: int, features: List[Tensor]) -> List[int]:
        """Pixel stride of each feature level: the neck's (or backbone's) own, else read from the shapes."""
        owner = self.neck if self.with_neck else self.backbone
        strides = getattr(owner, 'out_strides', None) or getattr(owner, 'feature_strides', None)
        if strides is not None and len(strides) == len(features):
            return list(strides)
        return [2**round(math.log2(window_height / f.shape[-2])) for f in features]

    def slide_extract_feat(self, inputs: Tensor) -> List[Tensor]:
        """Neck outputs of the whole image assembled from sliding windows (``test_cfg.mode='slide_features'``)."""
        height, width = inputs.shape[-2:]
        sums: Optional[List[Tensor]] = None
        counts: List[Tensor] = []
        strides: List[int] = []
        for y1, y2, x1, x2 in self._windows(height, width):
            features = self.extract_feat(inputs[..., y1:y2, x1:x2])
            if sums is None:
                strides = self._feature_strides(y2 - y1, features)
                sums = [f.new_zeros(f.shape[0], f.shape[1], height // s, width // s) for f, s in zip(features, strides)]
                counts = [f.new_zeros(1, 1, height // s, width // s) for f, s in zip(features, strides)]
            for level, (feature, stride) in enumerate(zip(features, strides)):
                top, bottom, left, right = y1 // stride, y2 // stride, x1 // stride, x2 // stride
                sums[level][..., top:bottom, left:right] += feature[..., :bottom - top, :right - left]
                counts[level][..., top:bottom, left:right] += 1
        return [total / count.clamp(min=1) for total, count in zip(sums, counts)]
