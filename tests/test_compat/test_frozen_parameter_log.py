"""mmengine's optimizer constructor logs one summary line for the frozen Stable Diffusion parameters it leaves out,
not one warning per parameter; everything else it logs and builds is unchanged."""
import logging
from typing import Iterator, List

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmseg.registry import MODELS

from rass_mmseg import compat
from rass_mmseg.compat import frozen_parameter_log

SKIPPED_LINE = 'is skipped since its requires_grad=False'
OPTIM_WRAPPER = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.), 'head': dict(lr_mult=10.)}))


class RecordList(logging.Handler):

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def log_messages() -> Iterator[List[str]]:
    logger = MMLogger.get_current_instance()
    handler = RecordList()
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


@pytest.fixture(scope='module')
def tiny_rass(tiny_cfg) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = tiny_cfg.model.copy()
    cfg.type = 'EncoderDecoder'  # mmseg's own segmentor: what a user's config on a stock mmseg config builds
    return MODELS.build(cfg)


def test_frozen_parameters_are_summarised_in_one_line(tiny_rass, log_messages):
    frozen = [(name, p) for name, p in tiny_rass.named_parameters() if not p.requires_grad]
    trainable = [p for p in tiny_rass.parameters() if p.requires_grad]
    assert len(frozen) > 100 and trainable
    optim_wrapper = build_optim_wrapper(tiny_rass, OPTIM_WRAPPER)

    assert not [m for m in log_messages if SKIPPED_LINE in m]
    summary = [m for m in log_messages if 'frozen parameters' in m]
    assert len(summary) == 1
    elements = sum(p.numel() for _, p in frozen)
    assert summary[0].startswith(f'Optimizer: {len(frozen)} frozen parameters ({elements / 1e6:.2f}M elements, '
                                 'requires_grad=False) are not optimized: ')
    by_module = {}
    for name, _ in frozen:
        module = '.'.join(name.split('.')[:2])
        by_module[module] = by_module.get(module, 0) + 1
    assert summary[0].endswith(', '.join(f'{module} {count}' for module, count in sorted(by_module.items())))
    # the optimizer and the other messages are mmengine's
    assert sum(len(group['params']) for group in optim_wrapper.optimizer.param_groups) == len(trainable)
    assert any(m.startswith('paramwise_options -- decode_head.') for m in log_messages)
    assert MMLogger.get_current_instance().filters == []


def test_without_frozen_parameters_nothing_is_added(log_messages):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4))
    build_optim_wrapper(model, OPTIM_WRAPPER)
    assert not [m for m in log_messages if 'frozen parameters' in m or SKIPPED_LINE in m]


def test_the_fix_is_listed_and_installed_on_the_pinned_stack():
    from mmengine.optim import DefaultOptimWrapperConstructor
    assert 'frozen_parameter_log' in compat.installed_fixes()
    assert DefaultOptimWrapperConstructor.__call__ is frozen_parameter_log._call_with_one_summary_line
