"""Helpers shared by several test modules (test modules import from here, never from each other or a conftest)."""
import importlib.util
import os.path as osp
import subprocess
import sys
from types import ModuleType
from typing import Iterable, Sequence

import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from rass_mmseg.models.backbones import RASSBackbone
from rass_mmseg.models.utils.lora import lora_parameter_names

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

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
              'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=2', 'train_cfg.val_interval=1000']


def repo_path(*parts: str) -> str:
    """A path inside the repository."""
    return osp.join(REPO, *parts)


def run_tool(script: str, *args: str, cwd: str, expect_failure: bool = False) -> str:
    """Run ``python SCRIPT ARGS`` in ``cwd``; assert it succeeded (or failed); return stdout + stderr."""
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


def load_tool(name: str) -> ModuleType:
    """The script ``tools/NAME.py`` as a module (tools are scripts, not a package; nothing is added to sys.path)."""
    module_name = f'rass_tools_{name}'
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, repo_path('tools', f'{name}.py'))
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
        spec.loader.exec_module(module)
    return sys.modules[module_name]
