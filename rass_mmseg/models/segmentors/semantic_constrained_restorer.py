"""SCR, stage 1 of RASS: a semantics-aware one-step restorer driven by mmseg's Runner, datasets and tools."""
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple, Union

import torch
from mmengine.optim import OptimWrapperDict
from mmengine.structures import PixelData
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.registry import MODELS, TASK_UTILS
from mmseg.structures import SegDataSample
from mmseg.utils import ConfigType, OptConfigType, OptMultiConfig, OptSampleList, SampleList
from torch import Tensor

from ..utils.batch_checks import check_batch_not_empty, check_label_range, refuse_empty_batches
from .model_pretrained import refuse_model_pretrained

__all__ = ['SemanticConstrainedRestorer', 'RegularizerInputs']

class RegularizerInputs(NamedTuple):
    """What the VSD regulariser's update of a training step reads from the restorer's update of the same step."""
    latents: Tensor  #: the restored latents (N, C, h, w), detached
    conditioning: Tensor  #: their prompt embeddings (N, L, D), detached
    mask: Optional[Tensor]  #: the (N, L) attention mask of the embeddings, or None


@MODELS.register_module()
class SemanticConstrainedRestorer(BaseSegmentor):
    """SCR: LQ -> SD VAE encoder -> UNet (SCR LoRA) -> one step -> VAE decoder -> restored image in [0, 1].

    Training pairs come from :class:`~rass_mmseg.models.data_preprocessors.DegradationDataPreProcessor`
    (``keep_hq=True``): ``inputs`` is the degraded batch, ``data_sample.gt_hq_img`` the clean target. The
    losses are the head's restoration loss and, with ``alignment_loss`` and ``gt_class_prompt``, the
    cross-attention alignment loss L_SCL: each training image then gets its own prompt listing the classes of
    its ground truth, whose tokens are mapped back to the class indices for the loss. Inference uses the backbone's
    ``prompt_source`` (the ground truth is never read). ``predict`` stores the restored image as
    ``data_sample.restored_img`` (``PixelData``, float RGB in [0, 1], padded like ``gt_hq_img``), which
    :class:`~rass_mmseg.evaluation.RestorationMetric` and the side-by-side visualizer read.

    Args:
        backbone: Config of :class:`~rass_mmseg.models.backbones.SCRBackbone` (with the inference
            ``prompt_source``).
        decode_head: Config of :class:`~rass_mmseg.models.heads.SCRHead`.
        alignment_loss: Config of :class:`~rass_mmseg.models.losses.CrossAttentionAlignmentLoss`, or None.
        vsd_loss: Config of :class:`~rass_mmseg.models.losses.VariationalScoreDistillationLoss` (OSEDiff's third
            term), or None. It needs the backbone's regulariser adapter (``backbone.regularizer=dict(...)``), which
            trains with an optimizer of its own: the ``optim_wrapper`` must then hold ``generator`` and
            ``regularizer`` wrappers (``constructor='SCRVSDOptimWrapperConstructor'``), and several processes need
            ``model_wrapper_cfg=dict(type='TwoStepDistributedDataParallel', find_unused_parameters=True)``.
        gt_class_prompt: A ``ClassNamesPrompt`` config (``TASK_UTILS``) whose classes are indexed by the
            ground-truth labels (its template formats each name); None trains with the backbone's prompt and no
            alignment loss.
        negative_classes: Classes absent from an image that its training prompt names too (their attention is pushed
            to zero by L_SCL): a number drawn at random per image (torch's generator, so a seeded run repeats), or
            ``'all'`` for every class name, i.e. the prompt of ``ClassNamesPrompt`` at test time. The phrases follow
            the class order, as that prompt does. 0: only the present classes.
        ignore_index: Label of unannotated pixels.
        data_preprocessor: Data preprocessor config (the degradation preprocessor).
        train_cfg: Unused; kept for mmseg's config layout.
        test_cfg: Unused; kept for mmseg's config layout.
        pretrained: Must stay None (mmseg's ``init_model`` sets ``model.pretrained = None`` on every config): the
            backbone's own ``pretrained`` names the Stable Diffusion folder.
        init_cfg: mmengine init config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 decode_head: ConfigType,
                 alignment_loss: OptConfigType = None,
                 vsd_loss: OptConfigType = None,
                 gt_class_prompt: OptConfigType = None,
                 negative_classes: Union[int, str] = 0,
                 ignore_index: int = 255,
                 data_preprocessor: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 pretrained: Optional[str] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        refuse_model_pretrained(type(self).__name__, pretrained, 'backbone.pretrained (the Stable Diffusion folder)')
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        refuse_empty_batches(self.data_preprocessor, type(self).__name__)
        self.backbone = MODELS.build(backbone)
        self.decode_head = MODELS.build(decode_head)
        self.gt_class_prompt = TASK_UTILS.build(gt_class_prompt) if gt_class_prompt is not None else None
        self.alignment_loss = MODELS.build(alignment_loss) if alignment_loss is not None else None
        self.vsd_loss = MODELS.build(vsd_loss) if vsd_loss is not None else None
        if self.vsd_loss is not None:
            self.vsd_loss.check_backbone(self.backbone)
        if self.alignment_loss is not None and self.gt_class_prompt is None:
            raise ValueError('SemanticConstrainedRestorer: alignment_loss needs gt_class_prompt (the class names '
                             'of the ground-truth labels)')
        if self.alignment_loss is not None and getattr(self.backbone, 'attention_store', None) is None:
            raise ValueError('SemanticConstrainedRestorer: alignment_loss needs backbone.attention_strides')
        if not (negative_classes == 'all' or (isinstance(negative_classes, int) and negative_classes >= 0)):
            raise ValueError(f"SemanticConstrainedRestorer negative_classes must be an int >= 0 or 'all', got "
                             f'{negative_classes!r}')
        self.negative_classes = negative_classes
        self.ignore_index = ignore_index
        self.train_cfg, self.test_cfg = train_cfg, test_cfg

    def _gt_class_prompts(self, gt: Tensor):
        """Per-image prompts of the classes present in ``gt`` (N, H, W), plus ``negative_classes`` absent ones.

        Returns:
            Embeddings (N, L, D) padded to the longest prompt, the (N, L) attention mask (None when no padding
            was needed) and, per image, class index -> token positions.
        """
        names = self.gt_class_prompt.phrases()
        named_per_image: List[List[int]] = []
        for labels in gt:
            present = [int(c) for c in torch.unique(labels).tolist() if c != self.ignore_index]
            unknown = [c for c in present if not 0 <= c < len(names)]
            if unknown:
                raise ValueError(f'SemanticConstrainedRestorer: label {unknown[0]} has no name in gt_class_prompt '
                                 f'({len(names)} classes); check the dataset and ignore_index')
            named_per_image.append(sorted(present + self._negatives(present, len(names))))
        embeddings, mask, positions = self.backbone.prompt_encoder.encode_batch(
            [[names[c] for c in named] or [''] for named in named_per_image])
        token_maps: List[Dict[int, List[int]]] = [
            {c: image_positions[i] for i, c in enumerate(named)}
            for named, image_positions in zip(named_per_image, positions)]
        return embeddings, mask, token_maps

    def _negatives(self, present: List[int], num_classes: int) -> List[int]:
        """Absent classes to name in an image's training prompt."""
        absent = [c for c in range(num_classes) if c not in present]
        if self.negative_classes == 'all':
            return absent
        if not present or not self.negative_classes:
            return []  # no random draw: runs without negatives keep their random stream
        order = torch.randperm(len(absent)).tolist()
        return [absent[i] for i in order[:self.negative_classes]]

    def extract_feat(self, inputs: Tensor) -> Tensor:
        """Clean latents of ``inputs`` (N, 3, H, W) in [-1, 1] with the inference prompt."""
        return self.backbone(inputs)

    def restore(self, inputs: Tensor) -> Tensor:
        """Restored images (N, 3, H, W), RGB in [0, 1], of a batch normalised by this model's preprocessor."""
        check_batch_not_empty(inputs, type(self).__name__)
        height, width = inputs.shape[-2:]
        return self.decode_head.predict(self.extract_feat(inputs))[..., :height, :width]

    def encode_decode(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """Restored images of ``inputs`` (mmseg's name for the model's full forward)."""
        return self.restore(inputs)

    def _forward(self, inputs: Tensor, data_samples: OptSampleList = None) -> Tensor:
        """Tensor mode: the restored images in [0, 1]."""
        return self.restore(inputs)

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        """Restoration loss (and L_SCL, VSD) of a degraded batch against the clean images in the data samples."""
        return self.loss_and_regularizer_inputs(inputs, data_samples)[0]

    def loss_and_regularizer_inputs(self, inputs: Tensor,
                                    data_samples: SampleList) -> Tuple[dict, Optional[RegularizerInputs]]:
        """The losses of :meth:`loss`, and with VSD what the regulariser's update of the same step reads (else
        None)."""
        if not data_samples or 'gt_hq_img' not in data_samples[0]:
            raise ValueError('SemanticConstrainedRestorer.loss needs data_sample.gt_hq_img: use '
                             'DegradationDataPreProcessor with keep_hq=True')
        target = torch.stack([sample.gt_hq_img.data for sample in data_samples]).to(inputs.device)
        height, width = inputs.shape[-2:]
        embeddings, mask, token_maps = None, None, None
        if self.gt_class_prompt is not None:
            check_label_range(data_samples, len(self.gt_class_prompt.phrases()), self.ignore_index,
                              type(self).__name__, classes_from='gt_class_prompt')
            gt = torch.stack([sample.gt_sem_seg.data[0] for sample in data_samples])
            embeddings, mask, token_maps = self._gt_class_prompts(gt)
            embeddings = embeddings.to(inputs.device)
            mask = mask.to(inputs.device) if mask is not None else None
        capture = self.alignment_loss is not None
        try:
            latents = self.backbone(inputs, embeddings, encoder_attention_mask=mask, capture_attention=capture)
        finally:
            maps = self.backbone.attention_store.stop() if capture else {}
        restored = self.decode_head(latents)[..., :height, :width]
        losses = self.decode_head.loss(restored, target[..., :height, :width])
        if capture:
            terms = self.alignment_loss.terms(maps, token_maps, gt.to(inputs.device))
            losses[self.alignment_loss.loss_name] = self.alignment_loss.weigh(terms)
            # logged, not optimised (no 'loss' in the key): which of L_SCL's terms moves
            losses.update({f'scl_{name}': value.detach() for name, value in terms.items()})
        if self.vsd_loss is None:
            return losses, None
        conditioning = self.backbone.conditioning(latents.shape[0], embeddings, latents.device)
        losses[self.vsd_loss.loss_name] = self.vsd_loss(self.backbone, latents, conditioning, mask)
        return losses, RegularizerInputs(latents.detach(), conditioning.detach(), mask)

    def regularizer_loss(self, regularizer_inputs: RegularizerInputs) -> Dict[str, Tensor]:
        """The VSD regulariser's diffusion loss on what the restorer's update of the same step produced."""
        latents, conditioning, mask = regularizer_inputs
        return {'loss_vsd_regularizer': self.vsd_loss.regularizer_loss(self.backbone, latents, conditioning, mask)}

    def forward(self,
                inputs: Union[Tensor, RegularizerInputs],
                data_samples: OptSampleList = None,
                mode: str = 'tensor'):
        """mmseg's modes, and the two of a VSD training step (modes, so that a distributed wrapper's forward, and
        its gradient synchronisation, runs them): ``'vsd_generator'`` returns :meth:`loss_and_regularizer_inputs`,
        ``'vsd_regularizer'`` the :meth:`regularizer_loss` of ``inputs``, the :class:`RegularizerInputs` that
        ``'vsd_generator'`` returned."""
        if mode == 'vsd_generator':
            return self.loss_and_regularizer_inputs(inputs, data_samples)
        if mode == 'vsd_regularizer':
            return self.regularizer_loss(inputs)
        return super().forward(inputs, data_samples, mode)

    def train_step(self, data, optim_wrapper, forward: Optional[Callable] = None) -> Dict[str, Tensor]:
        """mmseg's training step; with VSD two updates: the restorer (``generator``), then the regulariser on the
        restorer's latents of this step (handed from one update to the next here, as mmagic's ``BaseGAN`` does).

        Args:
            data: A batch from the dataloader.
            optim_wrapper: An ``OptimWrapper``, or with VSD an ``OptimWrapperDict`` with ``generator`` and
                ``regularizer``.
            forward: What runs the model (a distributed wrapper passes itself); defaults to this model.
        """
        if self.vsd_loss is None:
            return super().train_step(data, optim_wrapper)
        if not isinstance(optim_wrapper, OptimWrapperDict) or set(optim_wrapper.keys()) != {'generator', 'regularizer'}:
            raise ValueError('SemanticConstrainedRestorer with vsd_loss needs optim_wrapper with a generator and a '
                             "regularizer: set optim_wrapper.constructor='SCRVSDOptimWrapperConstructor'")
        forward = forward or self
        generator, regularizer = optim_wrapper['generator'], optim_wrapper['regularizer']
        with generator.optim_context(forward):
            data = self.data_preprocessor(data, True)
            losses, regularizer_inputs = forward(**data, mode='vsd_generator')
        parsed, log_vars = self.parse_losses(losses)
        generator.update_params(parsed)
        with regularizer.optim_context(forward):
            regularizer_losses = forward(regularizer_inputs, mode='vsd_regularizer')
        parsed, regularizer_log = self.parse_losses(regularizer_losses)
        regularizer.update_params(parsed)
        log_vars['loss_vsd_regularizer'] = regularizer_log['loss_vsd_regularizer']
        return log_vars

    def predict(self, inputs: Tensor, data_samples: OptSampleList = None) -> SampleList:
        """Restore ``inputs`` and store each image as ``data_sample.restored_img``."""
        restored = self.restore(inputs)
        if data_samples is None:
            data_samples = [SegDataSample() for _ in range(inputs.shape[0])]
        for image, sample in zip(restored, data_samples):
            sample.restored_img = PixelData(data=image)
        return data_samples
