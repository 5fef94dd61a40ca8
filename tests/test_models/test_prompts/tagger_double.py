"""A stand-in with the RAM tagger's interface (``scores``, ``tag``; images RGB in [-1, 1], resized to ``image_size``)
whose tags depend on the image's brightness and colour, so tags of a padded image, of the image and of its windows
differ. It records every batch it tags (``seen``) and loads its one weight from a safetensors file."""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

TONES = 40  # brightness levels, one tag each
COLOURS = ('red', 'green', 'blue')


@MODELS.register_module(force=True)
class MeanColourTagger(nn.Module):
    """Tags: ``'tone <k>'`` (the mean brightness in ``TONES`` levels) and the dominant colour, plus ``extra``.

    Args:
        image_size: Side the images are resized to first (bilinear, antialiased), as RAM's 384.
        weights: A safetensors file with ``weight`` (3 channel gains); None keeps ones.
        extra: Text appended as a further tag (e.g. a long one, to test truncation).
    """

    def __init__(self, image_size: int = 16, weights: Optional[str] = None, extra: str = '') -> None:
        super().__init__()
        self.image_size = image_size
        self.extra = extra
        self.weight = nn.Parameter(torch.ones(3))
        if weights is not None:
            self.weight.data.copy_(load_file(weights)['weight'])
        self.seen: List[Tensor] = []

    def scores(self, images: Tensor) -> Tensor:
        """(N, TONES + 3): one-hot brightness level, then the channel means."""
        self.seen.append(images.detach().clone())
        small = F.interpolate(images, size=(self.image_size, ) * 2, mode='bilinear', antialias=True,
                              align_corners=False)
        channels = small.mean(dim=(2, 3)) * self.weight
        level = ((channels.mean(1) + 1) / 2 * TONES).long().clamp(0, TONES - 1)
        return torch.cat([F.one_hot(level, TONES).to(channels), channels], dim=1)

    def tag(self, images: Tensor) -> List[str]:
        scores = self.scores(images)
        tags = []
        for row in scores:
            words = [f'tone {int(row[:TONES].argmax())}', COLOURS[int(row[TONES:].argmax())]]
            tags.append(', '.join(words + ([self.extra] if self.extra else [])))
        return tags


def write_weights(path: str, gains=(1.0, 0.5, 2.0)) -> str:
    save_file({'weight': torch.tensor(gains)}, path)
    return path
