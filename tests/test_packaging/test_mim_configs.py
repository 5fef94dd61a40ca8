"""Our configs ship with the package (``rass_mmseg/.mim``, as OpenMMLab packages do): a user's config inherits them
as ``_base_ = ['rass_mmseg::rass/<config>.py']`` from any folder.

The package is built from a copy of the repository (so nothing is built inside it): through its sdist and pip,
non-editable, into a ``--target`` folder that a subprocess imports from a folder outside the repository; and as
setuptools' editable wheel, which links ``.mim`` into the checkout instead of copying.
"""
import importlib
import os
import os.path as osp
import shutil
import subprocess
import sys
import tarfile
import textwrap

import pytest
from mmengine.config import Config

from tests.utils import REPO, TINY

#: What setup.py, MANIFEST.in and the build read.
SOURCES = ('setup.py', 'MANIFEST.in', 'README.md', 'LICENSE', 'requirements', 'rass_mmseg', 'configs', 'demo', 'tools')
TINY_NAME = osp.basename(TINY)
USER_CONFIG = f"""
_base_ = ['rass_mmseg::rass/{TINY_NAME}']
custom_imports = dict(imports=['rass_mmseg'], allow_failed_imports=False)
model = dict(decode_head=dict(num_classes=3))
"""
USER_BASE_CONFIG = """
_base_ = ['rass_mmseg::_base_/models/tiny_sd.py']
backbone = _base_.tiny_rass_backbone
"""


def copy_sources(root) -> str:
    """The package's sources (no build outputs, no generated .mim) copied into ``root/src``."""
    src = osp.join(str(root), 'src')
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc', '.mim', '*.egg-info', 'build')
    for name in SOURCES:
        path = osp.join(REPO, name)
        if osp.isdir(path):
            shutil.copytree(path, osp.join(src, name), ignore=ignore)
        else:
            os.makedirs(src, exist_ok=True)
            shutil.copy2(path, osp.join(src, name))
    return src


