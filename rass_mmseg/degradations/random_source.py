"""Per-sample random numbers for a whole batch at once, from one of two sources.

Every random quantity of the degradation (a kernel's sigma, a noise field, a JPEG quality) is asked for by a
*stream name* and a per-sample shape, and comes back for the whole batch in one tensor:

* :class:`GeneratorRandomSource` (training): draws from one ``torch.Generator`` on the batch's device. Every call
  gives fresh numbers and a whole run is reproducible from the generator's seed.
* :class:`KeyedRandomSource` (benchmark making): a counter-based generator. Each number is a hash of
  (seed, image identity, stream name, element coordinates), computed with integer tensor ops for all samples and
  elements at once. The numbers of an image therefore do not depend on the other images of the batch, on its
  position in the batch or on the canvas size, which makes the degradation of an image a function of
  (seed, identity, image) only.
"""
import hashlib
import os.path as osp
import zlib
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ['RandomSource', 'GeneratorRandomSource', 'KeyedRandomSource', 'identity_keys', 'image_identity']

# Keyed fields address each element by (i0, i1, i2) packed into 32 bits: 2 bits for the leading axis (channels)
# and 15 bits for each of the two spatial axes.
_KEYED_SPATIAL_LIMIT = 1 << 15
_KEYED_LEADING_LIMIT = 4
_MASK32 = 0xFFFFFFFF
# Keep uniforms away from 0 and 1 so that log / ndtri of them stay finite (1 - 2**-24 is the float32 below 1).
_UNIFORM_EPS = 2.0**-24


class RandomSource:
    """Per-sample random numbers for a batch of ``batch_size`` samples on ``device``.

    Args:
        batch_size: Number of samples the source draws for.
        device: Device of the returned tensors.
    """

    #: True when an image's numbers do not depend on the rest of the batch.
    is_batch_invariant: bool = False

    def __init__(self, batch_size: int, device: torch.device) -> None:
        self.batch_size = batch_size
        self.device = torch.device(device)

    def uniform(self, stream: str, shape: Sequence[int] = ()) -> torch.Tensor:
        """Uniform numbers in the open interval (0, 1).

        Args:
            stream: Name of the random quantity (keyed sources derive independent numbers per name).
            shape: Per-sample shape.

        Returns:
            float32 tensor of shape ``(batch_size, *shape)``.
        """
        raise NotImplementedError

    def normal(self, stream: str, shape: Sequence[int] = ()) -> torch.Tensor:
        """Standard normal numbers, float32 tensor of shape ``(batch_size, *shape)``."""
        raise NotImplementedError

    def subset(self, index: torch.Tensor) -> 'RandomSource':
        """The source restricted to the samples ``index`` (1-D long tensor) of this batch."""
        raise NotImplementedError

    def uniform_range(self, stream: str, low: float, high: float) -> torch.Tensor:
        """One number per sample, uniform in ``[low, high]``: shape ``(batch_size,)``."""
        return low + (high - low) * self.uniform(stream)

    def bernoulli(self, stream: str, prob: float) -> torch.Tensor:
        """One bool per sample, True with probability ``prob``: shape ``(batch_size,)``."""
        return self.uniform(stream) < prob

    def categorical(self, stream: str, probs: Sequence[float]) -> torch.Tensor:
        """One category index per sample drawn with ``probs``: long tensor of shape ``(batch_size,)``."""
        edges = torch.tensor(list(_cumulative(probs))[:-1], dtype=torch.float32, device=self.device)
        return (self.uniform(stream)[:, None] >= edges).sum(dim=1)


def _cumulative(probs: Sequence[float]) -> Sequence[float]:
    total, out = 0.0, []
    for prob in probs:
        total += float(prob)
        out.append(total)
    return out


