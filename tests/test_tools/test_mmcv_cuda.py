"""tools/install/mmcv_cuda.py: the logic install.sh uses to build mmcv with CUDA ops (no GPU or compiler)."""
import os
import os.path as osp

import pytest
import torch

from tests.utils import load_tool

mmcv_cuda = load_tool('install/mmcv_cuda')

NVCC_13_0 = ('nvcc: NVIDIA (R) Cuda compiler driver\nCopyright (c) 2005-2025 NVIDIA Corporation\n'
             'Built on Wed_Aug_20_01:58:59_PM_PDT_2025\n'
             'Cuda compilation tools, release 13.0, V13.0.88\n'
             'Build cuda_13.0.r13.0/compiler.36424714_0\n')


def touch(path: str, text: str = '') -> str:
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)
    return path


def fake_toolkit(root, release=None, headers=('cuda_runtime.h', ), libs=(), lib_dir='lib'):
    """A CUDA tree; with ``release`` its bin/nvcc is a shell script printing that nvcc version."""
    root = str(root)
    for header in headers:
        touch(osp.join(root, 'include', header), root)
    for lib in libs:
        touch(osp.join(root, lib_dir, lib), root)
    if release:
        nvcc = touch(osp.join(root, 'bin', 'nvcc'),
                     f'#!/bin/sh\necho "Cuda compilation tools, release {release}, V{release}.1"\n')
        os.chmod(nvcc, 0o755)
        os.makedirs(osp.join(root, 'nvvm', 'bin'))
    return root


def test_nvcc_release_is_parsed():
    assert mmcv_cuda.parse_nvcc_release(NVCC_13_0) == (13, 0)
    assert mmcv_cuda.parse_nvcc_release('Cuda compilation tools, release 12.8, V12.8.93') == (12, 8)
    assert mmcv_cuda.parse_nvcc_release('sh: nvcc: not found') is None
    assert mmcv_cuda.parse_cuda_version('12.8.1') == (12, 8)


@pytest.mark.parametrize('setting,gpu,torch_cuda,expected', [
    (None, True, '13.0', 'cuda'), ('auto', False, '13.0', 'cpu'), ('', False, '13.0', 'cpu'),
    ('0', True, '13.0', 'cpu'), ('1', False, '13.0', 'cuda'), (' AUTO ', True, '13.0', 'cuda'),
    (None, True, None, 'cpu')])
def test_cuda_mode(setting, gpu, torch_cuda, expected):
    assert mmcv_cuda.cuda_mode(setting, gpu, torch_cuda) == expected


@pytest.mark.parametrize('setting,torch_cuda', [('yes', '13.0'), ('1', None)])
def test_cuda_mode_refuses(setting, torch_cuda):
    with pytest.raises(ValueError):
        mmcv_cuda.cuda_mode(setting, True, torch_cuda)


def test_toolkit_requirement_follows_torch_pin():
    requires = ['filelock', 'nvidia-cudnn-cu13==9.24.0.43; platform_system == "Linux"',
                'cuda-toolkit[cublas,cudart,cusparse]==13.0.3; platform_system == "Linux"']
    assert mmcv_cuda.toolkit_requirement(requires) == 'cuda-toolkit[nvcc,cccl,crt]==13.0.3'
    assert mmcv_cuda.toolkit_requirement(['cuda-toolkit==12.8.1']) == \
        'cuda-toolkit[nvcc,cccl,crt]==12.8.1'
    with pytest.raises(LookupError):
        mmcv_cuda.toolkit_requirement(['filelock', 'cuda-toolkit>=13'])


def test_arch_list_from_gpus_override_and_torch():
    assert mmcv_cuda.arch_list([(9, 0), (8, 6), (9, 0)]) == '8.6;9.0'
    assert mmcv_cuda.arch_list([(9, 0)], override=' 8.0;9.0+PTX ') == '8.0;9.0+PTX'
    assert mmcv_cuda.arch_list([(12, 0)], override='') == '12.0'
    torch_archs = ['sm_75', 'sm_90', 'sm_90a', 'sm_100', 'sm_120', 'compute_90']
    assert mmcv_cuda.arch_list([], torch_archs=torch_archs) == '7.5;9.0;10.0;12.0'
    assert mmcv_cuda.arch_list([(8, 9)], torch_archs=torch_archs) == '8.9'  # GPUs beat torch's
    with pytest.raises(ValueError):
        mmcv_cuda.arch_list([])


