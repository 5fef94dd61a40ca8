"""L_SCL of RASS's SCR stage: align the UNet's cross-attention maps of class words with ground-truth masks.

The paper names the loss but does not publish its form; this is the design of ``RASS.md`` ("OUR DESIGN"):
the SCR training prompt of an image lists the classes present in its ground truth, so every class token
has a mask. For each (image, class) pair the probabilities of the class's tokens are averaged over the
attention heads, over the captured layers (resized to the largest captured grid) and over the class's
tokens; the class mask is area-resized to the same grid; map and mask are normalised and compared.

Negatives: the prompt may also name classes that are absent from the image (distractors, so that the test-time
prompt of all class names is no surprise). Their mask is empty, and their attention is pushed to zero; under
``normalization='max'`` the map is scaled by the image's reference peak (the largest attention of a present class's
tokens, not differentiated), so an absent class attended as strongly as the best-attended present class costs as much
as a completely wrong mask.

Normalisation: by default (``normalization='none'``) the attention probabilities themselves are compared with the
masks (a word should take the attention of its class's pixels and none elsewhere) and the absent classes'
probabilities with zero. ``normalization='max'`` divides each map by its peak, so the loss sees where a word looks,
not how much of each pixel's attention it receives. That leaves a way out: a map that is zero everywhere but at one
pixel, anywhere, scores about the mask's area, below a flat map's 1 - area, without any knowledge of where the class
is. Measured on the tiny pretrained SD of the toy study (docs/en/advanced_guides/benchmarks.md): the positive term
falls from 0.77 to 0.18 (about the masks' mean area) and stays there, every word's attention goes to about zero, and
RASS with that SCR adapter merged segments worse than without it. ``mode='kl'``, which compares distributions over
the grid, takes ``'max'`` only.
"""
from typing import Dict, List, Mapping, Sequence

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor, nn

__all__ = ['CrossAttentionAlignmentLoss']

_EPS = 1e-8


def _mean_over_heads_and_layers(maps: Mapping[str, Tensor]) -> Tensor:
    """(N, L, H, W): captured (N, heads, h, w, L) maps averaged over heads and layers at the largest grid."""
    averaged = [m.mean(dim=1).permute(0, 3, 1, 2) for m in maps.values()]
    size = max((a.shape[-2:] for a in averaged), key=lambda s: s[0] * s[1])
    resized = [a if a.shape[-2:] == size else F.interpolate(a, size=size, mode='bilinear', align_corners=False)
               for a in averaged]
    return torch.stack(resized, dim=0).mean(dim=0)