class GeneratorRandomSource(RandomSource):
    """Fresh numbers from one ``torch.Generator`` for the whole batch (training).

    Args:
        generator: Generator on ``device``; it advances with every draw.
        batch_size: Number of samples.
        device: Device of the generator and of the returned tensors.
    """

    def __init__(self, generator: torch.Generator, batch_size: int, device: torch.device) -> None:
        super().__init__(batch_size, device)
        self.generator = generator

    def uniform(self, stream: str, shape: Sequence[int] = ()) -> torch.Tensor:
        values = torch.rand((self.batch_size, *shape), generator=self.generator, device=self.device)
        return values.clamp_(_UNIFORM_EPS, 1.0 - _UNIFORM_EPS)

    def normal(self, stream: str, shape: Sequence[int] = ()) -> torch.Tensor:
        return torch.randn((self.batch_size, *shape), generator=self.generator, device=self.device)

    def subset(self, index: torch.Tensor) -> 'GeneratorRandomSource':
        return GeneratorRandomSource(self.generator, int(index.numel()), self.device)


def image_identity(img_path: str) -> str:
    """The identity that seeds an image's test-mode degradation: its file name.

    The name, not the full path, so that a dataset moved to another root degrades to the same bits.

    Args:
        img_path: Path of the image file.
    """
    return osp.basename(str(img_path))


def identity_keys(identities: Sequence[str], seed: int) -> torch.Tensor:
    """64-bit keys of images from a seed and their identities (e.g. file names), as two 32-bit halves.

    Args:
        identities: One identity string per image.
        seed: Benchmark seed.

    Returns:
        int64 tensor of shape ``(len(identities), 2)`` with values in ``[0, 2**32)``, on the CPU.
    """
    keys = []
    for identity in identities:
        digest = hashlib.sha256(f'{int(seed)}\0{identity}'.encode('utf-8')).digest()
        keys.append([int.from_bytes(digest[0:4], 'little'), int.from_bytes(digest[4:8], 'little')])
    return torch.tensor(keys, dtype=torch.int64).reshape(len(keys), 2)


