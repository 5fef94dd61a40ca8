"""Helpers shared by several test modules (test modules import from here, never from each other or a conftest)."""
import atexit
import contextlib
import importlib.util
import itertools
import os
import os.path as osp
import runpy
import shutil
import subprocess
import sys
import tempfile
from types import ModuleType
from typing import Iterable, Iterator, Sequence

import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from rass_mmseg.models.adapters.lora_adapters import lora_parameter_names
from rass_mmseg.models.backbones import RASSBackbone

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

_run_ids = itertools.count()
_shared_textures = []

#: The embedded default config and its on-the-fly LQ twin.
TINY = osp.join(REPO, 'configs', 'rass', 'rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py')
TINY_LQ = osp.join(REPO, 'configs', 'rass', 'rass_tiny-sd_segformer-head_1xb4-300it_textures-lq-128x128.py')

#: Short CPU training runs: no dataloader workers, batch 2, a log line and a checkpoint every iteration, no
#: validation.
FAST_TRAIN = ['train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
              'train_dataloader.batch_size=2', 'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=1',
              'train_cfg.val_begin=100000']

#: Short runs of the tools in a subprocess: no workers anywhere, 4 test images, a checkpoint every 2 iterations.
FAST_TOOLS = ['train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
              'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
              'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
              'test_dataloader.dataset.indices=4', 'train_dataloader.batch_size=2',
              'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=2',
              'val_dataloader.dataset.indices=4']

#: The tiny pretrained SD config tools/misc/make_tiny_sd.py builds from, and its recipe at test size (a 3-iteration VAE,
#: 4 latent diffusion iterations on 8-pixel latent crops).
TINY_SD_CONFIG = osp.join(REPO, 'configs', 'scr', 'scr_tiny-sd-textures_1xb4-300it_textures-128x128.py')
TINY_SD_FAST = ['--iters', '3', '--batch-size', '2', '--crop', '32',
                '--ldm-iters', '4', '--ldm-batch-size', '2', '--ldm-crop', '8']


def needs_made_tiny_sd(config: str) -> bool:
    """Whether ``config`` reads ``checkpoints/tiny-sd-textures``, the folder ``tools/misc/make_tiny_sd.py`` trains
    (absent from a fresh clone; tests/test_tools/test_make_tiny_sd.py builds these configs from a folder it makes)."""
    return 'tiny-sd-textures' in osp.basename(config)


def small_tiny_sd_config(root) -> str:
    """A config in ``root`` that makes the tiny SD folder ``root/tiny_sd`` from a 4 + 2 image generated dataset in
    ``root/data`` (:data:`TINY_SD_CONFIG` otherwise)."""
    root = str(root)
    data = dict(data_root=osp.join(root, 'data'), generate_cfg=dict(seed=0, num_train=4, num_val=2, image_size=64))
    folder = osp.join(root, 'tiny_sd')
    path = osp.join(root, 'config.py')
    with open(path, 'w') as f:
        f.write(f'_base_ = [{TINY_SD_CONFIG!r}]\n'
                f'train_dataloader = dict(dataset={data!r})\n'
                f'val_dataloader = dict(dataset={data!r})\n'
                f'model = dict(backbone=dict(pretrained={folder!r}),\n'
                f'             decode_head=dict(pretrained={folder!r}))\n')
    return path


def repo_path(*parts: str) -> str:
    """A path inside the repository."""
    return osp.join(REPO, *parts)


def link_textures(cwd: str) -> None:
    """Make ``cwd/data/textures`` (the tiny configs' relative data root) a link to one copy of the embedded
    texture dataset, generated once per test session, unless ``cwd`` already holds one."""
    target = osp.join(cwd, 'data', 'textures')
    if osp.lexists(target):
        return
    if not _shared_textures:
        from rass_mmseg.datasets.texture_generator import generate_texture_dataset
        root = tempfile.mkdtemp(prefix='rass_mmseg_tests_')
        atexit.register(shutil.rmtree, root, True)
        generate_texture_dataset(osp.join(root, 'textures'), seed=0)
        _shared_textures.append(osp.join(root, 'textures'))
    os.makedirs(osp.dirname(target), exist_ok=True)
    os.symlink(_shared_textures[0], target)