def run(args, cwd, env=None) -> str:
    result = subprocess.run(args, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def write_user_configs(folder) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(osp.join(folder, 'user_rass.py'), 'w') as f:
        f.write(USER_CONFIG)
    with open(osp.join(folder, 'user_tiny_sd.py'), 'w') as f:
        f.write(USER_BASE_CONFIG)


@pytest.fixture(scope='module')
def installed(tmp_path_factory) -> str:
    """The package installed non-editable into a --target folder, from the sdist of a copy of the repository."""
    root = tmp_path_factory.mktemp('packaging')
    src = copy_sources(root)
    dist = root / 'dist'
    run([sys.executable, '-c', f'from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})'], cwd=src)
    [sdist] = os.listdir(dist)
    with tarfile.open(dist / sdist) as tar:
        members = {name.split('/', 1)[1] for name in tar.getnames() if '/' in name}
    assert {f'configs/rass/{TINY_NAME}', 'configs/_base_/models/tiny_sd.py', 'demo/image_demo.py',
            'tools/train.py', 'MANIFEST.in'} <= members
    assert not any('.mim' in name for name in members)
    site = root / 'site'
    run([sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-build-isolation', '--no-compile', '--quiet',
         '--disable-pip-version-check', '--target', str(site), str(dist / sdist)], cwd=root)
    return str(site)


def test_the_installed_package_carries_copies_of_the_configs(installed):
    mim = osp.join(installed, 'rass_mmseg', '.mim')
    config = osp.join(mim, 'configs', 'rass', TINY_NAME)
    assert osp.isfile(config) and not osp.islink(osp.join(mim, 'configs'))
    with open(config) as copied, open(TINY) as original:
        assert copied.read() == original.read()
    for name in ('demo/image_demo.py', 'demo/image_demo_with_inferencer.py', 'tools/train.py', 'tools/test.py'):
        assert osp.isfile(osp.join(mim, name)), name
    with open(osp.join(mim, 'model-index.yml')) as f:  # mmengine reads it before every rass_mmseg:: base
        index = f.read()
    metafiles = sorted(osp.relpath(osp.join(folder, 'metafile.yaml'), REPO) for folder in
                       (osp.join(REPO, 'configs', name) for name in os.listdir(osp.join(REPO, 'configs')))
                       if osp.isfile(osp.join(folder, 'metafile.yaml')))
    assert len(metafiles) >= 3 and index == 'Import:\n' + ''.join(f'- {path}\n' for path in metafiles)
    assert all(osp.isfile(osp.join(mim, path)) for path in metafiles)


def test_a_user_config_outside_the_repo_inherits_our_configs_and_builds(installed, tmp_path):
    """mmengine stamps _scope_='rass_mmseg' on the inherited dicts: the model, the hooks and the evaluator build
    (in the rass_mmseg children of mmseg's registries, without mmengine's fallback warning) and the model runs."""
    user = tmp_path / 'user_project'
    write_user_configs(user)
    script = textwrap.dedent(f"""
        import os.path as osp
        import torch
        import rass_mmseg
        assert osp.realpath(rass_mmseg.__file__).startswith(osp.realpath({installed!r})), rass_mmseg.__file__
        from mmengine.config import Config
        from mmengine.registry import METRICS
        from mmengine.runner import Runner
        from mmseg.structures import SegDataSample

        cfg = Config.fromfile('user_rass.py')
        assert cfg.model._scope_ == 'rass_mmseg' and cfg.model.decode_head.num_classes == 3, cfg.model
        assert cfg.model.backbone.type == 'RASSBackbone'  # from ../_base_/models/ inside .mim/configs
        cfg.work_dir = 'work_dir'
        runner = Runner.from_cfg(cfg)  # builds the model, the default and custom hooks, the visualizer
        assert type(runner.model).__name__ == 'RASSEncoderDecoder'
        assert {{type(hook).__name__ for hook in runner.hooks}} >= {{'SegVisualizationHook', 'CheckpointHook'}}
        METRICS.build(cfg.test_evaluator)
        image = torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8)
        sample = SegDataSample(metainfo=dict(img_shape=(48, 64), ori_shape=(48, 64)))
        with torch.no_grad():
            [prediction] = runner.model.test_step(dict(inputs=[image], data_samples=[sample]))
        labels = prediction.pred_sem_seg.data
        assert labels.shape == (1, 48, 64) and 0 <= int(labels.min()) <= int(labels.max()) < 3

        base = Config.fromfile('user_tiny_sd.py')
        assert base.backbone.type == 'RASSBackbone' and base.backbone._scope_ == 'rass_mmseg'
        print('built and ran', rass_mmseg.__file__)
    """)
    env = dict(os.environ, PYTHONPATH=installed, OMP_NUM_THREADS='1')
    output = run([sys.executable, '-c', script], cwd=user, env=env)
    assert 'built and ran' in output
    assert 'Failed to search registry with scope' not in output, output[-3000:]


@pytest.fixture(scope='module')
def editable(tmp_path_factory) -> str:
    """A copy of the repository after setuptools built its editable wheel (what `pip install -e .` runs)."""
    src = copy_sources(tmp_path_factory.mktemp('editable'))
    wheels = osp.join(src, 'wheels')
    run([sys.executable, '-c', f'from setuptools import build_meta; build_meta.build_editable({wheels!r})'], cwd=src)
    return src


def test_an_editable_install_links_the_checkouts_configs(editable, tmp_path, monkeypatch):
    mim = osp.join(editable, 'rass_mmseg', '.mim')
    for name in ('configs', 'demo', 'tools'):
        link = osp.join(mim, name)
        assert osp.islink(link) and os.readlink(link) == osp.join('..', '..', name)
        assert osp.realpath(link) == osp.realpath(osp.join(editable, name))
    assert osp.isfile(osp.join(mim, 'model-index.yml'))

    # the import hook of an editable install imports the checkout's package: mmengine resolves into its .mim
    registry = importlib.import_module('rass_mmseg.registry')
    monkeypatch.setattr(registry, 'PACKAGE_DIR', osp.join(editable, 'rass_mmseg'))
    with open(osp.join(editable, 'configs', 'rass', TINY_NAME), 'a') as f:
        f.write('\nedited_in_the_checkout = True\n')  # configs/ stays the one source: seen without a reinstall
    write_user_configs(tmp_path)
    cfg = Config.fromfile(str(tmp_path / 'user_rass.py'))
    assert cfg.edited_in_the_checkout is True and cfg.model.decode_head.num_classes == 3
    assert Config.fromfile(str(tmp_path / 'user_tiny_sd.py')).backbone.type == 'RASSBackbone'


def test_a_copy_without_installed_configs_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.import_module('rass_mmseg.registry'), 'PACKAGE_DIR', str(tmp_path / 'rass_mmseg'))
    write_user_configs(tmp_path)
    with pytest.raises(FileNotFoundError, match=r'\.mim/configs does not exist: .*pip install -e') as error:
        Config.fromfile(str(tmp_path / 'user_rass.py'))
    assert '\n' not in str(error.value)


def test_the_generated_mim_folder_is_not_tracked():
    if not osp.isdir(osp.join(REPO, '.git')) and not osp.isfile(osp.join(REPO, '.git')):
        pytest.skip('not a git checkout')
    ignored = subprocess.run(['git', 'check-ignore', '-q', 'rass_mmseg/.mim/model-index.yml'], cwd=REPO)
    assert ignored.returncode == 0
    tracked = subprocess.run(['git', 'ls-files', 'rass_mmseg/.mim'], cwd=REPO, capture_output=True, text=True)
    assert tracked.stdout == ''
