"""Restore-then-segment (R2S), the evaluation protocol of Table 1 in RASS (arXiv 2602.14042).

A low-quality image is first restored by a restorer (e.g. :class:`SemanticConstrainedRestorer`, SCR), then
segmented by any mmseg segmentor, each sub-model from its own config and checkpoint. The restored image is handed
to the segmentor in the segmentor's own input format, exactly as if it had been written to disk and read back by
mmseg's loader (BGR) and the segmentor's data preprocessor.
"""
import copy
import os.path as osp
from typing import Dict, List, Optional, Union

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.runner import load_checkpoint
from mmengine.structures import PixelData
from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.models.segmentors import BaseSegmentor
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, OptMultiConfig, OptSampleList, SampleList, stack_batch
from torch import Tensor, nn

from ..utils.batch_checks import check_batch_not_empty, check_label_range, refuse_empty_batches
from .model_pretrained import refuse_model_pretrained

__all__ = ['RestoreThenSegment']

SUB_MODELS = ('restorer', 'segmentor')


def _model_config(spec: Union[str, ConfigType], name: str) -> ConfigDict:
    """The model dict of ``spec``: a model config dict, a config file path, or an ``'mmseg::...'`` config name."""
    if isinstance(spec, str):
        if '::' in spec:
            from mmengine.hub import get_config
            cfg = get_config(spec)
        elif not osp.isfile(spec):
            raise FileNotFoundError(f'RestoreThenSegment: {name} config {spec!r} does not exist')
        else:
            cfg = Config.fromfile(spec)
        if 'model' not in cfg:
            raise ValueError(f'RestoreThenSegment: {name} config {spec!r} defines no `model`')
        spec = cfg.model
    if not isinstance(spec, (dict, ConfigDict)) or 'type' not in spec:
        raise TypeError(f'RestoreThenSegment: {name} must be a model config dict with a type, or a config file path; '
                        f'got {spec!r}')
    return ConfigDict(copy.deepcopy(dict(spec)))  # ConfigDict: heads such as mmdet's read attributes


def _normalisation(preprocessor: nn.Module) -> Optional[tuple]:
    """(mean, std, channel_conversion) of an mmseg-style preprocessor; None when it has none of them."""
    if not hasattr(preprocessor, 'channel_conversion'):
        return None
    normalise = getattr(preprocessor, '_enable_normalize', False)
    if normalise and preprocessor.mean.is_meta:  # built on the meta device: nothing to compare
        return None
    mean = preprocessor.mean.flatten().tolist() if normalise else None
    std = preprocessor.std.flatten().tolist() if normalise else None
    return mean, std, bool(preprocessor.channel_conversion)