def run_tool(script: str, *args: str, cwd: str, expect_failure: bool = False) -> str:
    """Run ``python SCRIPT ARGS`` in ``cwd`` (with the shared texture dataset linked there); assert it succeeded (or
    failed); return stdout + stderr."""
    link_textures(cwd)
    result = subprocess.run([sys.executable, script, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert (result.returncode != 0) == expect_failure, output[-3000:]
    return output


def build_rass_backbone(cfg: dict, **overrides) -> RASSBackbone:
    """A seeded ``RASSBackbone`` from a backbone config dict (``type`` dropped) with ``overrides``."""
    torch.manual_seed(0)
    cfg = dict(cfg)
    cfg.pop('type')
    cfg.update(overrides)
    return RASSBackbone(**cfg)


def randomize_seg_lora(backbone: RASSBackbone, seed: int = 1) -> None:
    """LoRA B starts at zero (no-op adapter); give the Seg LoRA values so the adapter changes the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in lora_parameter_names(backbone.unet, 'seg'):
            param = backbone.unet.get_parameter(name)
            param.copy_(torch.randn(param.shape, generator=generator) * 0.05)


def scr_batch(model, training: bool, labels: Sequence[Iterable[int]] = ((0, 2), (1, ))) -> dict:
    """A preprocessed batch of random 64x64 images whose masks hold ``labels`` in vertical stripes (255 elsewhere)."""
    images, samples = [], []
    for index, present in enumerate(labels):
        present = tuple(present)
        images.append(torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8))
        gt = torch.full((1, 64, 64), 255)
        for k, label in enumerate(present):
            gt[:, :, k * 64 // len(present):(k + 1) * 64 // len(present)] = label
        sample = SegDataSample(gt_sem_seg=PixelData(data=gt))
        sample.set_metainfo(dict(img_path=f'img{index}.png', img_shape=(64, 64), ori_shape=(64, 64)))
        samples.append(sample)
    return model.data_preprocessor(dict(inputs=images, data_samples=samples), training)


def tool_path(name: str) -> str:
    """The script ``tools/NAME.py``; ``name`` may name a subfolder, e.g. ``'analysis_tools/benchmark'``."""
    path = repo_path('tools', *name.split('/')) + '.py'
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: no such tool')
    return path


def load_tool(name: str) -> ModuleType:
    """The script ``tools/NAME.py`` (e.g. ``'analysis_tools/benchmark'``) as a module (tools are scripts, not a
    package; nothing is added to sys.path)."""
    module_name = 'rass_tools_' + name.replace('/', '_')
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, tool_path(name))
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def run_in_process(script: str, *args: str, cwd: str, runner_tool: bool = True) -> None:
    """Run ``python SCRIPT ARGS`` inside the test process, from ``cwd``.

    Exactly the tool's code path (the script through ``runpy``, as ``python`` runs it) without a new interpreter's
    ~20 s of imports. For a tool that builds an mmengine Runner (``runner_tool``, the default) ``args`` must hold
    ``--cfg-options`` last: a fresh experiment and visualizer name is appended (mmengine keeps those as
    process-wide singletons). The shared texture dataset is linked into ``cwd``. The process's global state
    (working directory, argv, LOCAL_RANK, deterministic algorithms) is restored afterwards. Use a subprocess where a
    fresh process is the point (a tool's own imports, ``custom_imports``).
    """
    if runner_tool and '--cfg-options' not in args:
        raise ValueError('run_in_process needs --cfg-options among the arguments (a fresh run name is added)')
    name = f'in_process_{os.getpid()}_{next(_run_ids)}'
    link_textures(cwd)
    saved = os.getcwd(), list(sys.argv), os.environ.get('LOCAL_RANK'), torch.are_deterministic_algorithms_enabled()
    os.chdir(cwd)  # relative paths of a config (data/textures, work_dirs) land in cwd
    os.environ['LOCAL_RANK'] = '0'
    run_names = [f'experiment_name={name}', f'visualizer.name={name}'] if runner_tool else []
    sys.argv = [script, *args, *run_names]
    try:
        runpy.run_path(script, run_name='__main__')
    finally:
        os.chdir(saved[0])
        sys.argv = saved[1]
        if saved[2] is None:
            os.environ.pop('LOCAL_RANK', None)
        else:
            os.environ['LOCAL_RANK'] = saved[2]
        torch.use_deterministic_algorithms(saved[3])


@contextlib.contextmanager
def one_intra_op_thread() -> Iterator[None]:
    """Run the block on one intra-op thread: for small-tensor tests on a shared 2-core machine the per-op thread
    barriers cost more than the parallelism gives, and determinism tests need no threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
