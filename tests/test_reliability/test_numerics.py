"""Numerics: bf16 autocast training on the CPU, and NaN/inf losses stopped at the iteration they appear."""
import math
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.optim import build_optim_wrapper
from mmseg.registry import HOOKS

from rass_mmseg.compat import load_from_local_weights_only
from rass_mmseg.engine import CPUAmpOptimWrapper, NonFiniteLossHook
from tests.utils import TINY, repo_path


@HOOKS.register_module(force=True)
class _RecordTrainingHook(Hook):
    """Test probe: the dtype the UNet's first convolution computes in, and the losses of every iteration."""
    records = []

    def before_train(self, runner) -> None:
        unet = runner.model.backbone.unet
        unet.conv_in.register_forward_hook(lambda module, args, output: self._dtype.append(output.dtype))
        self._dtype = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        losses = {k: float(torch.as_tensor(v).detach()) for k, v in outputs.items()}
        type(self).records.append(dict(dtypes=set(self._dtype), losses=losses))
        self._dtype.clear()


def write_config(tmp_path, base: str, **extra: str) -> str:
    """A config that inherits ``base`` and appends the probe hook to its custom hooks."""
    lines = [f'_base_ = [{base!r}]', "custom_hooks = _base_.custom_hooks + [dict(type='_RecordTrainingHook')]"]
    lines += [f'{key} = {value}' for key, value in extra.items()]
    path = tmp_path / 'probe_config.py'
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def test_bf16_autocast_trains_the_tiny_config_on_cpu_without_nan(train_tool, tmp_path):
    _RecordTrainingHook.records = []
    config = write_config(tmp_path, TINY)
    train_tool(config, tmp_path / 'bf16', 'train_cfg.max_iters=2', 'optim_wrapper.type=CPUAmpOptimWrapper')
    records = _RecordTrainingHook.records
    assert len(records) == 2
    for record in records:
        assert record['dtypes'] == {torch.bfloat16}  # autocast really ran the UNet in bf16
        assert all(math.isfinite(v) for v in record['losses'].values()), record['losses']
        assert 1.0 < record['losses']['decode.loss_ce'] < 3.0  # ~ln(8) for 8 classes at the start
    state = load_from_local_weights_only(str(tmp_path / 'bf16' / 'iter_2.pth'))['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert all(v.dtype != torch.bfloat16 for v in state.values())  # weights stay float32
    assert state['backbone.unet.conv_in.lora_B.seg.weight'].abs().max() > 0  # the Seg LoRA was trained


def test_cpu_amp_optim_wrapper_refuses_float16_and_non_cpu_models():
    model = torch.nn.Linear(2, 2)
    optimizer = dict(type='SGD', lr=0.1)
    with pytest.raises(ValueError, match="dtype must be 'bfloat16'"):
        build_optim_wrapper(model, dict(type='CPUAmpOptimWrapper', dtype='float16', optimizer=optimizer))
    wrapper = build_optim_wrapper(model, dict(type='CPUAmpOptimWrapper', optimizer=optimizer))
    assert isinstance(wrapper, CPUAmpOptimWrapper)
    with wrapper.optim_context(model):
        assert model(torch.ones(1, 2)).dtype == torch.bfloat16
    assert model(torch.ones(1, 2)).dtype == torch.float32
    meta_model = torch.nn.Linear(2, 2, device='meta')
    with pytest.raises(ValueError, match=r"CPU only.*\['meta'\].*AmpOptimWrapper"):
        with wrapper.optim_context(meta_model):
            pass


def test_diverging_training_stops_at_the_iteration_of_the_first_nan_loss(train_tool, tmp_path):
    work_dir = tmp_path / 'nan'
    # lr 1e20: iteration 1 is computed with the initial weights, its update blows them up, iteration 2 is NaN
    with pytest.raises(FloatingPointError) as error:
        train_tool(TINY, work_dir, 'train_cfg.max_iters=3', 'optim_wrapper.optimizer.lr=1e20')
    message = str(error.value)
    assert '\n' not in message
    assert message.startswith('non-finite loss at iteration 2 of 3: loss=nan, decode.loss_ce=nan')
    assert (work_dir / 'iter_1.pth').is_file()
    assert not (work_dir / 'iter_2.pth').exists()  # raised before CheckpointHook saved the diverged weights


def test_non_finite_loss_hook_checks_every_loss_and_names_the_iteration():
    runner = SimpleNamespace(iter=6, max_iters=10)
    hook = NonFiniteLossHook()
    finite = dict(loss=torch.tensor(1.5), **{'decode.loss_ce': torch.tensor(1.5), 'decode.acc_seg': torch.tensor(50.)})
    hook.after_train_iter(runner, 0, outputs=finite)
    hook.after_train_iter(runner, 0, outputs={**finite, 'decode.acc_seg': torch.tensor(float('nan'))})  # not a loss
    with pytest.raises(FloatingPointError, match=r'^non-finite loss at iteration 7 of 10: aux.loss_dice=inf;'):
        hook.after_train_iter(runner, 0, outputs={**finite, 'aux.loss_dice': torch.tensor(float('inf'))})
    with pytest.raises(FloatingPointError, match=r'iteration 7 of 10: loss=nan, decode.loss_ce=nan;'):
        hook.after_train_iter(runner, 0, outputs=dict(loss=float('nan'), **{'decode.loss_ce': torch.tensor(
            float('nan'))}))
    # interval=4 checks iterations 4, 8, ...: iteration 7 is not checked
    NonFiniteLossHook(interval=4).after_train_iter(runner, 0, outputs=dict(loss=torch.tensor(float('nan'))))
    with pytest.raises(ValueError, match='positive int'):
        NonFiniteLossHook(interval=0)


def test_runnable_configs_install_the_reliability_hooks():
    cfg = Config.fromfile(repo_path('configs', 'rass', 'rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py'))
    assert [h.type for h in cfg.custom_hooks] == [
        'CheckpointOverwriteGuardHook', 'NonFiniteLossHook', 'RandomStateCheckpointHook']