@MODELS.register_module()
class RestoreThenSegment(BaseSegmentor):
    """Restore with a frozen restorer, then segment the restored image with a frozen mmseg segmentor (R2S).

    Inference only: ``mode='loss'`` raises. Both sub-models are frozen and stay in eval mode.

    Data flow of ``predict`` (``inputs`` as produced by this model's ``data_preprocessor``, which by default is the
    restorer's; use ``DegradationDataPreProcessor`` with ``degrade='always'`` to make the LQ images on the fly, or a
    ``SegDataPreProcessor`` with the restorer's normalisation for an LQ dataset on disk):

    1. ``restorer.restore(inputs)`` -> restored images, RGB float in [0, 1], (N, 3, H, W); clamped to [0, 1] and
       cropped to ``img_shape`` when this model's preprocessor padded the batch.
    2. Segmentor input format, read from the segmentor's own ``SegDataPreProcessor`` (any subclass): x255, the
       channel order its model sees (RGB when it converts channels, i.e. ``bgr_to_rgb=True`` with mmseg's BGR
       loader, else BGR), ``(x - mean) / std``, and the padding it applies to test batches (its ``test_cfg``
       ``size`` / ``size_divisor``, with ``img_padding_size`` / ``pad_shape`` set in the data samples as it would).
       The segmentor's preprocessor itself is never called, so a degradation preprocessor there never degrades
       the restored image again.
    3. ``segmentor.predict`` (whole or slide inference from the segmentor's ``test_cfg``).

    Each data sample also gets ``restored_img`` (``PixelData``, float RGB in [0, 1], (3, H, W)) when
    ``keep_restored`` is True, for visualisation.

    Checkpoints: ``restorer_checkpoint`` / ``segmentor_checkpoint`` are loaded at construction with mmengine's
    ``load_checkpoint`` (weights-only, ``map_location='cpu'``, strict). mmseg's ``tools/test.py`` then loads its
    positional checkpoint into this model: an R2S state dict (keys ``restorer.*`` / ``segmentor.*``) loads as
    usual; a checkpoint of one sub-model alone (all its keys are keys of exactly one sub-model, e.g. the
    segmentor's own training checkpoint) is loaded into that sub-model and the other keeps its weights, so
    ``python tools/test.py R2S_CONFIG SEGMENTOR_CHECKPOINT`` works.

    Args:
        restorer: The restorer: a model config dict, a config file path whose ``model`` is used, or a packaged
            config name (``'mmseg::...'``). The built model must have ``restore(inputs) -> Tensor`` taking the
            output of its own data preprocessor and returning RGB images in [0, 1] of the same size.
        segmentor: Any mmseg segmentor with a ``SegDataPreProcessor`` (or subclass), given like ``restorer``.
        restorer_checkpoint: Checkpoint of the restorer (path or URL), or None to keep its built weights.
        segmentor_checkpoint: Checkpoint of the segmentor, or None.
        keep_restored: Store ``restored_img`` in the data samples.
        train_cfg: Must be None or empty (R2S is not trained); accepted because mmseg's tools and ``init_model``
            set ``model.train_cfg = None`` on every config.
        test_cfg: Must be None: whole or slide inference is the segmentor's ``test_cfg``.
        data_preprocessor: Preprocessor of the R2S model; None uses the restorer's. Its normalisation (mean, std,
            channel conversion) must equal the restorer's.
        pretrained: Must stay None; accepted because mmseg's ``init_model`` sets ``model.pretrained = None``.
        init_cfg: mmengine init config (unused: weights come from the sub-models and their checkpoints).
    """

    def __init__(self,
                 restorer: Union[str, ConfigType],
                 segmentor: Union[str, ConfigType],
                 restorer_checkpoint: Optional[str] = None,
                 segmentor_checkpoint: Optional[str] = None,
                 keep_restored: bool = True,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 pretrained: Optional[str] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        refuse_model_pretrained(type(self).__name__, pretrained, 'restorer_checkpoint and segmentor_checkpoint')
        if train_cfg:
            raise ValueError('RestoreThenSegment (R2S) is an evaluation protocol and cannot be trained: remove '
                             'model.train_cfg')
        if test_cfg is not None:
            raise ValueError("RestoreThenSegment: set whole/slide inference in the segmentor's test_cfg, not in "
                             'model.test_cfg')
        restorer_cfg = _model_config(restorer, 'restorer')
        segmentor_cfg = _model_config(segmentor, 'segmentor')
        if data_preprocessor is None:
            data_preprocessor = restorer_cfg.get('data_preprocessor')
            if data_preprocessor is None:
                raise ValueError('RestoreThenSegment: the restorer config has no data_preprocessor; give one as '
                                 'data_preprocessor')
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        refuse_empty_batches(self.data_preprocessor, type(self).__name__)
        self.restorer = MODELS.build(restorer_cfg)
        self.segmentor = MODELS.build(segmentor_cfg)
        self.restorer_checkpoint = restorer_checkpoint
        self.segmentor_checkpoint = segmentor_checkpoint
        self.keep_restored = keep_restored
        self._check_sub_models()
        for name, checkpoint in zip(SUB_MODELS, (restorer_checkpoint, segmentor_checkpoint)):
            if checkpoint is not None:
                if '://' not in checkpoint and not osp.isfile(checkpoint):
                    raise FileNotFoundError(f'RestoreThenSegment: {name}_checkpoint {checkpoint!r} does not exist')
                load_checkpoint(getattr(self, name), checkpoint, map_location='cpu', strict=True, logger='current')
        self.requires_grad_(False)
        self.train(False)
        self.register_load_state_dict_pre_hook(RestoreThenSegment._route_sub_model_state_dict)

    def _check_sub_models(self) -> None:
        """One-line errors for sub-models that cannot work together."""
        if not callable(getattr(self.restorer, 'restore', None)):
            raise TypeError(f'RestoreThenSegment: the restorer ({type(self.restorer).__name__}) has no '
                            'restore(inputs) method')
        if not isinstance(self.segmentor.data_preprocessor, SegDataPreProcessor):
            raise TypeError('RestoreThenSegment: the segmentor needs a SegDataPreProcessor (or subclass) to define '
                            f'its input format, got {type(self.segmentor.data_preprocessor).__name__}')
        ours = _normalisation(self.data_preprocessor)
        restorers = _normalisation(self.restorer.data_preprocessor)
        if ours is not None and restorers is not None and ours != restorers:
            raise ValueError(f'RestoreThenSegment: data_preprocessor normalises as (mean, std, channel conversion) '
                             f'{ours}, the restorer expects {restorers}')

    def train(self, mode: bool = True) -> 'RestoreThenSegment':
        """Always eval mode: R2S only evaluates frozen models (dropout off, normalisation statistics fixed)."""
        return super().train(False)

    def init_weights(self) -> None:
        """Initialise only the sub-models that have no checkpoint (loaded weights are never overwritten)."""
        for name, checkpoint in zip(SUB_MODELS, (self.restorer_checkpoint, self.segmentor_checkpoint)):
            if checkpoint is None:
                getattr(self, name).init_weights()

    @staticmethod
    def _route_sub_model_state_dict(module: 'RestoreThenSegment', state_dict: Dict[str, Tensor], prefix: str,
                                    *args) -> None:
        """Load-state-dict pre-hook: a checkpoint of one sub-model alone goes into that sub-model (see class doc)."""
        keys = [key[len(prefix):] for key in state_dict if key.startswith(prefix)]
        if not keys or any(key.split('.', 1)[0] in SUB_MODELS for key in keys):
            return  # an R2S state dict (or nothing for us): load as usual
        matches = [name for name in SUB_MODELS if set(keys) <= set(getattr(module, name).state_dict())]
        if len(matches) != 1:
            if matches:
                raise ValueError('RestoreThenSegment: the loaded state dict fits both the restorer and the segmentor; '
                                 'load it with restorer_checkpoint or segmentor_checkpoint instead')
            return  # fits neither: mmengine reports the mismatching keys
        name = matches[0]
        other = SUB_MODELS[1 - SUB_MODELS.index(name)]
        loaded = {f'{prefix}{name}.{key}': state_dict[prefix + key] for key in keys}
        for key in [key for key in state_dict if key.startswith(prefix)]:
            del state_dict[key]
        kept = getattr(module, other).state_dict()
        state_dict.update({f'{prefix}{other}.{key}': value for key, value in kept.items()})
        state_dict.update(loaded)
        print_log(f'RestoreThenSegment: the loaded state dict is a {name} checkpoint; loaded into the {name}, the '
                  f'{other} keeps its weights', logger='current')

    @staticmethod
    def _unpadded_shape(data_samples: OptSampleList) -> Optional[tuple]:
        """The common ``img_shape`` of the batch, or None without data samples."""
        if not data_samples or 'img_shape' not in data_samples[0].metainfo:
            return None
        shapes = {tuple(sample.metainfo['img_shape'][:2]) for sample in data_samples}
        if len(shapes) != 1:
            raise ValueError(f'RestoreThenSegment: the images of one batch must share their size, got {sorted(shapes)}')
        return shapes.pop()

    def restore(self, inputs: Tensor, data_samples: OptSampleList = None) -> Tensor:
        """Restored images of a preprocessed batch.

        Args:
            inputs: Output of this model's data preprocessor, (N, 3, H, W).
            data_samples: Data samples of the batch; their ``img_shape`` crops away the preprocessor's padding.

        Returns:
            RGB float images in [0, 1], (N, 3, h, w) with (h, w) the ``img_shape`` (or (H, W)).
        """
        restored = self.restorer.restore(inputs)
        if restored.dim() != 4 or restored.shape[1] != 3 or restored.shape[-2:] != inputs.shape[-2:]:
            raise ValueError(f'RestoreThenSegment: the restorer returned shape {tuple(restored.shape)} for inputs of '
                             f'shape {tuple(inputs.shape)}; expected (N, 3, H, W) of the same size')
        restored = restored.float().clamp(0, 1)
        shape = self._unpadded_shape(data_samples)
        if shape is not None:
            restored = restored[..., :shape[0], :shape[1]]
        return restored

    def segmentor_inputs(self, restored: Tensor, data_samples: OptSampleList = None) -> Tensor:
        """Restored images in the segmentor's input format (see the class docstring, step 2).

        Args:
            restored: RGB float images in [0, 1], (N, 3, H, W).
            data_samples: Data samples whose padding metainfo is updated as the segmentor's preprocessor would.

        Returns:
            The segmentor's inputs, (N, 3, H', W') with H', W' >= H, W after its test padding.
        """
        preprocessor = self.segmentor.data_preprocessor
        images = restored * 255.0
        if not preprocessor.channel_conversion:  # the segmentor sees the loader's BGR order
            images = images.flip(1)
        if preprocessor._enable_normalize:
            images = (images - preprocessor.mean) / preprocessor.std
        test_cfg = preprocessor.test_cfg
        if test_cfg and (test_cfg.get('size') is not None or test_cfg.get('size_divisor') is not None):
            images, padding = stack_batch(list(images), size=test_cfg.get('size'),
                                          size_divisor=test_cfg.get('size_divisor'), pad_val=preprocessor.pad_val)
            for data_sample, pad_info in zip(data_samples or [], padding):
                data_sample.set_metainfo(dict(pad_info))
        else:  # the segmentor pads nothing: undo the padding metainfo of our own preprocessor, if any
            for data_sample in data_samples or []:
                if 'img_padding_size' in data_sample.metainfo:
                    data_sample.set_metainfo(dict(img_padding_size=[0, 0, 0, 0], pad_shape=images.shape[-2:]))
        return images

    def predict(self, inputs: Tensor, data_samples: OptSampleList = None) -> SampleList:
        """Restore, then segment with the segmentor's ``predict``.

        Args:
            inputs: Output of this model's data preprocessor, (N, 3, H, W).
            data_samples: Data samples with ``metainfo`` (``img_shape``, ``ori_shape``, ...).

        Returns:
            The segmentor's predictions (``pred_sem_seg``, ``seg_logits``), plus ``restored_img``.
        """
        head = getattr(self.segmentor, 'decode_head', None)
        if head is not None and hasattr(head, 'num_classes'):  # labels checked before the restorer runs
            check_label_range(data_samples, head.num_classes, getattr(head, 'ignore_index', 255), type(self).__name__,
                              classes_from='the segmentor\'s decode_head.num_classes')
        restored = self.restore(inputs, data_samples)
        if self.keep_restored and data_samples is not None:
            for data_sample, image in zip(data_samples, restored):
                data_sample.restored_img = PixelData(data=image)
        return self.segmentor.predict(self.segmentor_inputs(restored, data_samples), data_samples)

    def inference(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """The segmentor's whole or slide inference (its ``test_cfg``) on the restored images, as
        ``tools/analysis_tools/benchmark.py`` times it; returns its segmentation logits (N, C, H', W') at the
        segmentor's padded input size."""
        segmentor_inputs = self.segmentor_inputs(self.restore(inputs))
        metas = [dict(meta, pad_shape=segmentor_inputs.shape[-2:]) for meta in batch_img_metas]
        return self.segmentor.inference(segmentor_inputs, metas)

    def forward(self, inputs: Tensor, data_samples: OptSampleList = None, mode: str = 'tensor'):
        """mmseg's ``forward``; an empty batch is refused in one line."""
        check_batch_not_empty(inputs, type(self).__name__)
        return super().forward(inputs, data_samples, mode)

    def _forward(self, inputs: Tensor, data_samples: OptSampleList = None) -> Tensor:
        """The segmentor's raw output (``mode='tensor'``) on the restored images."""
        restored = self.restore(inputs, data_samples)
        return self.segmentor._forward(self.segmentor_inputs(restored, data_samples), data_samples)

    def extract_feat(self, inputs: Tensor) -> List[Tensor]:
        """The segmentor's features of the restored images."""
        return self.segmentor.extract_feat(self.segmentor_inputs(self.restore(inputs)))

    def encode_decode(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """The segmentor's ``encode_decode`` on the restored images."""
        return self.segmentor.encode_decode(self.segmentor_inputs(self.restore(inputs)), batch_img_metas)

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        """Not supported: R2S evaluates a trained restorer and a trained segmentor."""
        raise NotImplementedError('RestoreThenSegment (R2S) is an evaluation protocol and cannot be trained; '
                                  'train the restorer and the segmentor with their own configs')

    @property
    def align_corners(self) -> bool:
        """The segmentor's ``align_corners``."""
        return self.segmentor.align_corners

    @property
    def num_classes(self) -> int:
        """The segmentor's number of classes."""
        return self.segmentor.num_classes

    @property
    def out_channels(self) -> int:
        """The segmentor's number of output channels."""
        return self.segmentor.out_channels