def test_missing_headers_looks_in_targets(tmp_path):
    root = str(tmp_path / 'cuda')
    touch(osp.join(root, 'include', 'cuda_runtime_api.h'))
    touch(osp.join(root, 'targets', 'x86_64-linux', 'include', 'cusparse.h'))
    assert mmcv_cuda.missing_headers(root) == ['cublas_v2.h', 'cublasLt.h', 'cusolverDn.h']


def test_nvcc_release_runs_nvcc(tmp_path):
    assert mmcv_cuda.nvcc_release(fake_toolkit(tmp_path / 'a', '12.8')) == (12, 8)
    assert mmcv_cuda.nvcc_release(str(tmp_path / 'none')) is None


def test_choose_toolkit(tmp_path):
    full = mmcv_cuda.REQUIRED_HEADERS + ('cuda_runtime.h', )
    cudart = dict(libs=('libcudart.so', ), lib_dir='lib64')
    stray = fake_toolkit(tmp_path / 'usr_local', '13.0', headers=())  # /usr/local/bin/nvcc wrapper
    partial = fake_toolkit(tmp_path / 'partial', '13.0', **cudart)  # no cusparse.h
    pip_tree = fake_toolkit(tmp_path / 'pip', '13.0', headers=full, libs=('libcudart.so.13', ))
    other = fake_toolkit(tmp_path / 'cuda-12.8', '12.8', headers=full, **cudart)
    complete = fake_toolkit(tmp_path / 'cuda-13.0', '13.0', headers=full, **cudart)
    assert mmcv_cuda.choose_toolkit([stray, partial, pip_tree, other, complete], (13, 0)) == \
        (complete, partial)
    assert mmcv_cuda.choose_toolkit([pip_tree], (13, 0)) == (None, pip_tree)  # no libcudart.so
    assert mmcv_cuda.choose_toolkit([stray, other], (13, 0)) == (None, None)
    assert mmcv_cuda.choose_toolkit([other, '', str(tmp_path / 'none')], (12, 8)) == (other, other)
    assert mmcv_cuda.choose_toolkit([other, other], (12, 8)) == (other, other)


def test_assemble_cuda_home(tmp_path):
    compiler = fake_toolkit(tmp_path / 'pip_nvcc', '13.0', headers=('cuda_runtime.h', 'crt/a.h'),
                            libs=('libcudart.so.13', 'libcudadevrt.a'))
    runtime = fake_toolkit(tmp_path / 'site', headers=('cuda_runtime.h', 'cusparse.h'),
                           libs=('libcusparse.so.12', 'libfoo.so', 'libfoo.so.1', 'libbar.so.1.2'))
    home = mmcv_cuda.assemble_cuda_home(str(tmp_path / 'home'), compiler, [runtime])
    real = osp.realpath
    assert real(osp.join(home, 'bin', 'nvcc')) == osp.join(compiler, 'bin', 'nvcc')
    assert osp.isdir(osp.join(home, 'nvvm', 'bin'))
    with open(osp.join(home, 'include', 'cuda_runtime.h')) as f:
        assert f.read() == compiler  # the compiler's tree wins
    assert real(osp.join(home, 'include', 'cusparse.h')) == osp.join(runtime, 'include', 'cusparse.h')
    assert osp.isfile(osp.join(home, 'include', 'crt', 'a.h'))
    lib64 = osp.join(home, 'lib64')
    assert real(osp.join(lib64, 'libcudart.so')) == osp.join(compiler, 'lib', 'libcudart.so.13')
    assert real(osp.join(lib64, 'libcusparse.so')) == osp.join(runtime, 'lib', 'libcusparse.so.12')
    assert real(osp.join(lib64, 'libbar.so')) == osp.join(runtime, 'lib', 'libbar.so.1.2')
    assert real(osp.join(lib64, 'libfoo.so')) == osp.join(runtime, 'lib', 'libfoo.so')
    assert not osp.lexists(osp.join(lib64, 'libcudadevrt.so'))
    assert mmcv_cuda.missing_headers(home, ('cuda_runtime.h', 'cusparse.h', 'cublas_v2.h')) == \
        ['cublas_v2.h']
    # Made again from scratch; the sources stay untouched.
    touch(osp.join(home, 'stale'))
    assert mmcv_cuda.assemble_cuda_home(home, compiler, [runtime]) == home
    assert not osp.lexists(osp.join(home, 'stale'))
    assert osp.isfile(osp.join(runtime, 'lib', 'libcusparse.so.12'))


def test_assemble_cuda_home_keeps_foreign_folder(tmp_path):
    compiler = fake_toolkit(tmp_path / 'tk', '13.0')
    mine = touch(str(tmp_path / 'home' / 'notes.txt'), 'keep')
    with pytest.raises(FileExistsError):
        mmcv_cuda.assemble_cuda_home(str(tmp_path / 'home'), compiler, [])
    assert os.listdir(tmp_path / 'home') == ['notes.txt'] and osp.isfile(mine)


