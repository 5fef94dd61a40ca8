"""Resume == uninterrupted: train k iterations, stop, ``--resume`` to n; the weights equal a run straight to n.

The LQ config is used because it has all the randomness of the training step: dropout in SegformerHead
(torch's global generator) and the online degradation (``DegradationDataPreProcessor``'s own generator).
mmengine 0.10.7 saves neither; ``RandomStateCheckpointHook`` (in every config's ``custom_hooks``) does.
Random flips (numpy, data pipeline) are reproduced by mmengine's replay of the data loader on resume.

A resume never writes over a checkpoint it did not load, and a second run into a work dir in use is refused
(``CheckpointOverwriteGuardHook``).
"""
import fcntl
import hashlib
import shutil
from types import SimpleNamespace

import pytest
import torch

from rass_mmseg.compat import load_from_local_weights_only
from rass_mmseg.engine import RandomStateCheckpointHook
from tests.utils import TINY, TINY_LQ

DETERMINISTIC = 'randomness.deterministic=True'


def state_dict(path) -> dict:
    return load_from_local_weights_only(str(path))['state_dict']


def max_differences(a: dict, b: dict) -> dict:
    assert a.keys() == b.keys()
    return {k: (a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point()}


def test_resumed_run_equals_uninterrupted_run_lora_included(train_tool, tmp_path):
    full, part = tmp_path / 'full', tmp_path / 'part'
    train_tool(TINY_LQ, full, 'train_cfg.max_iters=3', DETERMINISTIC)
    train_tool(TINY_LQ, part, 'train_cfg.max_iters=2', DETERMINISTIC)
    saved = load_from_local_weights_only(str(part / 'iter_2.pth'))
    ranks = saved['meta']['random_state']['ranks']
    assert len(ranks) == 1 and ranks[0]['torch_cpu'].dtype == torch.uint8
    assert [(g['module'], g['attr'], g['key']) for g in ranks[0]['module_generators']] == [
        ('data_preprocessor', '_generators', 'cpu')]

    # the control: the same resume without restoring the random states diverges
    control = tmp_path / 'control'
    control.mkdir()
    shutil.copy(part / 'iter_2.pth', control / 'iter_2.pth')
    (control / 'last_checkpoint').write_text(str(control / 'iter_2.pth'))
    train_tool(TINY_LQ, part, 'train_cfg.max_iters=3', DETERMINISTIC, resume=True)
    train_tool(TINY_LQ, control, 'train_cfg.max_iters=3', DETERMINISTIC, 'custom_hooks.2.restore=False', resume=True)

    uninterrupted = state_dict(full / 'iter_3.pth')
    resumed = state_dict(part / 'iter_3.pth')
    differences = max_differences(uninterrupted, resumed)
    lora = [k for k in differences if '.lora_' in k]
    assert len(lora) > 100 and any('lora_B.seg' in k for k in lora)
    # exact equality on the CPU, every tensor, LoRA, conv_in, neck and head included
    assert max(differences.values()) == 0.0, {k: v for k, v in differences.items() if v}

    diverged = max_differences(uninterrupted, state_dict(control / 'iter_3.pth'))
    assert max(diverged[k] for k in lora) > 1e-5


class _LazyGenerators(torch.nn.Module):
    """Holds its generator the way DegradationDataPreProcessor does: made on first use, in a dict."""

    def __init__(self):
        super().__init__()
        self._generators = {}

    def draw(self) -> torch.Tensor:
        generator = self._generators.setdefault('cpu', torch.Generator().manual_seed(7))
        return torch.rand(3, generator=generator)


def test_random_states_survive_a_weights_only_checkpoint_and_restore_only_on_resume(tmp_path):
    model = torch.nn.Sequential(_LazyGenerators())
    model[0].draw()
    torch.manual_seed(3)
    torch.rand(5)
    checkpoint = dict(meta=dict(iter=5))
    RandomStateCheckpointHook().before_save_checkpoint(SimpleNamespace(model=model), checkpoint)
    torch.save(checkpoint, tmp_path / 'iter_5.pth')
    expected_torch, expected_lazy = torch.rand(4), model[0].draw()  # what the uninterrupted run draws next

    loaded = load_from_local_weights_only(str(tmp_path / 'iter_5.pth'))  # meta holds only inert types
    fresh = torch.nn.Sequential(_LazyGenerators())
    hook = RandomStateCheckpointHook()
    hook.after_load_checkpoint(SimpleNamespace(model=fresh), loaded)
    torch.manual_seed(0)
    hook.before_train_iter(SimpleNamespace(model=fresh, iter=0), 0)  # load_from to start a new run: nothing
    assert fresh[0]._generators == {} and not torch.equal(torch.rand(4), expected_torch)

    hook.after_load_checkpoint(SimpleNamespace(model=fresh), loaded)
    hook.before_train_iter(SimpleNamespace(model=fresh, iter=5), 0)  # resumed at the checkpoint's iteration
    assert torch.equal(torch.rand(4), expected_torch)
    assert torch.equal(fresh[0].draw(), expected_lazy)  # the lazily made generator was created and restored


def checksums(work_dir) -> dict:
    return {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in sorted(work_dir.glob('*.pth'))}


def test_resume_without_last_checkpoint_resumes_from_the_checkpoints_and_never_overwrites_newer_ones(
        train_tool, tmp_path):
    # checkpoints copied from another machine: iter_*.pth but no last_checkpoint
    work_dir = tmp_path / 'copied'
    keep_all = 'default_hooks.checkpoint.max_keep_ckpts=-1'  # the config keeps 2: iter_3 would retire iter_1
    train_tool(TINY, work_dir, 'train_cfg.max_iters=2', keep_all)
    (work_dir / 'last_checkpoint').unlink()
    copied = checksums(work_dir)
    assert list(copied) == ['iter_1.pth', 'iter_2.pth']

    train_tool(TINY, work_dir, 'train_cfg.max_iters=3', 'randomness.seed=123', keep_all, resume=True)
    written = checksums(work_dir)
    assert {k: v for k, v in written.items() if k in copied} == copied
    log = sorted(work_dir.glob('*/*.log'))[-1].read_text()  # the resumed run's log
    assert 'resuming from the newest checkpoint there' in log and 'resumed epoch: 0, iter: 2' in log
    assert 'Iter(train) [3/3]' in log and 'Iter(train) [1/3]' not in log
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith('iter_3.pth')

    # resuming an older checkpoint (explicit load_from) would write over iter_2 and iter_3: refused, naming them
    with pytest.raises(FileExistsError, match=r'newer than the one resumed \(iteration 1\): iter_2.pth, iter_3.pth'):
        train_tool(TINY, work_dir, 'train_cfg.max_iters=3', f'load_from={work_dir / "iter_1.pth"}', keep_all,
                   resume=True)
    assert checksums(work_dir) == written
    assert lock_is_free(work_dir)  # the refused run (it raised inside the train loop) released the work dir


def lock_is_free(work_dir) -> bool:
    with open(work_dir / '.training.lock', 'a+') as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def test_a_second_run_into_a_work_dir_in_use_is_refused(train_tool, tmp_path):
    work_dir = tmp_path / 'busy'
    work_dir.mkdir()
    with open(work_dir / '.training.lock', 'a+') as holder:  # the lock a first run (another process) holds
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.write('pid 4242 on host elsewhere, started 2026-12-01T10:00:00\n')
        holder.flush()
        with pytest.raises(RuntimeError, match=r'is in use by another training run \(pid 4242 on host elsewhere'):
            train_tool(TINY, work_dir, 'train_cfg.max_iters=1')
    assert not list(work_dir.glob('*.pth'))
