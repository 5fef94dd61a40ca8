"""The RASS segmentor: an mmseg EncoderDecoder whose backbone is conditioned on a cached text prompt."""
import inspect
from typing import List, Optional

from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, OptMultiConfig, OptSampleList
from torch import Tensor

__all__ = ['RASSEncoderDecoder']


@MODELS.register_module()
class RASSEncoderDecoder(EncoderDecoder):
    """EncoderDecoder for :class:`~rass_mmseg.models.backbones.RASSBackbone` with any mmseg decode head.

    The prompt phrases come from ``prompt_source`` and are encoded once by the backbone's frozen text
    encoder; the embeddings are cached and broadcast to every batch, so inference costs nothing for text.
    The cache is dropped whenever a state dict is loaded. Everything else (``loss``, ``predict``,
    ``_forward``, whole/slide inference from ``test_cfg``) is mmseg's ``EncoderDecoder``.

    Args:
        backbone: Config of a backbone whose ``forward(images, encoder_hidden_states)`` returns features
            and which has ``encode_prompt(phrases)`` (``RASSBackbone``).
        decode_head: Config of any mmseg decode head.
        prompt_source: Config of a prompt source (``FixedTextPrompt``, ``ClassNamesPrompt``).
        neck: Optional neck config, e.g. ``FeatureProjection``.
        auxiliary_head: Optional auxiliary head config(s).
        train_cfg: Training config.
        test_cfg: Test config (``mode='whole'`` or ``'slide'`` with ``crop_size`` and ``stride``).
        data_preprocessor: Data preprocessor config.
        pretrained: Must stay None: the backbone's own ``pretrained`` names the Stable Diffusion folder.
        init_cfg: mmengine init config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 decode_head: ConfigType,
                 prompt_source: ConfigType = dict(type='FixedTextPrompt', text=''),
                 neck: OptConfigType = None,
                 auxiliary_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 pretrained: Optional[str] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        if pretrained is not None:
            raise ValueError("RASSEncoderDecoder: set the Stable Diffusion folder as backbone.pretrained, "
                             "not model.pretrained")
        super().__init__(backbone=backbone, decode_head=decode_head, neck=neck, auxiliary_head=auxiliary_head,
                         train_cfg=train_cfg, test_cfg=test_cfg, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self._check_head_channels()
        self.prompt_source = MODELS.build(prompt_source)
        self._prompt_embeddings: Optional[Tensor] = None
        self.register_load_state_dict_post_hook(RASSEncoderDecoder._drop_prompt_cache)

    def _check_head_channels(self) -> None:
        """One-line error at build time when an mmseg decode head's in_channels do not fit the features."""
        head = self.decode_head
        if not (hasattr(head, 'in_channels') and hasattr(head, 'in_index')):
            return  # heads that are not mmseg BaseDecodeHeads (e.g. Mask2Former) check their own inputs
        if self.with_neck and hasattr(self.neck, 'out_strides'):
            available = [self.neck.out_channels] * len(self.neck.out_strides)
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

    @staticmethod
    def _drop_prompt_cache(module: 'RASSEncoderDecoder', incompatible_keys) -> None:
        module._prompt_embeddings = None

    def prompt_embeddings(self) -> Tensor:
        """Text embeddings of the prompt, (1, L, D), computed on first use and cached."""
        if self._prompt_embeddings is None:
            self._prompt_embeddings = self.backbone.encode_prompt(self.prompt_source.phrases()).embeddings
        return self._prompt_embeddings

    def extract_feat(self, inputs: Tensor) -> List[Tensor]:
        """Backbone features of ``inputs`` (N, 3, H, W) in [-1, 1], through the neck when there is one."""
        embeddings = self.prompt_embeddings().to(inputs.device)
        x = self.backbone(inputs, embeddings)
        if self.with_neck:
            x = self.neck(x)
        return x

    def _forward(self, inputs: Tensor, data_samples: OptSampleList = None) -> Tensor:
        """Raw head output (``mode='tensor'``); semantic logits for heads that need data samples."""
        x = self.extract_feat(inputs)
        if 'batch_data_samples' not in inspect.signature(self.decode_head.forward).parameters:
            return self.decode_head.forward(x)
        if data_samples:
            batch_img_metas = [sample.metainfo for sample in data_samples]
        else:
            shape = tuple(inputs.shape[-2:])
            batch_img_metas = [dict(img_shape=shape, pad_shape=shape, ori_shape=shape)] * inputs.shape[0]
        return self.decode_head.predict(x, batch_img_metas, self.test_cfg)
