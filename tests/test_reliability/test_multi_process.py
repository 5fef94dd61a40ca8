"""Two processes on the CPU (torchrun, gloo, mmengine's ``pytorch`` launcher) train the tiny config to the same
weights as one process with the same global batch.

Why the runs are comparable: ``InfiniteSampler`` shuffles once with the run seed and gives rank r the positions
r, r + 2, r + 4, ... of that order, so global batch i of 2 processes x batch 1 is exactly batch i of 1 process x
batch 2. The model is batch-independent: GroupNorm (no SyncBN needed), a frozen VAE in ``latent_mode='mode'``,
and a cross-entropy averaged over pixels, which DDP's gradient average reproduces because every texture image has
the same number of valid pixels. Two random sources are per process and must be switched off for the
comparison: SegformerHead's dropout (torch's generator, consumed differently by one batch of 2 than by two
batches of 1) and ``RandomFlip`` (numpy, seeded identically on every rank, so rank 1 would draw rank 0's flips).

The optimizer is SGD here, not the config's AdamW: Adam divides each gradient by its own magnitude, so for
weights whose gradient is close to zero it turns float32 rounding differences of the gradient all-reduce (about
1e-7 relative) into updates that differ by up to the learning rate (1.2e-3 after 3 AdamW steps at lr 1e-3,
measured); with SGD the weights differ by rounding only (6e-8 measured after 3 steps at lr 0.1).
"""
import os
import shutil
import subprocess

import pytest
import torch
from mmengine.dist import utils as dist_utils

from rass_mmseg.compat import load_from_local_weights_only
from tests.utils import FAST_TRAIN as FAST
from tests.utils import REPO, TINY, repo_path

TOLERANCE = 1e-6  # absolute, on every weight; float32 rounding of the gradient all-reduce

# LoRA scale 1 (alpha = rank): the tolerance above is float32 rounding at that scale; the configs' scale 2 doubles
# the LoRA gradients and so the rounding differences they carry (4.4e-6 measured, same conclusion, looser bound)
COMPARABLE = ['model.backbone.lora_alpha=4', 'model.decode_head.dropout_ratio=0.0',
              'train_dataloader.dataset.pipeline.2.prob=0.0', 'train_cfg.max_iters=2',
              'default_hooks.checkpoint.interval=2', 'randomness.deterministic=True']


def torchrun_available() -> bool:
    return (shutil.which('torchrun') is not None and torch.distributed.is_available()
            and torch.distributed.is_gloo_available())


@pytest.mark.skipif(not torchrun_available(), reason='needs torchrun and torch.distributed with the gloo backend')
def test_two_processes_equal_one_process_with_the_same_global_batch(train_tool, tmp_path):
    config = tmp_path / 'sgd_config.py'
    config.write_text(f'_base_ = [{TINY!r}]\n'
                      "optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1), "
                      'clip_grad=dict(max_norm=1.0, norm_type=2))\n')
    two, one = tmp_path / 'two', tmp_path / 'one'
    env = dict(PYTHONPATH=REPO, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    command = ['torchrun', '--standalone', '--nproc_per_node', '2', repo_path('tools', 'train.py'), str(config),
               '--launcher', 'pytorch', '--work-dir', str(two), '--cfg-options', *FAST, *COMPARABLE,
               'train_dataloader.batch_size=1']
    result = subprocess.run(command, cwd=str(tmp_path), capture_output=True, text=True, timeout=480,
                            env={**os.environ, **env})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert 'Distributed training: True' in output and 'Iter(train) [2/2]' in output

    train_tool(str(config), one, *COMPARABLE, 'train_dataloader.batch_size=2')

    checkpoint = load_from_local_weights_only(str(two / 'iter_2.pth'))
    random_state = checkpoint['meta']['random_state']  # RandomStateCheckpointHook gathered both ranks' states
    assert random_state['world_size'] == 2 and len(random_state['ranks']) == 2
    a = checkpoint['state_dict']
    b = load_from_local_weights_only(str(one / 'iter_2.pth'))['state_dict']
    assert a.keys() == b.keys()
    differences = {k: (a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point()}
    assert max(differences.values()) <= TOLERANCE, sorted(differences.items(), key=lambda kv: -kv[1])[:5]
    # the runs trained (the comparison is not between two untouched initialisations)
    assert a['backbone.unet.conv_in.lora_B.seg.weight'].abs().max() > 1e-4
    assert a['decode_head.conv_seg.weight'].abs().sum() > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU-only path of the launcher fix')
def test_nccl_on_a_cpu_only_machine_is_refused_with_the_key_to_change(monkeypatch):
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('LOCAL_RANK', '0')
    with pytest.raises(RuntimeError, match=r"backend 'nccl' needs a GPU.*env_cfg.dist_cfg.backend=gloo"):
        dist_utils._init_dist_pytorch('nccl')
