"""Run one UNet with some of its LoRA adapters, or none, without touching what trains.

VSD (OSEDiff's variational score distillation) needs three views of the SCR UNet in one step: the generator (the SCR
adapter), the frozen pretrained model (no adapter) and the regularizer (its own adapter). One UNet serves all three:
peft's ``set_adapter`` / ``enable_adapters`` pick the active adapters of every LoRA layer, and ``torch.func``'s
``functional_call`` swaps in the original weights of modules the generator trains in full (``conv_in``). peft's
switches also change ``requires_grad``; the context manager here restores every flag on exit.
"""
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Sequence

from peft.tuners.tuners_utils import BaseTunerLayer
from torch import Tensor, nn
from torch.func import functional_call

__all__ = ['active_adapters', 'call_with_weights']


@contextmanager
def active_adapters(model: nn.Module, names: Optional[Sequence[str]]) -> Iterator[None]:
    """Within the block, only the adapters ``names`` of ``model`` act (``None``: none does).

    ``requires_grad`` of every parameter and the previously active adapters are restored on exit.
    """
    flags = [(param, param.requires_grad) for param in model.parameters()]
    layers = [module for module in model.modules() if isinstance(module, BaseTunerLayer)]
    previous = [(list(layer.active_adapters), layer.disable_adapters) for layer in layers]
    try:
        for layer in layers:
            if names is None:
                layer.enable_adapters(False)
            else:
                layer.enable_adapters(True)
                layer.set_adapter(list(names))
        yield
    finally:
        for layer, (active, disabled) in zip(layers, previous):
            layer.enable_adapters(not disabled)
            layer.set_adapter(active)
        for param, flag in flags:
            param.requires_grad_(flag)


def call_with_weights(model: nn.Module, weights: Dict[str, Tensor], *args, **kwargs):
    """``model(*args, **kwargs)`` with some parameters replaced by ``weights`` (name -> tensor) for this call only."""
    return functional_call(model, weights, args, kwargs, strict=False) if weights else model(*args, **kwargs)
