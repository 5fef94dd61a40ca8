"""RAM, the Recognize Anything image tagger (arXiv 2306.03514), and DAPE (its LoRA fine-tune on degraded images,
SeeSR, arXiv 2311.16518): the taggers whose tags the public RASS code writes into its Stable Diffusion prompt.

The image (resized to ``image_size`` and ImageNet-normalised) goes through a Swin Transformer (timm's); its final
tokens, preceded by their mean, are projected to ``label_dim`` and decoded into one sigmoid score per tag by
:class:`~.ram_tagging_head.RAMTaggingHead`. A tag is kept when its score exceeds its own threshold; kept tags are
joined by ``', '`` in tag-list order. Weights come from the public checkpoint through
:func:`rass_mmseg.converters.official_ram.convert_official_tagger` (LoRA merged), as a ``.safetensors`` file.
"""
import os.path as osp
from typing import List, Optional

import torch
from mmseg.registry import MODELS
from safetensors.torch import load_file
from timm.models.swin_transformer import SwinTransformer
from torch import Tensor, nn
from torch.nn import functional as F

from .ram_tagging_head import RAMTaggingHead

__all__ = ['RAMTagger', 'read_tag_list', 'read_thresholds']

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Swin-L, window 12 (RAM's ``configs/swin/config_swinL_384.json``).
SWIN_L = dict(patch_size=4, embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=12)
#: RAM's tagging head (``configs/q2l_config.json``).
Q2L = dict(hidden_size=768, num_heads=4, intermediate_size=3072, num_layers=2)


def _lines(path: str, what: str) -> List[str]:
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: no such file (the {what})')
    with open(path, encoding='utf-8') as file:
        return file.read().splitlines()


def read_tag_list(path: str) -> List[str]:
    """The tags, one per line (RAM's ``data/ram_tag_list.txt``)."""
    return _lines(path, 'tag list')


def read_thresholds(path: str) -> List[float]:
    """The per-tag thresholds, one number per line (RAM's ``data/ram_tag_list_threshold.txt``)."""
    values = []
    for number, line in enumerate(_lines(path, 'tag thresholds'), 1):
        try:
            values.append(float(line))
        except ValueError:
            raise ValueError(f'{path}: line {number} is {line!r}, expected one threshold per line') from None
    return values


@MODELS.register_module()
class RAMTagger(nn.Module):
    """The RAM / DAPE image tagger: images -> per-tag scores -> a comma-separated tag string per image.

    Frozen and always in eval mode (``train()`` keeps it in eval); computes in the dtype of its parameters.

    Args:
        image_size: Side of the square image the Swin Transformer takes (RAM: 384).
        swin: timm ``SwinTransformer`` arguments (``patch_size``, ``embed_dim``, ``depths``, ``num_heads``,
            ``window_size``, ...); default Swin-L of RAM.
        head: :class:`RAMTaggingHead` arguments (``hidden_size``, ``num_heads``, ``intermediate_size``,
            ``num_layers``); default RAM's.
        label_dim: Width of the label embeddings and of the projected image tokens (RAM: 512).
        tag_list: Path of the tag list, one tag per line; its length is the number of tags.
        thresholds: Path of the per-tag thresholds, one per line, as many as tags.
        weights: A ``.safetensors`` file in this module's layout (from
            :func:`~rass_mmseg.converters.official_ram.convert_official_tagger`); None leaves random weights.
    """

    def __init__(self, image_size: int = 384, swin: Optional[dict] = None, head: Optional[dict] = None,
                 label_dim: int = 512, tag_list: str = '', thresholds: str = '', weights: Optional[str] = None) -> None:
        super().__init__()
        self.image_size = image_size
        self.tags = read_tag_list(tag_list)
        values = read_thresholds(thresholds)
        if len(values) != len(self.tags):
            raise ValueError(f'{thresholds}: {len(values)} thresholds for the {len(self.tags)} tags of {tag_list}; '
                             'expected one per tag')
        # float32 whatever the module's dtype: the public code compares its scores with float32 thresholds
        self.thresholds = torch.tensor(values, dtype=torch.float32)
        swin = dict(SWIN_L if swin is None else swin)
        self.swin = SwinTransformer(img_size=image_size, num_classes=0, global_pool='', drop_path_rate=0.0, **swin)
        self.image_proj = nn.Linear(self.swin.num_features, label_dim)
        self.head = RAMTaggingHead(len(self.tags), label_dim, **(Q2L if head is None else head))
        if weights is not None:
            self.load_weights(weights)
        self.requires_grad_(False)
        self.eval()

    def load_weights(self, path: str) -> None:
        """Load a ``.safetensors`` state dict of this layout, with one-line errors naming ``path``."""
        if not osp.isfile(path):
            raise FileNotFoundError(f'{path}: no such file (the tagger weights)')
        state = load_file(path)
        rows = state.get('head.label_embed')
        if rows is not None and rows.shape[0] != len(self.tags):
            raise ValueError(f'{path}: {rows.shape[0]} label embeddings, the tag list has {len(self.tags)} tags; '
                             'expected one row per tag')
        ours = self.state_dict()
        missing = sorted(set(ours) - set(state))
        unexpected = sorted(set(state) - set(ours))
        if missing or unexpected:
            raise ValueError(f'{path}: not a tagger of this layout: {len(missing)} missing keys (e.g. {missing[:3]}), '
                             f'{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})')
        wrong = [(key, tuple(value.shape), tuple(ours[key].shape)) for key, value in state.items()
                 if value.shape != ours[key].shape]
        if wrong:
            key, got, want = wrong[0]
            raise ValueError(f'{path}: {len(wrong)} tensors of other shapes than this tagger (swin/head sizes?), e.g. '
                             f'{key} {got} where the model has {want}')
        self.load_state_dict(state, strict=True)

    def train(self, mode: bool = True) -> 'RAMTagger':
        """Stays in eval mode: the tagger is frozen."""
        return super().train(False)

    @property
    def num_tags(self) -> int:
        return len(self.tags)

    def preprocess(self, images: Tensor) -> Tensor:
        """[-1, 1] RGB images -> the Swin input: [0, 1], resized, ImageNet-normalised, in the module's dtype.

        The public code resizes with torchvision 0.16's ``transforms.Resize((384, 384))`` on a float tensor, whose
        defaults on tensors are bilinear interpolation with ``align_corners=False`` and NO antialiasing (torchvision
        0.17 changed the default to antialiasing). ``F.interpolate(..., mode='bilinear', align_corners=False,
        antialias=False)`` in float32 is that computation (torchvision casts other float dtypes to float32 too).

        Args:
            images: (N, 3, H, W) RGB in [-1, 1], any H and W.

        Returns:
            (N, 3, image_size, image_size).
        """
        x = images.to(torch.float64 if images.dtype == torch.float64 else torch.float32) * 0.5 + 0.5
        size = (self.image_size, self.image_size)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode='bilinear', align_corners=False, antialias=False)
        mean, std = (torch.tensor(v, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) for v in (IMAGENET_MEAN,
                                                                                                IMAGENET_STD))
        x = (x - mean) / std
        return x.to(self.image_proj.weight.dtype)

    @torch.no_grad()
    def scores(self, images: Tensor) -> Tensor:
        """Per-tag sigmoid scores.

        Args:
            images: (N, 3, H, W) RGB in [-1, 1].

        Returns:
            (N, num_tags) scores in [0, 1], in the module's dtype.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f'RAMTagger: images of shape {tuple(images.shape)}, expected (N, 3, H, W) RGB')
        tokens = self.swin.forward_features(self.preprocess(images)).flatten(1, 2)  # (N, L, C) after the final norm
        tokens = torch.cat((tokens.mean(dim=1, keepdim=True), tokens), dim=1)
        return torch.sigmoid(self.head(self.image_proj(tokens)))

    def tag(self, images: Tensor) -> List[str]:
        """The tags of each image whose score exceeds the tag's threshold, in tag-list order, joined by ``', '``.

        Args:
            images: (N, 3, H, W) RGB in [-1, 1].

        Returns:
            N strings (empty when no tag is kept).
        """
        scores = self.scores(images)
        kept = scores.float() > self.thresholds.to(scores.device)
        return [', '.join(self.tags[i] for i in row.nonzero().flatten().tolist()) for row in kept.cpu()]