def test_resolve_cuda_home_order(tmp_path, monkeypatch):
    full = mmcv_cuda.REQUIRED_HEADERS + ('cuda_runtime.h', )
    system = fake_toolkit(tmp_path / 'cuda-13.0', '13.0', headers=full, libs=('libcudart.so', ),
                          lib_dir='lib64')
    extra = fake_toolkit(tmp_path / 'extra', '13.0')
    site = fake_toolkit(tmp_path / 'site', headers=full, libs=('libcudart.so.13', ))
    monkeypatch.setattr(torch.version, 'cuda', '13.0')
    monkeypatch.setattr(mmcv_cuda, 'pip_roots', lambda major: [site])
    monkeypatch.setattr(mmcv_cuda, 'default_candidates', lambda: [system])
    dest = str(tmp_path / 'home')
    assert mmcv_cuda.resolve_cuda_home(dest) == system  # a complete toolkit is used as it is
    home = mmcv_cuda.resolve_cuda_home(dest, [extra])  # an explicit nvcc is preferred
    assert osp.realpath(osp.join(home, 'bin')) == osp.join(extra, 'bin')
    assert not mmcv_cuda.missing_headers(home)
    monkeypatch.setattr(mmcv_cuda, 'default_candidates', lambda: [])
    assert mmcv_cuda.resolve_cuda_home(dest) is None  # site has no nvcc: install.sh pip-installs one
    monkeypatch.setattr(torch.version, 'cuda', '12.8')
    assert mmcv_cuda.resolve_cuda_home(dest, [extra]) is None  # wrong release


def test_ms_deform_attn_call_reaches_the_op():
    # mmcv 2.1.0 has no CPU kernel for it: the binding takes the arguments, then finds no cpu impl.
    with pytest.raises(RuntimeError, match='device cpu not found'):
        mmcv_cuda.ms_deform_attn_error('cpu')


@pytest.fixture
def cuda_mmcv(monkeypatch):
    """The installed mmcv seen as built with CUDA 13.0, torch as CUDA 13.0 with a GPU."""
    import mmcv.ops
    monkeypatch.setattr(mmcv.ops, 'get_compiling_cuda_version', lambda: '13.0')
    monkeypatch.setattr(torch.version, 'cuda', '13.0')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda i=0: 'Fake GPU')
    return monkeypatch


def test_check_mmcv_cpu_ops_here():
    import mmcv.ops
    lines = mmcv_cuda.check_mmcv(False)
    assert lines[0].startswith('mmcv 2.1.0: compiled ops run on CPU; ')
    if mmcv.ops.get_compiling_cuda_version() == 'not available':
        assert lines == ['mmcv 2.1.0: compiled ops run on CPU; no CUDA ops']
        with pytest.raises(RuntimeError, match='CPU ops only'):
            mmcv_cuda.check_mmcv(True)


def test_check_mmcv_runs_the_cuda_op(cuda_mmcv):
    cuda_mmcv.setattr(mmcv_cuda, 'ms_deform_attn_error', lambda device: 3e-7)
    lines = mmcv_cuda.check_mmcv(True)
    assert lines[0] == 'mmcv 2.1.0: compiled ops run on CPU; CUDA ops built with CUDA 13.0'
    assert lines[1] == ('ms_deform_attn_forward on cuda:0 (Fake GPU) matches '
                        'multi_scale_deformable_attn_pytorch (max abs diff 3.00e-07)')
    cuda_mmcv.setattr(mmcv_cuda, 'ms_deform_attn_error', lambda device: 0.5)
    with pytest.raises(RuntimeError, match='differs'):
        mmcv_cuda.check_mmcv(True)
    cuda_mmcv.setattr(mmcv_cuda, 'ms_deform_attn_error', lambda device: float('nan'))
    with pytest.raises(RuntimeError, match='differs'):
        mmcv_cuda.check_mmcv(True)


def test_check_mmcv_demands_torch_cuda_release(cuda_mmcv):
    cuda_mmcv.setattr(torch.version, 'cuda', '12.8')
    with pytest.raises(RuntimeError, match='built with CUDA 13.0'):
        mmcv_cuda.check_mmcv(True)
    cuda_mmcv.setattr(torch.version, 'cuda', '13.0')
    cuda_mmcv.setattr(torch.cuda, 'is_available', lambda: False)
    assert mmcv_cuda.check_mmcv(True)[-1] == 'no GPU visible: the CUDA ops were not run'
