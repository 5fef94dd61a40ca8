"""The GPU kit: tools/misc/build_gpu_kit.py (pruning, pins), the stand-in mmcv._ext, run_gpu_kit.sh's image check.

No network and no GPU: the kit is never downloaded here; the runner is stopped by its image check before it
installs anything.
"""
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from tests.utils import repo_path

MISC = repo_path('tools', 'misc')


def load(name: str):
    spec = importlib.util.spec_from_file_location(f'rass_tools_misc_{name}', osp.join(MISC, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_gpu_kit = load('build_gpu_kit')


def test_prune_keeps_each_pinned_wheel_for_every_python_and_nothing_else(tmp_path):
    kept = ['mmengine-0.10.7-py3-none-any.whl', 'shapely-2.2.0-cp311-cp311-manylinux_2_28_x86_64.whl',
            'shapely-2.2.0-cp312-cp312-manylinux_2_28_x86_64.whl']
    stale = ['mmengine-0.10.6-py3-none-any.whl', 'shapely-2.1.0-cp312-cp312-manylinux_2_28_x86_64.whl',
             'unpinned-1.0-py3-none-any.whl', 'notes.txt']
    for name in kept + stale:
        (tmp_path / name).write_text('x')
    removed = build_gpu_kit.prune(str(tmp_path), {'mmengine': '0.10.7', 'shapely': '2.2.0'})
    assert sorted(removed) == sorted(stale)
    assert sorted(os.listdir(tmp_path)) == sorted(kept)


def test_kit_pins_one_version_of_each_package_and_carries_no_image_package_but_setuptools():
    pins = build_gpu_kit.requirement_pins()
    assert len(pins) == len(build_gpu_kit.KIT_WHEELS)  # one version each
    with open(osp.join(MISC, 'gpu_image_packages.txt')) as f:
        image = {re.sub(r'[-_.]+', '-', line.strip()).lower() for line in f if line.strip() and line[0] != '#'}
    # setuptools travels on purpose: mmengine needs pkg_resources, which setuptools >= 81 no longer has
    assert set(pins) & image == {'setuptools'}
    assert {'mmengine', 'mmcv-lite', 'mmsegmentation', 'mmdet', 'diffusers'} <= set(pins)


def test_stand_in_ext_answers_every_op_name_and_raises_when_one_is_called():
    stub = load('mmcv_ext_stub')
    # mmcv's ext_loader.load_ext only asserts hasattr(ext, name) for each op
    assert all(hasattr(stub, name) for name in ('ms_deform_attn_forward', 'nms', 'get_compiling_cuda_version'))
    assert not hasattr(stub, '__path__')  # not taken for a package
    with pytest.raises(RuntimeError, match=r'^mmcv\._ext\.ms_deform_attn_forward: mmcv has no compiled ops'):
        stub.ms_deform_attn_forward(1, 2)


def fake_kit(root, **image) -> str:
    kit = osp.join(str(root), 'kit')
    os.makedirs(osp.join(kit, 'wheels'))
    want = dict(python='.'.join(map(str, sys.version_info[:2])), torch=torch.__version__.split('+')[0],
                gpu='H100|H200', modules='numpy')
    want.update(image)
    with open(osp.join(kit, 'expected_image.txt'), 'w') as f:
        f.writelines(f'{key}={value}\n' for key, value in want.items())
    for name in ('requirements.txt', 'mmcv_ext_stub.py'):
        open(osp.join(kit, name), 'w').close()
    return kit


def run_kit(kit: str, target: str) -> subprocess.CompletedProcess:
    return subprocess.run(['bash', osp.join(MISC, 'run_gpu_kit.sh'), '--kit', kit, '--target', target, '--python',
                           sys.executable], capture_output=True, text=True, cwd=repo_path(), timeout=120)


@pytest.mark.parametrize('image, found', [
    (dict(python='3.99'), f'Python {sys.version_info[0]}.{sys.version_info[1]}'),
    (dict(torch='0.0.1'), f'torch {torch.__version__}'),
])
def test_runner_stops_in_one_line_before_installing_when_the_image_differs(tmp_path, image, found):
    target = str(tmp_path / 'site')
    result = run_kit(fake_kit(tmp_path, **image), target)
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stdout.count('\n') == 1
    assert result.stdout.startswith(f'[kit] image differs: {found}; the kit was built for')
    assert not osp.exists(target)  # nothing installed


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without a CUDA GPU')
def test_runner_stops_without_a_visible_gpu(tmp_path):
    target = str(tmp_path / 'site')
    result = run_kit(fake_kit(tmp_path), target)
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stdout.startswith('[kit] image differs: no CUDA GPU visible to torch;')
    assert not osp.exists(target)


def test_runner_names_the_missing_kit_file(tmp_path):
    kit = fake_kit(tmp_path)
    os.remove(osp.join(kit, 'requirements.txt'))
    result = run_kit(kit, str(tmp_path / 'site'))
    assert result.returncode == 2
    assert result.stdout.strip() == (f'[kit] {kit}/requirements.txt missing: build the kit with '
                                     'python tools/misc/build_gpu_kit.py')
