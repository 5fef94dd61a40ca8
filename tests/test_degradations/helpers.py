"""Helpers shared by the engine tests: keyed draws for a few images, and a real photo."""
import torch
import torch.nn.functional as F
from skimage import data

from rass_mmseg.degradations import KeyedRandomSource


def keyed(count: int, seed: int = 0) -> KeyedRandomSource:
    """Keyed (test-mode) draws for ``count`` images named ``image_<index>.png``."""
    return KeyedRandomSource.from_identities([f'image_{index}.png' for index in range(count)], seed)


def photo(size: int = 64) -> torch.Tensor:
    """A real RGB photo (scikit-image's astronaut), ``(1, 3, size, size)`` in [0, 1], 8-bit levels."""
    image = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float()
    return F.interpolate(image, size=(size, size), mode='area').round() / 255.0
