"""Where the degradation's operations run and which ones: the interface shared by every backend.

:class:`SecondOrderDegradation` owns the pipeline: the order of the steps and every random draw. A backend only
carries out the operations on a batch held in its own form (a ragged-batch canvas tensor for the torch backends,
a list of numpy images for :class:`OpenCVBackend`), so the same draws reach every backend and only the arithmetic
differs. Each backend class implements one set of operations (its :attr:`~DegradationBackend.ops`, the value of
the ``ops`` key) on one library (its :attr:`~DegradationBackend.name`, the value of the ``backend`` key);
:mod:`.backend_registry` lists them.
"""
from typing import Any, Callable, Optional, Sequence, Tuple

import torch

from .blur_kernels import BlurKernelDraws
from .random_source import RandomSource

__all__ = ['DegradationBackend']


class DegradationBackend:
    """The operations of the second-order degradation on a batch in the backend's own form.

    Sizes are ``(B, 2)`` long tensors of the images' ``(h, w)``; per-sample parameters are ``(B,)`` tensors.
    """

    #: Name of the backend (the value of the ``backend`` config key that selects it).
    name: str = ''
    #: The set of operations it implements (the value of the ``ops`` config key that selects it).
    ops: str = ''
    #: Whether stage 1's resize samples on ``F.interpolate(scale_factor=...)``'s grid (the pipeline then passes
    #: the drawn scales to :meth:`resize`) instead of ``F.interpolate(size=...)``'s.
    scale_factor_first_resize: bool = False

    @classmethod
    def check_jpeg_range(cls, key: str, jpeg_range: Sequence[float]) -> None:
        """Refuse, in one line naming ``key``, a JPEG quality range (already within [1, 100]) that this backend's
        codec cannot run; the pipeline asks at construction. Every quality in [1, 100] runs by default."""

    def load(self, images: torch.Tensor) -> Any:
        """The batch ``(B, 3, H, W)`` float32 RGB in [0, 1] in the backend's form."""
        raise NotImplementedError

    def unload(self, batch: Any, like: torch.Tensor) -> torch.Tensor:
        """The batch rounded to 8 bit (multiples of 1/255 in [0, 1]) as a float32 ``(B, 3, H, W)`` tensor on the
        device of ``like``."""
        raise NotImplementedError

    def blur(self, batch: Any, sizes: torch.Tensor, kernels: BlurKernelDraws) -> Any:
        """Correlate each image with the kernel of its draws, reflecting at its own border (the backend builds the
        kernels: the torch backend with :func:`blur_kernels_from_draws`, the OpenCV backend with numpy)."""
        raise NotImplementedError

    def resize(self, batch: Any, sizes: torch.Tensor, out_sizes: torch.Tensor, modes: torch.Tensor,
               canvas: Tuple[int, int], scales: Optional[torch.Tensor] = None) -> Any:
        """Resize each image to its ``out_sizes`` with its mode (indices into ``RESIZE_MODES``).

        Args:
            batch: The batch.
            sizes: Current sizes.
            out_sizes: Target sizes.
            modes: Interpolation modes.
            canvas: Canvas of the resized ragged batch (what the torch backend allocates; the OpenCV backend
                draws its training noise fields on it, so both consume a generator identically).
            scales: ``(B,)`` float64 scale factors when the sampling grid is ``F.interpolate(scale_factor=...)``'s
                (source ``(i + 0.5) / scale - 0.5``), else ``None`` (``F.interpolate(size=...)``'s).
        """
        raise NotImplementedError

    def gaussian_noise(self, batch: Any, random: RandomSource, stream: str, sigma: torch.Tensor,
                       gray: torch.Tensor) -> Any:
        """Add ``sigma * N(0, 1)`` drawn from ``random`` under ``stream`` (channel 0's field on every channel
        where ``gray``), not clipped."""
        raise NotImplementedError

    def poisson_noise(self, batch: Any, random: RandomSource, stream: str, scale: torch.Tensor, gray: torch.Tensor,
                      sizes: Optional[torch.Tensor] = None) -> Any:
        """Add ``scale`` times Poisson noise of the 8-bit image (of its luma where ``gray``), not clipped
        (``sizes``: the images' sizes, ``None`` when they fill the canvas)."""
        raise NotImplementedError

    def clamp(self, batch: Any) -> Any:
        """Clip every image to [0, 1]."""
        raise NotImplementedError

    def jpeg(self, batch: Any, sizes: torch.Tensor, quality: torch.Tensor) -> Any:
        """JPEG-compress and decode each image with its quality (images clipped to [0, 1] first)."""
        raise NotImplementedError

    def apply_to_subset(self, batch: Any, selected: torch.Tensor, operation: Callable[[Any, torch.Tensor],
                                                                                      Any]) -> Any:
        """Run ``operation(batch[index], index)`` on the selected samples (``(B,)`` bool) and put them back."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'
