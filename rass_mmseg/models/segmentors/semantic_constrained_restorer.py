"""SCR, stage 1 of RASS: a semantics-aware one-step restorer driven by mmseg's Runner, datasets and tools."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.structures import PixelData
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import ConfigType, OptConfigType, OptMultiConfig, OptSampleList, SampleList
from torch import Tensor

__all__ = ['SemanticConstrainedRestorer']


@MODELS.register_module()
class SemanticConstrainedRestorer(BaseSegmentor):
    """SCR: LQ -> SD VAE encoder -> UNet (SCR LoRA) -> one step -> VAE decoder -> restored image in [0, 1].

    Training pairs come from :class:`~rass_mmseg.models.data_preprocessors.DegradationDataPreProcessor`
    (``keep_hq=True``): ``inputs`` is the degraded batch, ``data_sample.gt_hq_img`` the clean target. The
    losses are the head's restoration loss and, with ``alignment_loss`` and ``gt_class_prompt``, the
    cross-attention alignment loss L_SCL: each training image then gets its own prompt listing the classes of
    its ground truth, whose tokens are mapped back to the class indices for the loss. Inference uses
    ``prompt_source`` (the ground truth is never read). ``predict`` stores the restored image as
    ``data_sample.restored_img`` (``PixelData``, float RGB in [0, 1], padded like ``gt_hq_img``), which
    :class:`~rass_mmseg.evaluation.RestorationMetric` and the side-by-side visualizer read.

    Args:
        backbone: Config of :class:`~rass_mmseg.models.backbones.SCRBackbone`.
        decode_head: Config of :class:`~rass_mmseg.models.heads.SCRHead`.
        alignment_loss: Config of :class:`~rass_mmseg.models.losses.CrossAttentionAlignmentLoss`, or None.
        prompt_source: Prompt at inference (and in training without ``gt_class_prompt``).
        gt_class_prompt: A ``ClassNamesPrompt`` config whose classes are indexed by the ground-truth labels
            (its template formats each name); None trains with ``prompt_source`` and no alignment loss.
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
                 prompt_source: ConfigType = dict(type='FixedTextPrompt', text=''),
                 gt_class_prompt: OptConfigType = None,
                 ignore_index: int = 255,
                 data_preprocessor: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 pretrained: Optional[str] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        if pretrained is not None:
            raise ValueError('SemanticConstrainedRestorer: set the Stable Diffusion folder as backbone.pretrained, '
                             'not model.pretrained')
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.decode_head = MODELS.build(decode_head)
        self.prompt_source = MODELS.build(prompt_source)
        self.gt_class_prompt = MODELS.build(gt_class_prompt) if gt_class_prompt is not None else None
        self.alignment_loss = MODELS.build(alignment_loss) if alignment_loss is not None else None
        if self.alignment_loss is not None and self.gt_class_prompt is None:
            raise ValueError('SemanticConstrainedRestorer: alignment_loss needs gt_class_prompt (the class names '
                             'of the ground-truth labels)')
        if self.alignment_loss is not None and getattr(self.backbone, 'attention_store', None) is None:
            raise ValueError('SemanticConstrainedRestorer: alignment_loss needs backbone.attention_strides')
        self.ignore_index = ignore_index
        self.train_cfg, self.test_cfg = train_cfg, test_cfg
        self._prompt_cache: Dict[Tuple[str, ...], object] = {}
        self.register_load_state_dict_post_hook(SemanticConstrainedRestorer._drop_prompt_cache)

    @staticmethod
    def _drop_prompt_cache(module: 'SemanticConstrainedRestorer', incompatible_keys) -> None:
        module._prompt_cache = {}

    def _encode(self, phrases: Sequence[str]):
        """PromptEncoding of ``phrases``, cached (the text encoder is frozen)."""
        key = tuple(phrases)
        if key not in self._prompt_cache:
            if len(self._prompt_cache) >= 4096:
                self._prompt_cache.clear()
            self._prompt_cache[key] = self.backbone.encode_prompt(list(phrases))
        return self._prompt_cache[key]

    def _gt_class_prompts(self, gt: Tensor) -> Tuple[Tensor, Optional[Tensor], List[Dict[int, List[int]]]]:
        """Per-image prompts of the classes present in ``gt`` (N, H, W).

        Returns:
            Embeddings (N, L, D) padded to the longest prompt, the (N, L) attention mask (None when no
            padding was needed) and, per image, class index -> token positions.
        """
        names = self.gt_class_prompt.phrases()
        encodings, token_maps = [], []
        for labels in gt:
            present = [int(c) for c in torch.unique(labels).tolist() if c != self.ignore_index]
            unknown = [c for c in present if not 0 <= c < len(names)]
            if unknown:
                raise ValueError(f'SemanticConstrainedRestorer: label {unknown[0]} has no name in gt_class_prompt '
                                 f'({len(names)} classes); check the dataset and ignore_index')
            encoding = self._encode([names[c] for c in present] or [''])
            encodings.append(encoding.embeddings)
            token_maps.append({c: encoding.phrase_token_positions[i] for i, c in enumerate(present)})
        longest = max(e.shape[1] for e in encodings)
        if all(e.shape[1] == longest for e in encodings):
            return torch.cat(encodings), None, token_maps
        embeddings = encodings[0].new_zeros(len(encodings), longest, encodings[0].shape[-1])
        mask = embeddings.new_zeros(len(encodings), longest)
        for index, e in enumerate(encodings):
            embeddings[index, :e.shape[1]] = e[0]
            mask[index, :e.shape[1]] = 1
        return embeddings, mask, token_maps

    def prompt_embeddings(self) -> Tensor:
        """Inference prompt embeddings (1, L, D) from ``prompt_source``."""
        return self._encode(self.prompt_source.phrases()).embeddings

    def extract_feat(self, inputs: Tensor) -> Tensor:
        """Clean latents of ``inputs`` (N, 3, H, W) in [-1, 1] with the inference prompt."""
        return self.backbone(inputs, self.prompt_embeddings().to(inputs.device))

    def restore(self, inputs: Tensor) -> Tensor:
        """Restored images (N, 3, H, W), RGB in [0, 1], of a batch normalised by this model's preprocessor."""
        height, width = inputs.shape[-2:]
        restored = self.decode_head.predict(self.extract_feat(inputs), self.backbone.vae)
        return restored[..., :height, :width]

    def encode_decode(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """Restored images of ``inputs`` (mmseg's name for the model's full forward)."""
        return self.restore(inputs)

    def _forward(self, inputs: Tensor, data_samples: OptSampleList = None) -> Tensor:
        """Tensor mode: the restored images in [0, 1]."""
        return self.restore(inputs)

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        """Restoration loss (and L_SCL) of a degraded batch against the clean images in the data samples."""
        if not data_samples or 'gt_hq_img' not in data_samples[0]:
            raise ValueError('SemanticConstrainedRestorer.loss needs data_sample.gt_hq_img: use '
                             'DegradationDataPreProcessor with keep_hq=True')
        target = torch.stack([sample.gt_hq_img.data for sample in data_samples]).to(inputs.device)
        height, width = inputs.shape[-2:]
        mask, token_maps = None, None
        if self.gt_class_prompt is not None:
            gt = torch.stack([sample.gt_sem_seg.data[0] for sample in data_samples])
            embeddings, mask, token_maps = self._gt_class_prompts(gt)
        else:
            embeddings = self.prompt_embeddings()
        capture = self.alignment_loss is not None
        try:
            latents = self.backbone(inputs, embeddings.to(inputs.device), encoder_attention_mask=mask,
                                    capture_attention=capture)
        finally:
            maps = self.backbone.attention_store.stop() if capture else {}
        restored = self.decode_head(latents, self.backbone.vae)[..., :height, :width]
        losses = self.decode_head.loss(restored, target[..., :height, :width])
        if capture:
            losses[self.alignment_loss.loss_name] = self.alignment_loss(maps, token_maps, gt.to(inputs.device))
        return losses

    def predict(self, inputs: Tensor, data_samples: OptSampleList = None) -> SampleList:
        """Restore ``inputs`` and store each image as ``data_sample.restored_img``."""
        restored = self.restore(inputs)
        if data_samples is None:
            data_samples = [SegDataSample() for _ in range(inputs.shape[0])]
        for image, sample in zip(restored, data_samples):
            sample.restored_img = PixelData(data=image)
        return data_samples