@MODELS.register_module()
class CrossAttentionAlignmentLoss(nn.Module):
    """Semantic-constraint loss between cross-attention maps and class masks.

    Normalisation and distance per ``mode``:

    - ``'mse'``: the attention probability map vs the mask (fraction of each cell covered by the class); mean
      squared error over the grid.
    - ``'bce'``: the same maps, binary cross-entropy with the mask as target.
    - ``'kl'``: map and mask each divided by their spatial sum (distributions over the grid);
      KL(mask || map). Needs ``normalization='max'``.

    With ``normalization='max'`` each map is first divided by its spatial maximum.

    The loss is the mean over all (image, present class) pairs of the batch (the positive term), plus
    ``negative_weight`` times the mean over all (image, absent class) pairs of the negative term: the map as it is
    (``normalization='max'``: divided by the image's reference peak), against an empty mask (``'mse'``: mean
    square; ``'bce'``: cross-entropy with target 0; ``'kl'``, which has no distribution for an empty mask: mean
    absolute value). Pixels labelled ``ignore_index`` belong to no class. Images without an annotated class
    contribute nothing; a batch without any gives a zero loss that still depends on the maps (no NaN, no
    unused-parameter errors). :meth:`terms` returns the two terms unweighted, for logging.

    Args:
        mode: ``'mse'``, ``'bce'`` or ``'kl'``.
        loss_weight: Factor of the loss.
        negative_weight: Factor of the term of absent classes.
        normalization: ``'none'`` (attention probabilities as they are) or ``'max'`` (each map over its spatial
            maximum, absent classes over the present peak; the only one of ``mode='kl'``).
        ignore_index: Label value that marks unannotated pixels.
        loss_name: Key of the loss in the losses dict (must start with ``'loss_'`` to be optimised).
    """

    def __init__(self, mode: str = 'mse', loss_weight: float = 1.0, negative_weight: float = 1.0,
                 normalization: str = 'none', ignore_index: int = 255, loss_name: str = 'loss_scl') -> None:
        super().__init__()
        if mode not in ('mse', 'bce', 'kl'):
            raise ValueError(f"CrossAttentionAlignmentLoss mode must be 'mse', 'bce' or 'kl', got {mode!r}")
        if normalization not in ('max', 'none') or (mode == 'kl' and normalization != 'max'):
            raise ValueError(f"CrossAttentionAlignmentLoss normalization must be 'max' or 'none' ('max' for mode "
                             f"'kl'), got {normalization!r} with mode {mode!r}")
        self.mode = mode
        self.normalization = normalization
        self.loss_weight = loss_weight
        self.negative_weight = negative_weight
        self.ignore_index = ignore_index
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        """Key of this loss in the losses dict."""
        return self._loss_name

    def _distance(self, attention: Tensor, mask: Tensor) -> Tensor:
        """Per-pair distance of (P, H, W) attention maps and masks."""
        if self.mode == 'kl':
            p = mask.flatten(1) / mask.flatten(1).sum(dim=1, keepdim=True).clamp_min(_EPS)
            q = attention.flatten(1) / attention.flatten(1).sum(dim=1, keepdim=True).clamp_min(_EPS)
            return (p * (torch.log(p.clamp_min(_EPS)) - torch.log(q.clamp_min(_EPS)))).sum(dim=1)
        scaled = attention.flatten(1)
        if self.normalization == 'max':
            scaled = scaled / scaled.amax(dim=1, keepdim=True).clamp_min(_EPS)
        target = mask.flatten(1)
        if self.mode == 'mse':
            return ((scaled - target)**2).mean(dim=1)
        scaled = scaled.clamp(_EPS, 1 - _EPS)
        return F.binary_cross_entropy(scaled, target, reduction='none').mean(dim=1)

    def _negative_distance(self, scaled: Tensor) -> Tensor:
        """Per-pair distance of (P, H, W) maps (scaled by their image's reference peak under ``'max'``) to an empty
        mask."""
        scaled = scaled.flatten(1)
        if self.mode == 'mse':
            return (scaled**2).mean(dim=1)
        if self.mode == 'bce':
            return -torch.log((1 - scaled).clamp_min(_EPS)).mean(dim=1)
        return scaled.abs().mean(dim=1)

    def forward(self, attention_maps: Mapping[str, Tensor], class_token_positions: Sequence[Dict[int, List[int]]],
                gt_sem_seg: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            attention_maps: Layer name -> cross-attention probabilities (N, heads, h, w, L), as captured by
                :class:`~rass_mmseg.models.utils.cross_attention_capture.CrossAttentionStore`.
            class_token_positions: For each image, class index -> positions of the class name's tokens in
                the prompt sequence (length L).
            gt_sem_seg: Ground-truth labels (N, H, W) or (N, 1, H, W), any resolution.

        Returns:
            The weighted scalar loss.
        """
        return self.weigh(self.terms(attention_maps, class_token_positions, gt_sem_seg))

    def weigh(self, terms: Mapping[str, Tensor]) -> Tensor:
        """The loss from the unweighted ``terms`` of :meth:`terms`."""
        return self.loss_weight * (terms['positive'] + self.negative_weight * terms['negative'])

    def terms(self, attention_maps: Mapping[str, Tensor], class_token_positions: Sequence[Dict[int, List[int]]],
              gt_sem_seg: Tensor) -> Dict[str, Tensor]:
        """The unweighted ``'positive'`` (present classes) and ``'negative'`` (absent classes) terms; arguments as
        :meth:`forward`. A term without pairs is a zero that depends on the maps."""
        if not attention_maps:
            raise ValueError('CrossAttentionAlignmentLoss: no cross-attention maps were captured')
        attention = _mean_over_heads_and_layers(attention_maps)  # (N, L, H, W)
        if gt_sem_seg.dim() == 4:
            gt_sem_seg = gt_sem_seg.squeeze(1)
        if len(class_token_positions) != attention.shape[0] or gt_sem_seg.shape[0] != attention.shape[0]:
            raise ValueError(f'CrossAttentionAlignmentLoss: {attention.shape[0]} attention maps, '
                             f'{len(class_token_positions)} token maps and {gt_sem_seg.shape[0]} label maps')
        maps, masks, negatives = [], [], []
        for index, positions in enumerate(class_token_positions):
            image_maps, image_negatives = [], []
            for label, tokens in positions.items():
                if not tokens:
                    continue
                if max(tokens) >= attention.shape[1]:
                    raise ValueError(f'CrossAttentionAlignmentLoss: token position {max(tokens)} of class {label} is '
                                     f'outside the prompt of {attention.shape[1]} tokens')
                class_map = attention[index, tokens].mean(dim=0)
                mask = (gt_sem_seg[index] == label).to(attention.dtype)
                if mask.any():
                    image_maps.append(class_map)
                    masks.append(mask)
                else:
                    image_negatives.append(class_map)
            maps += image_maps
            if image_negatives and image_maps:
                peak = (torch.stack(image_maps).amax().detach().clamp_min(_EPS)
                        if self.normalization == 'max' else None)
                negatives += [m if peak is None else m / peak for m in image_negatives]
        zero = attention.sum() * 0.0
        if not maps:
            return dict(positive=zero, negative=zero)
        masks = F.adaptive_avg_pool2d(torch.stack(masks)[:, None], attention.shape[-2:])[:, 0]
        positive = self._distance(torch.stack(maps), masks).mean()
        negative = self._negative_distance(torch.stack(negatives)).mean() if negatives else zero
        return dict(positive=positive, negative=negative)
