"""The degradation's operations with OpenCV and numpy, one image at a time: the CPU path.

On a CPU the batched torch operations pay for the ragged canvas (every image is processed at the size of the
largest one) and for torch's per-op thread synchronisation; OpenCV's ``filter2D``, ``resize`` and libjpeg do one
image's work with SIMD code and no padding to a common size. The random draws still come from the batch's
:class:`RandomSource` with the same stream names and shapes as on the torch backend (training noise fields on the
torch backend's canvas), so a generator advances identically and the same draws reach both backends.
"""
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from .blur_kernels import BlurKernelDraws
from .degradation_backend import DegradationBackend
from .noise import POISSON_LEVELS, QUANTILE_BINS, poisson_quantile_table
from .opencv_ops import blur_image, blur_kernels_numpy, jpeg_image, luma_image, resize_image, to_8bit
from .random_source import RandomSource
from .resize import RESIZE_MODES

__all__ = ['ImageList', 'OpenCVBackend']

_FLOAT = np.float32


class ImageList:
    """A batch of images of their own sizes, as ``(h, w, 3)`` float32 C-contiguous numpy arrays.

    Args:
        images: The images.
        canvas: ``(height, width)`` of the canvas the torch backend would hold them in at this step.
    """

    def __init__(self, images: List[np.ndarray], canvas: Tuple[int, int]) -> None:
        self.images = images
        self.canvas = (int(canvas[0]), int(canvas[1]))

    def __len__(self) -> int:
        return len(self.images)


def _field(random: RandomSource, stream: str, batch: ImageList, channels: Sequence[int],
           normal: bool) -> List[np.ndarray]:
    """Per-image ``(c, h, w)`` noise fields drawn exactly as the torch backend draws them.

    A generator source draws one ``(n, 3, H, W)`` field on the canvas (the torch backend's draw, so the generator
    advances identically) and each image takes its top-left corner. A keyed source gives the same numbers
    whatever the field's shape, so each image draws only its own ``(c, h, w)``, ``c`` being 1 where only
    channel 0 is used (gray noise).
    """
    if not random.is_batch_invariant:
        field = (random.normal if normal else random.uniform)(stream, (3, *batch.canvas)).numpy()
        return [field[index, :, :image.shape[0], :image.shape[1]] for index, image in enumerate(batch.images)]
    fields = []
    for index, image in enumerate(batch.images):
        single = random.subset(torch.tensor([index], device=random.device))
        draw = single.normal if normal else single.uniform
        fields.append(draw(stream, (channels[index], *image.shape[:2]))[0].numpy())
    return fields


_noise_tables: Dict[str, np.ndarray] = {}


def _poisson_noise_table() -> np.ndarray:
    """Poisson noise by table index ``k * 4096 + m``: ``count(k, m) / 256 - k / 255`` with the float32 operations
    of :func:`.noise.add_poisson_noise` (``count * (1 / 256) - k * float32(1 / 255)``), so a lookup gives its bits."""
    if 'noise' not in _noise_tables:
        counts = poisson_quantile_table(torch.device('cpu')).numpy().reshape(256, QUANTILE_BINS)
        levels = np.arange(256, dtype=_FLOAT).reshape(-1, 1)
        noise = counts * _FLOAT(1.0 / POISSON_LEVELS) - levels * _FLOAT(1.0 / 255.0)
        _noise_tables['noise'] = np.ascontiguousarray(noise.reshape(-1), dtype=_FLOAT)
    return _noise_tables['noise']


