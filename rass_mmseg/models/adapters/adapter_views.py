"""Run one UNet with some of its LoRA adapters, or none, without touching what trains.

VSD (OSEDiff's variational score distillation) needs three views of the SCR UNet in one step: the generator (the SCR
adapter), the frozen pretrained model (no adapter) and the regularizer (its own adapter). One UNet serves all three:
diffusers' ``set_adapter`` / ``disable_adapters`` / ``enable_adapters`` pick the active adapters of every LoRA layer,
and ``torch.func``'s ``functional_call`` swaps in the original weights of modules the generator trains in full
(``conv_in``). What diffusers lacks is the way back: its switches (peft's underneath) also change ``requires_grad``,
and nothing restores the previous choice; the context manager here restores both on exit.
"""
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Sequence

from diffusers import UNet2DConditionModel
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import Tensor, nn
from torch.func import functional_call

__all__ = ['active_adapters', 'call_with_weights']


@contextmanager
def active_adapters(unet: UNet2DConditionModel, names: Optional[Sequence[str]]) -> Iterator[None]:
    """Within the block, only the adapters ``names`` of ``unet`` act (``None``: none does).

    The active adapters are switched for the whole UNet (every LoRA layer gets the same). ``requires_grad`` of every
    parameter and the previously active adapters, enabled or disabled, are restored on exit.
    """
    flags = [(param, param.requires_grad) for param in unet.parameters()]
    previous = unet.active_adapters()
    disabled = any(module.disable_adapters for module in unet.modules() if isinstance(module, BaseTunerLayer))
    try:
        if names is None:
            unet.disable_adapters()
        else:
            unet.enable_adapters()
            unet.set_adapter(list(names))
        yield
    finally:
        if disabled:
            unet.disable_adapters()
        else:
            unet.enable_adapters()
        unet.set_adapter(previous)
        for param, flag in flags:
            param.requires_grad_(flag)


def call_with_weights(model: nn.Module, weights: Dict[str, Tensor], *args, **kwargs):
    """``model(*args, **kwargs)`` with some parameters replaced by ``weights`` (name -> tensor) for this call only."""
    return functional_call(model, weights, args, kwargs, strict=False) if weights else model(*args, **kwargs)