def _mix32(values: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with full avalanche (the 'lowbias32' constants of C. Wellons' hash prospector).

    Values are bit patterns held in int32 tensors. Right shifts of int32 are arithmetic in torch, so they are
    masked to act as logical shifts; multiplications wrap modulo 2**32.
    """
    values = values ^ ((values >> 16) & 0xFFFF)
    values = values * 0x7FEB352D
    values = values ^ ((values >> 15) & 0x1FFFF)
    values = values * (0x846CA68B - (1 << 32))
    return values ^ ((values >> 16) & 0xFFFF)


def _mix32_numpy(values: np.ndarray) -> np.ndarray:
    """:func:`_mix32` on a uint32 numpy array, in place (numpy's uint32 shifts are logical and its products wrap
    modulo 2**32, so no masking is needed)."""
    values ^= values >> np.uint32(16)
    values *= np.uint32(0x7FEB352D)
    values ^= values >> np.uint32(15)
    values *= np.uint32(0x846CA68B)
    values ^= values >> np.uint32(16)
    return values


def _as_int32(values: torch.Tensor) -> torch.Tensor:
    """int64 values in ``[0, 2**32)`` to the int32 tensor with the same bit pattern."""
    values = values & _MASK32
    return torch.where(values >= (1 << 31), values - (1 << 32), values).to(torch.int32)


def _stream_code(stream: str) -> int:
    return zlib.crc32(stream.encode('utf-8'))


class KeyedRandomSource(RandomSource):
    """Counter-based numbers keyed by (image key, stream name, element coordinates) (benchmark making).

    A keyed field of per-sample shape ``(d0, d1, d2)`` addresses element ``(i0, i1, i2)`` by the 32-bit counter
    ``i0 * 2**30 + i1 * 2**15 + i2``; shorter shapes use the trailing axes. The value of an element therefore only
    depends on its coordinates, so a larger canvas gives the same numbers where the image is.

    Args:
        keys: int64 tensor ``(batch_size, 2)`` of per-image keys from :func:`identity_keys`.
        device: Device of the returned tensors.
    """

    is_batch_invariant = True

    def __init__(self, keys: torch.Tensor, device: torch.device) -> None:
        super().__init__(int(keys.shape[0]), device)
        if keys.ndim != 2 or keys.shape[1] != 2:
            raise ValueError(f'keys must have shape (batch_size, 2), got {tuple(keys.shape)}')
        self.keys = keys.to(device=self.device, dtype=torch.int64)

    @classmethod
    def from_identities(cls, identities: Sequence[str], seed: int,
                        device: Optional[torch.device] = None) -> 'KeyedRandomSource':
        """Source for images named by ``identities`` under benchmark ``seed``."""
        return cls(identity_keys(identities, seed), torch.device('cpu') if device is None else device)

    def subset(self, index: torch.Tensor) -> 'KeyedRandomSource':
        return KeyedRandomSource(self.keys[index.to(self.keys.device)], self.device)

    def _stream_keys(self, stream: str) -> tuple:
        code = _stream_code(stream)
        first = _mix32(_as_int32(self.keys[:, 0] ^ code))
        second = _mix32(_as_int32(self.keys[:, 1] + ((code * 0x9E3779B1) & _MASK32)))
        return first, second

    @staticmethod
    def _layout(shape: Sequence[int]) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        """The field shape and the counter stride of each of its axes, checked against the counter's limits."""
        shape = tuple(int(size) for size in shape)
        if len(shape) > 3:
            raise ValueError(f'keyed random fields support at most 3 per-sample axes, got shape {shape}')
        strides = (1 << 30, 1 << 15, 1)[3 - len(shape):]
        limits = (_KEYED_LEADING_LIMIT, _KEYED_SPATIAL_LIMIT, _KEYED_SPATIAL_LIMIT)[3 - len(shape):]
        if len(shape) == 1:
            limits = (1 << 31,)
        for axis, (size, limit) in enumerate(zip(shape, limits)):
            if size > limit:
                raise ValueError(f'keyed random field shape {shape}: axis {axis} has {size} elements, '
                                 f'the keyed (test-mode) generator supports at most {limit}')
        return shape, strides

    def _counters(self, shape: Sequence[int]) -> torch.Tensor:
        shape, strides = self._layout(shape)
        counters = torch.zeros((), dtype=torch.int64, device=self.device)
        for axis, (size, stride) in enumerate(zip(shape, strides)):
            view = [1] * len(shape)
            view[axis] = size
            counters = counters + torch.arange(size, dtype=torch.int64, device=self.device).view(view) * stride
        return _as_int32(counters)

    def _bits(self, stream: str, shape: Sequence[int]) -> torch.Tensor:
        first, second = self._stream_keys(stream)
        extra_axes = (1, ) * len(shape)
        counters = self._counters(shape).unsqueeze(0)
        hashed = _mix32(counters * (0x9E3779B1 - (1 << 32)) + first.view(-1, *extra_axes))
        return _mix32(hashed ^ second.view(-1, *extra_axes))

    def _uniform_numpy(self, stream: str, shape: Sequence[int]) -> torch.Tensor:
        """:meth:`uniform` with numpy's uint32 arithmetic (CPU): the same hash, so the same bits, without torch's
        per-op thread synchronisation (some twenty passes over the field)."""
        shape, strides = self._layout(shape)
        counters = np.zeros((), dtype=np.uint32)
        for axis, (size, stride) in enumerate(zip(shape, strides)):
            view = [1] * len(shape)
            view[axis] = size
            counters = counters + np.arange(size, dtype=np.uint32).reshape(view) * np.uint32(stride)
        first, second = (key.numpy().view(np.uint32).reshape(-1, *(1, ) * len(shape))
                         for key in self._stream_keys(stream))
        bits = _mix32_numpy(counters[None] * np.uint32(0x9E3779B1) + first)
        bits = _mix32_numpy(np.bitwise_xor(bits, second, out=bits))
        uniform = ((bits >> np.uint32(9)) & np.uint32(0x7FFFFF)).astype(np.float32)
        uniform += np.float32(0.5)
        uniform *= np.float32(2.0**-23)
        return torch.from_numpy(uniform)

    def uniform(self, stream: str, shape: Sequence[int] = ()) -> torch.Tensor:
        if self.device.type == 'cpu':
            return self._uniform_numpy(stream, shape)
        bits = self._bits(stream, shape)
        # The centres of 2**23 equal cells: (k + 0.5) / 2**23 is exact in float32 and lies in [2**-24, 1 - 2**-24].
        return ((bits >> 9) & 0x7FFFFF).to(torch.float32).add_(0.5).mul_(2.0**-23)

    def normal(self, stream: str, shape: Sequence[int] = ()) -> torch.Tensor:
        # Inverse-CDF sampling needs one uniform per normal and keeps each element a function of its own counter.
        return torch.special.ndtri(self.uniform(stream, shape))

