"""One log line for the frozen parameters mmengine's optimizer constructor leaves out, instead of one per parameter.

With a ``paramwise_cfg`` (mmseg's SegFormer, Mask2Former and most of its configs set one), mmengine <= 0.10.7's
``DefaultOptimWrapperConstructor.add_params`` logs a warning ``<name> is skipped since its requires_grad=False``
for every frozen parameter: 548 lines for the tiny RASS model, 1164 at Stable Diffusion 2.1-base size, whose VAE,
text encoder and UNet base weights are frozen by design.

With this fix, while ``DefaultOptimWrapperConstructor.__call__`` (and that of every subclass that calls it) builds
the optimizer, a filter on the current ``MMLogger`` takes those lines out and counts them; afterwards one line says
how many parameters (and elements) were skipped and under which modules, e.g. ``Optimizer: 1164 frozen parameters
(1.24G elements, requires_grad=False) are not optimized: backbone.text_encoder 372, backbone.unet 684, backbone.vae
108`` (SD 2.1-base). Every other message of the constructor, and the optimizer it builds, are unchanged; models
without frozen parameters log nothing new.
"""
import functools
import logging
import re
from collections import Counter
from typing import Dict, List

from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

__all__ = ['frozen_parameter_summary', 'install']

_original_call = DefaultOptimWrapperConstructor.__call__
_SKIPPED = re.compile(r'^(?P<name>\S*) is skipped since its requires_grad=False$')


class _SkippedParameterCollector(logging.Filter):
    """Drops mmengine's per-parameter skip lines and keeps the names."""

    def __init__(self) -> None:
        super().__init__()
        self.names: List[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        match = _SKIPPED.match(record.getMessage())
        if match is None:
            return True
        self.names.append(match['name'].lstrip('.'))
        return False


def _elements(count: int) -> str:
    for unit, size in (('G', 1e9), ('M', 1e6), ('K', 1e3)):
        if count >= size:
            return f'{count / size:.2f}{unit}'
    return str(count)


def frozen_parameter_summary(model: nn.Module, names: List[str]) -> str:
    """The one line that replaces mmengine's per-parameter skip lines.

    Args:
        model: The model the optimizer was built for.
        names: Full names of the skipped parameters, as mmengine logged them.
    """
    parameters: Dict[str, nn.Parameter] = dict(model.named_parameters(remove_duplicate=False))
    elements = sum(parameters[name].numel() for name in names if name in parameters)
    modules = Counter('.'.join(name.split('.')[:2]) if name.count('.') > 1 else name.split('.')[0] for name in names)
    where = ', '.join(f'{module} {count}' for module, count in sorted(modules.items()))
    return (f'Optimizer: {len(names)} frozen parameters ({_elements(elements)} elements, requires_grad=False) are '
            f'not optimized: {where}')


@functools.wraps(_original_call)
def _call_with_one_summary_line(self: DefaultOptimWrapperConstructor, model: nn.Module):
    logger = MMLogger.get_current_instance()
    collector = _SkippedParameterCollector()
    logger.addFilter(collector)
    try:
        return _original_call(self, model)
    finally:
        logger.removeFilter(collector)
        if collector.names:
            logger.info(frozen_parameter_summary(getattr(model, 'module', model), collector.names))


def install() -> None:
    """Collapse the skip lines of ``DefaultOptimWrapperConstructor.__call__`` into one."""
    DefaultOptimWrapperConstructor.__call__ = _call_with_one_summary_line
