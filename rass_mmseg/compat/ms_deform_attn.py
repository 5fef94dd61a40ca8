"""Run mmcv 2.1.0's multi-scale deformable attention on a GPU whatever the compiled ops can do.

Mask2Former's pixel decoder (mmdet's ``MSDeformAttnPixelDecoder``) is built from mmcv's
``MultiScaleDeformableAttention``. On a CUDA tensor its ``forward`` always calls the compiled kernel
(``MultiScaleDeformableAttnFunction``): mmcv checks ``torch.cuda.is_available()`` and ``value.is_cuda``, not whether
its ``_ext`` was built with CUDA. Two cases then fail although mmcv ships a pure-PyTorch implementation
(``multi_scale_deformable_attn_pytorch``, what it runs on a CPU):

1. the ext has no CUDA kernel (a CPU-only mmcv build, or a stand-in ``_ext``):
   ``ms_deform_attn_impl_forward: implementation for device cuda:0 not found``;
2. the input is bfloat16 (bf16 ``AmpOptimWrapper``): the kernel dispatches float/double/half only,
   ``"ms_deform_attn_forward_cuda" not implemented for 'BFloat16'``.

This module replaces the name ``MultiScaleDeformableAttnFunction`` inside ``mmcv.ops.multi_scale_deform_attn`` (the
only place ``forward`` reads it) with :class:`RoutedMSDeformAttnFunction`, a subclass of mmcv's autograd function
(same ``forward`` and ``backward``, so tools that look the function up, such as export rewriters, still find an
autograd ``Function`` of mmcv's type), whose ``apply`` picks per call:

- ``'kernel'``: the compiled kernel, unchanged, when the ext has kernels for the input's device and dtype;
- ``'kernel_float32'``: bfloat16 input with a CUDA ext: the kernel in float32, the output cast back;
- ``'pytorch'``: mmcv's ``multi_scale_deformable_attn_pytorch`` when the ext has no kernel for the device.

Each fallback is logged once per process. Nothing else about mmcv or mmdet changes; with a CUDA-built mmcv and
float32/float16 inputs the kernel runs as before.
"""
from typing import Optional, Set

import torch
from mmcv.ops import multi_scale_deform_attn
from mmengine.logging import print_log
from torch import Tensor

#: mmcv's own autograd function (the name holds :class:`RoutedMSDeformAttnFunction` once installed, whose
#: ``kernel`` is mmcv's: the module may be reloaded).
_MMCV_FUNCTION = getattr(multi_scale_deform_attn.MultiScaleDeformableAttnFunction, 'kernel',
                         multi_scale_deform_attn.MultiScaleDeformableAttnFunction)

__all__ = ['KERNEL_DTYPES', 'RoutedMSDeformAttnFunction', 'choose_route', 'ext_has_cuda_kernels', 'install']

#: Dtypes the compiled kernel dispatches (``AT_DISPATCH_FLOATING_TYPES_AND_HALF``).
KERNEL_DTYPES = (torch.float32, torch.float64, torch.float16)

_ext_cuda: Optional[bool] = None
_logged: Set[str] = set()


def ext_has_cuda_kernels() -> bool:
    """Whether mmcv's compiled ``_ext`` was built with CUDA (cached; False for a stand-in ext that raises)."""
    global _ext_cuda
    if _ext_cuda is None:
        try:
            from mmcv.ops import get_compiling_cuda_version
            version = str(get_compiling_cuda_version())
        except Exception:  # no ext, or a stand-in whose functions raise
            version = 'not available'
        _ext_cuda = version not in ('', 'not available')
    return _ext_cuda


def choose_route(device_type: str, dtype: torch.dtype, ext_cuda: bool) -> str:
    """Pick how to compute multi-scale deformable attention.

    Args:
        device_type: ``value.device.type``.
        dtype: ``value.dtype``.
        ext_cuda: Whether mmcv's ext has CUDA kernels (:func:`ext_has_cuda_kernels`).

    Returns:
        ``'kernel'``, ``'kernel_float32'`` or ``'pytorch'`` (see the module docstring).
    """
    if device_type == 'cuda' and not ext_cuda:
        return 'pytorch'
    if device_type not in ('cuda', 'mlu'):
        return 'pytorch'  # mmcv itself never calls the kernel here
    return 'kernel' if dtype in KERNEL_DTYPES else 'kernel_float32'


def _log_once(route: str, value: Tensor) -> None:
    if route == 'kernel' or route in _logged or (route == 'pytorch' and value.device.type != 'cuda'):
        return  # on a CPU mmcv itself uses the PyTorch implementation: nothing to report
    _logged.add(route)
    if route == 'pytorch':
        reason = ("mmcv's compiled ops have no CUDA kernel for MultiScaleDeformableAttention (mmcv built without "
                  "CUDA); using mmcv's pure-PyTorch multi_scale_deformable_attn_pytorch (same result, slower). "
                  'Rebuild mmcv with CUDA ops: bash tools/install.sh on the GPU host')
    else:
        reason = (f"mmcv's MultiScaleDeformableAttention kernel has no {value.dtype} implementation; running it in "
                  'float32 and casting the output back')
    print_log(f'rass_mmseg.compat.ms_deform_attn: {reason}', logger='current', level=30)


class RoutedMSDeformAttnFunction(_MMCV_FUNCTION):
    """mmcv's ``MultiScaleDeformableAttnFunction`` with an ``apply`` that routes each call (see
    :func:`choose_route`).

    ``apply`` takes the arguments of mmcv's function; every route is differentiable (the kernel through mmcv's own
    ``forward`` and ``backward``, inherited and run by autograd as this class, the casts and the PyTorch
    implementation through autograd).
    """

    #: mmcv's compiled autograd function, the base class.
    kernel = _MMCV_FUNCTION

    @classmethod
    def apply(cls, value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, sampling_locations: Tensor,
              attention_weights: Tensor, im2col_step: int) -> Tensor:
        """Multi-scale deformable attention, shape (bs, num_queries, embed_dims); arguments as mmcv's."""
        route = choose_route(value.device.type, value.dtype, ext_has_cuda_kernels())
        _log_once(route, value)
        if route == 'kernel':
            return super().apply(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                                 im2col_step)
        if route == 'kernel_float32':
            output = super().apply(value.float(), spatial_shapes, level_start_index, sampling_locations.float(),
                                   attention_weights.float(), im2col_step)
            return output.to(value.dtype)
        # the kernel casts locations and weights to the value's dtype; grid_sample needs them to agree
        return multi_scale_deform_attn.multi_scale_deformable_attn_pytorch(
            value, spatial_shapes, sampling_locations.to(value.dtype), attention_weights.to(value.dtype))


def install() -> bool:
    """Route mmcv's ``MultiScaleDeformableAttention`` through :class:`RoutedMSDeformAttnFunction` (idempotent).

    Returns:
        True (the fix is installed only where ``mmcv.ops`` imports, see ``rass_mmseg.compat.FIXES``).
    """
    multi_scale_deform_attn.MultiScaleDeformableAttnFunction = RoutedMSDeformAttnFunction
    return True