class OpenCVBackend(DegradationBackend):
    """The libjpeg-faithful operations image by image with OpenCV and numpy (CPU tensors only)."""

    name = 'opencv'
    ops = 'libjpeg'

    def load(self, images: torch.Tensor) -> ImageList:
        if images.device.type != 'cpu':
            raise ValueError(f"the 'opencv' degradation backend runs on CPU tensors, got a batch on "
                             f"{images.device}; use backend='auto' or 'torch'")
        planes = images.detach().contiguous().numpy()
        return ImageList([cv2.merge(list(image)) for image in planes], images.shape[-2:])

    def unload(self, batch: ImageList, like: torch.Tensor) -> torch.Tensor:
        # quantize_to_8bit's result: round(255 * clip(x, 0, 1)) / 255 (to_8bit rounds as torch.round does).
        levels = np.stack([to_8bit(image).transpose(2, 0, 1) for image in batch.images]).astype(_FLOAT)
        levels /= _FLOAT(255.0)
        return torch.from_numpy(levels).to(like.device)

    def blur(self, batch: ImageList, sizes: torch.Tensor, kernels: BlurKernelDraws) -> ImageList:
        kernels = blur_kernels_numpy(kernels)
        return ImageList([blur_image(image, kernel) for image, kernel in zip(batch.images, kernels)], batch.canvas)

    def resize(self, batch: ImageList, sizes: torch.Tensor, out_sizes: torch.Tensor, modes: torch.Tensor,
               canvas: Tuple[int, int], scales: Optional[torch.Tensor] = None) -> ImageList:
        if scales is not None:
            raise ValueError("the 'opencv' degradation backend resizes on F.interpolate(size=...)'s grid only "
                             "(ops='libjpeg')")
        images = [
            resize_image(image, height, width, RESIZE_MODES[mode])
            for image, (height, width), mode in zip(batch.images, out_sizes.tolist(), modes.tolist())
        ]
        return ImageList(images, canvas)

    def gaussian_noise(self, batch: ImageList, random: RandomSource, stream: str, sigma: torch.Tensor,
                       gray: torch.Tensor) -> ImageList:
        gray = gray.tolist()
        fields = _field(random, stream, batch, [1 if flag else 3 for flag in gray], normal=True)
        images = []
        for image, field, level, flag in zip(batch.images, fields, sigma.numpy(), gray):
            # images + noise * sigma, as add_gaussian_noise computes it.
            noise = field[0][..., None] if flag else field.transpose(1, 2, 0)
            images.append(image + noise * level)
        return ImageList(images, batch.canvas)

    def poisson_noise(self, batch: ImageList, random: RandomSource, stream: str, scale: torch.Tensor,
                      gray: torch.Tensor, sizes: Optional[torch.Tensor] = None) -> ImageList:
        gray = gray.tolist()
        fields = _field(random, stream, batch, [1 if flag else 3 for flag in gray], normal=False)
        noise_table = _poisson_noise_table()
        images = []
        for image, field, level, flag in zip(batch.images, fields, scale.numpy(), gray):
            # add_poisson_noise's operations: the 8-bit level k of the image (of its luma where gray) and the
            # uniform u pick the noise count(k, u) / 256 - k / 255 from one table.
            source = luma_image(image)[..., None] if flag else image
            uniform = field[0][..., None] if flag else field.transpose(1, 2, 0)
            levels = to_8bit(source)
            # u < 1 - 2**-25, so floor(u * 4096) <= 4095 without the clamp the torch code applies.
            index = (uniform * _FLOAT(QUANTILE_BINS)).astype(np.int32)
            index += levels.astype(np.int32) * np.int32(QUANTILE_BINS)
            images.append(image + noise_table[index] * level)
        return ImageList(images, batch.canvas)

    def clamp(self, batch: ImageList) -> ImageList:
        return ImageList([np.clip(image, 0.0, 1.0) for image in batch.images], batch.canvas)

    def jpeg(self, batch: ImageList, sizes: torch.Tensor, quality: torch.Tensor) -> ImageList:
        # libjpeg takes an integer quality: the drawn quality rounded to the nearest integer.
        qualities = quality.double().round().clamp(1, 100).long().tolist()
        return ImageList([jpeg_image(image, value) for image, value in zip(batch.images, qualities)], batch.canvas)

    def apply_to_subset(self, batch: ImageList, selected: torch.Tensor,
                        operation: Callable[[ImageList, torch.Tensor], ImageList]) -> ImageList:
        index = torch.nonzero(selected).flatten()
        if index.numel() == 0:
            return batch
        positions = index.tolist()
        done = operation(ImageList([batch.images[position] for position in positions], batch.canvas), index)
        images = list(batch.images)
        for position, image in zip(positions, done.images):
            images[position] = image
        return ImageList(images, done.canvas)
