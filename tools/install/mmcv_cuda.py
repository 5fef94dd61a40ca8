"""Helpers for tools/install/install.sh: decide whether mmcv gets CUDA ops and prepare its CUDA build.

mmcv 2.1.0's setup.py compiles CUDA ops whenever ``torch.cuda.is_available()`` (or FORCE_CUDA=1) and
then needs a CUDA toolkit whose release matches the CUDA torch was built with (``torch.version.cuda``).
A toolkit is taken from an existing install (``CUDA_HOME``, ``CUDA_PATH``, ``/usr/local/cuda`` or
the ``nvcc`` on PATH) when its ``nvcc --version`` matches and it has every header torch's CUDA
headers include and ``lib64/libcudart.so``; otherwise a CUDA_HOME is assembled from symlinks in a
folder owned by this script: ``bin`` and ``nvvm`` of a matching nvcc (an existing install or pip's
``nvidia-cuda-nvcc``), ``include`` and ``lib64`` merged from that toolkit and pip's
``nvidia/cu<major>`` trees (torch's own CUDA libraries), with unversioned ``libX.so`` names added
for the linker. Nothing outside that folder is changed.

Sub-commands (each prints one result on stdout; messages go to stderr)::

    python tools/install/mmcv_cuda.py mode          # "cuda" or "cpu" (RASS_MMCV_CUDA=1/0/auto)
    python tools/install/mmcv_cuda.py pip-spec      # e.g. cuda-toolkit[nvcc,cccl,crt]==13.0.3
    python tools/install/mmcv_cuda.py cuda-home --dest build/cuda-home [--root DIR ...]
    python tools/install/mmcv_cuda.py arch-list     # TORCH_CUDA_ARCH_LIST, e.g. 9.0
    python tools/install/mmcv_cuda.py check [--cuda] [--report]   # does the installed mmcv have the ops?

``cuda-home`` exits with status 3 when no nvcc of the right release is found (install ``pip-spec``
and run it again).
"""
import argparse
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

# Headers that torch's CUDA headers (ATen/cuda/CUDAContextLight.h) include, plus the runtime's own.
REQUIRED_HEADERS = ('cuda_runtime_api.h', 'cusparse.h', 'cublas_v2.h', 'cublasLt.h',
                    'cusolverDn.h')
PIP_TOOLKIT_EXTRAS = ('nvcc', 'cccl', 'crt')
MARKER = '.rass_mmseg_cuda_home'
NO_TOOLKIT = 3

Version = Tuple[int, int]


def parse_nvcc_release(text: str) -> Optional[Version]:
    """Return ``(major, minor)`` from the output of ``nvcc --version``, or None if absent."""
    match = re.search(r'release (\d+)\.(\d+)', text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def parse_cuda_version(version: str) -> Version:
    """Return ``(major, minor)`` of a CUDA version string such as ``'13.0'`` or ``'12.8.1'``."""
    major, minor = version.split('.')[:2]
    return int(major), int(minor)


def cuda_mode(setting: Optional[str], cuda_available: bool, torch_cuda: Optional[str]) -> str:
    """Decide whether mmcv is built with CUDA ops.

    Args:
        setting: Value of RASS_MMCV_CUDA: ``'1'`` forces CUDA, ``'0'`` forces CPU only, unset,
            empty or ``'auto'`` follows ``cuda_available``.
        cuda_available: Whether torch sees a GPU.
        torch_cuda: ``torch.version.cuda`` (None for a CPU-only torch).

    Returns:
        ``'cuda'`` or ``'cpu'``.

    Raises:
        ValueError: On an unknown setting, or CUDA forced with a torch built without CUDA.
    """
    setting = (setting or 'auto').strip().lower()
    if setting not in ('0', '1', 'auto'):
        raise ValueError(f'RASS_MMCV_CUDA must be 0, 1 or auto, not {setting!r}')
    want = setting == '1' or (setting == 'auto' and cuda_available)
    if want and not torch_cuda:
        if setting == '1':
            raise ValueError('RASS_MMCV_CUDA=1 but this torch was built without CUDA')
        return 'cpu'
    return 'cuda' if want else 'cpu'


def toolkit_requirement(torch_requires: Iterable[str],
                        extras: Sequence[str] = PIP_TOOLKIT_EXTRAS) -> str:
    """Build the pip requirement for the compiler parts of the toolkit torch pins.

    Args:
        torch_requires: torch's ``Requires-Dist`` lines (``importlib.metadata.requires('torch')``).
        extras: The cuda-toolkit extras to ask for.

    Returns:
        E.g. ``'cuda-toolkit[nvcc,cccl,crt]==13.0.3'``.

    Raises:
        LookupError: When torch does not pin cuda-toolkit with ``==``.
    """
    for line in torch_requires:
        match = re.match(r'\s*cuda-toolkit\s*(\[[^\]]*\])?\s*==\s*([\w.]+)', line)
        if match:
            return f'cuda-toolkit[{",".join(extras)}]=={match.group(2)}'
    raise LookupError('torch does not pin cuda-toolkit==<version>; install a CUDA toolkit '
                      'matching torch.version.cuda and set CUDA_HOME')


def arch_list(capabilities: Iterable[Tuple[int, int]], override: Optional[str] = None,
              torch_archs: Sequence[str] = ()) -> str:
    """Choose TORCH_CUDA_ARCH_LIST.

    Args:
        capabilities: ``(major, minor)`` compute capabilities of the visible GPUs.
        override: The user's TORCH_CUDA_ARCH_LIST; used as given when not empty.
        torch_archs: torch's own targets (``torch.cuda.get_arch_list()``, e.g. ``'sm_90'``), the
            fallback when no GPU is visible.

    Returns:
        Semicolon-separated ``major.minor`` list, sorted and without repeats, e.g. ``'8.6;9.0'``.

    Raises:
        ValueError: When there is neither an override, a GPU nor a torch arch to go by.
    """
    if override and override.strip():
        return override.strip()
    caps = set(capabilities)
    if not caps:
        for arch in torch_archs:
            match = re.fullmatch(r'sm_(\d+?)(\d)a?', arch)
            if match:
                caps.add((int(match.group(1)), int(match.group(2))))
    if not caps:
        raise ValueError('no GPU visible: set TORCH_CUDA_ARCH_LIST (e.g. 9.0)')
    return ';'.join(f'{major}.{minor}' for major, minor in sorted(caps))


def find_header_dirs(root: str) -> List[str]:
    """Return the include folders of a CUDA tree (``include`` and ``targets/*/include``)."""
    dirs = [osp.join(root, 'include')]
    targets = osp.join(root, 'targets')
    if osp.isdir(targets):
        dirs += [osp.join(targets, t, 'include') for t in sorted(os.listdir(targets))]
    return [d for d in dirs if osp.isdir(d)]


def find_lib_dirs(root: str) -> List[str]:
    """Return the library folders of a CUDA tree (``lib64``, ``lib``, ``targets/*/lib``)."""
    dirs = [osp.join(root, 'lib64'), osp.join(root, 'lib')]
    targets = osp.join(root, 'targets')
    if osp.isdir(targets):
        dirs += [osp.join(targets, t, 'lib') for t in sorted(os.listdir(targets))]
    seen, out = set(), []
    for d in dirs:
        if osp.isdir(d) and osp.realpath(d) not in seen:
            seen.add(osp.realpath(d))
            out.append(d)
    return out


def missing_headers(root: str, headers: Sequence[str] = REQUIRED_HEADERS) -> List[str]:
    """Return the headers of ``headers`` that no include folder of ``root`` holds."""
    dirs = find_header_dirs(root)
    return [h for h in headers if not any(osp.isfile(osp.join(d, h)) for d in dirs)]


def nvcc_release(root: str) -> Optional[Version]:
    """Run ``<root>/bin/nvcc --version``; return its release, or None when it cannot run."""
    nvcc = osp.join(root, 'bin', 'nvcc')
    if not os.access(nvcc, os.X_OK):
        return None
    try:
        out = subprocess.run([nvcc, '--version'], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvcc_release(out.stdout)


def choose_toolkit(candidates: Iterable[str], want: Version,
                   release: Callable[[str], Optional[Version]] = nvcc_release
                   ) -> Tuple[Optional[str], Optional[str]]:
    """Pick toolkit roots among ``candidates`` whose nvcc release is ``want``.

    A root counts only when it also holds ``cuda_runtime.h`` (so ``/usr/local`` with a stray
    ``bin/nvcc`` wrapper is not taken for a toolkit).

    Returns:
        ``(complete, compiler)``: the first matching root that has every required header and the
        ``lib64/libcudart.so`` torch's build links with (usable as CUDA_HOME as it is), and the
        first matching root at all (its nvcc can be used in an assembled CUDA_HOME). Either is
        None when there is none.
    """
    complete = compiler = None
    seen = set()
    for root in candidates:
        if not root or osp.realpath(root) in seen:
            continue
        seen.add(osp.realpath(root))
        if missing_headers(root, ('cuda_runtime.h',)) or release(root) != want:
            continue
        compiler = compiler or root
        linkable = osp.exists(osp.join(root, 'lib64', 'libcudart.so'))
        if complete is None and linkable and not missing_headers(root):
            complete = root
    return complete, compiler


def _unversioned(name: str) -> Optional[str]:
    """``libcudart.so.13`` -> ``libcudart.so``; None for names without a version suffix."""
    match = re.fullmatch(r'(lib[\w+-]+\.so)(\.\d+)+', name)
    return match.group(1) if match else None


def assemble_cuda_home(dest: str, compiler_root: str, roots: Sequence[str]) -> str:
    """Build a CUDA_HOME of symlinks in ``dest``.

    ``bin`` and ``nvvm`` point to ``compiler_root``'s; ``include`` and ``lib64`` hold one link per
    entry of the include/library folders of ``compiler_root`` then ``roots`` (the first of a name
    wins), and ``libX.so`` next to each ``libX.so.N`` that has no unversioned name.

    Args:
        dest: Folder to (re)create. An existing one is replaced only when this function made it.
        compiler_root: Toolkit root holding ``bin/nvcc``.
        roots: Further CUDA trees, e.g. ``site-packages/nvidia/cu13``.

    Returns:
        ``dest`` as an absolute path.

    Raises:
        FileExistsError: When ``dest`` exists and was not made by this function.
    """
    dest = osp.abspath(dest)
    if osp.lexists(dest):
        if not osp.isfile(osp.join(dest, MARKER)):
            raise FileExistsError(f'{dest} exists and was not made by {__file__}; remove it')
        shutil.rmtree(dest)
    os.makedirs(osp.join(dest, 'include'))
    os.makedirs(osp.join(dest, 'lib64'))
    for name in ('bin', 'nvvm'):
        if osp.isdir(osp.join(compiler_root, name)):
            os.symlink(osp.realpath(osp.join(compiler_root, name)), osp.join(dest, name))
    trees = [compiler_root, *roots]
    for sub, finder in (('include', find_header_dirs), ('lib64', find_lib_dirs)):
        for folder in (d for tree in trees for d in finder(tree)):
            for name in sorted(os.listdir(folder)):
                link = osp.join(dest, sub, name)
                if not osp.lexists(link):
                    os.symlink(osp.realpath(osp.join(folder, name)), link)
    lib64 = osp.join(dest, 'lib64')
    for name in sorted(os.listdir(lib64)):
        plain = _unversioned(name)
        if plain and not osp.lexists(osp.join(lib64, plain)):
            os.symlink(os.readlink(osp.join(lib64, name)), osp.join(lib64, plain))
    with open(osp.join(dest, MARKER), 'w') as f:
        f.write(f'made by tools/install/mmcv_cuda.py from {compiler_root} and {list(roots)}\n')
    return dest


def default_candidates() -> List[str]:
    """Existing toolkit roots to try: CUDA_HOME, CUDA_PATH, /usr/local/cuda, nvcc on PATH."""
    roots = [os.environ.get('CUDA_HOME'), os.environ.get('CUDA_PATH'), '/usr/local/cuda']
    nvcc = shutil.which('nvcc')
    if nvcc:
        roots.append(osp.dirname(osp.dirname(osp.realpath(nvcc))))
    return [r for r in roots if r]


def pip_roots(major: int) -> List[str]:
    """Folders ``nvidia/cu<major>`` of pip's CUDA packages on sys.path."""
    found = [osp.join(p, 'nvidia', f'cu{major}') for p in sys.path if p]
    return [r for r in dict.fromkeys(found) if osp.isdir(r)]


def resolve_cuda_home(dest: str, extra_roots: Sequence[str] = ()) -> Optional[str]:
    """Return a CUDA_HOME matching torch's CUDA release, or None when no matching nvcc is found.

    An nvcc in ``extra_roots`` is preferred; otherwise a complete existing toolkit is returned as it
    is; otherwise the nvcc of an existing toolkit or of pip's packages is used in a CUDA_HOME
    assembled in ``dest`` together with ``extra_roots`` and pip's ``nvidia/cu<major>`` trees.
    """
    import torch
    want = parse_cuda_version(torch.version.cuda)
    roots = [*extra_roots, *pip_roots(want[0])]
    compiler = choose_toolkit(extra_roots, want)[1]
    if compiler is None:
        complete, compiler = choose_toolkit(default_candidates(), want)
        if complete:
            return complete
    compiler = compiler or choose_toolkit(roots, want)[1]
    if compiler is None:
        return None
    return assemble_cuda_home(dest, compiler, [r for r in roots if r != compiler])


def visible_capabilities() -> List[Tuple[int, int]]:
    """Compute capabilities of the GPUs torch sees (empty without one)."""
    import torch
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())]


def ms_deform_attn_error(device: str) -> float:
    """Largest difference of mmcv's compiled ``ms_deform_attn_forward`` from its PyTorch reference.

    Runs the op on ``device`` and mmcv's ``multi_scale_deformable_attn_pytorch`` on CPU, on the same
    small random inputs.
    """
    import torch
    from mmcv.ops.multi_scale_deform_attn import ext_module, multi_scale_deformable_attn_pytorch
    gen = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[6, 4], [3, 2]])
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    bs, queries, heads, dims, points = 2, 5, 2, 4, 3
    value = torch.rand(bs, int(shapes.prod(1).sum()), heads, dims, generator=gen)
    locations = torch.rand(bs, queries, heads, len(shapes), points, 2, generator=gen)
    weights = torch.rand(bs, queries, heads, len(shapes), points, generator=gen)
    weights = weights / weights.sum((-1, -2), keepdim=True)
    expected = multi_scale_deformable_attn_pytorch(value, shapes, locations, weights)
    args = [t.to(device) for t in (value, shapes, starts, locations, weights)]
    out = ext_module.ms_deform_attn_forward(*args, im2col_step=1)
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    return float((out.cpu() - expected).abs().max())


def check_mmcv(want_cuda: bool) -> List[str]:
    """Check the installed mmcv: version 2.1.0, compiled ops that run and, when ``want_cuda``, CUDA
    ops built for torch's CUDA release that run on the first visible GPU (if any).

    Returns:
        Report lines.

    Raises:
        RuntimeError: Naming the first check that failed.
    """
    import mmcv
    import torch
    from mmcv.ops import get_compiling_cuda_version, nms
    if mmcv.__version__ != '2.1.0':
        raise RuntimeError(f'mmcv {mmcv.__version__} is installed, 2.1.0 is needed')
    keep = nms(torch.tensor([[0., 0., 1., 1.], [0., 0., 1., 1.]]), torch.tensor([0.9, 0.8]), .5)[1]
    if keep.tolist() != [0]:
        raise RuntimeError(f'mmcv.ops.nms kept {keep.tolist()} instead of [0]')
    compiled = get_compiling_cuda_version()
    ops = 'no CUDA ops' if compiled == 'not available' else f'CUDA ops built with CUDA {compiled}'
    lines = [f'mmcv {mmcv.__version__}: compiled ops run on CPU; {ops}']
    if not want_cuda:
        return lines
    if compiled == 'not available':
        raise RuntimeError('mmcv has CPU ops only; CUDA ops were asked for')
    if parse_cuda_version(compiled) != parse_cuda_version(torch.version.cuda):
        raise RuntimeError(f'mmcv ops were built with CUDA {compiled}, torch uses '
                           f'{torch.version.cuda}')
    if not torch.cuda.is_available():
        return lines + ['no GPU visible: the CUDA ops were not run']
    error = ms_deform_attn_error('cuda')
    if not error < 1e-4:
        raise RuntimeError(f'ms_deform_attn_forward on CUDA differs from the PyTorch reference '
                           f'by {error}')
    name = torch.cuda.get_device_name(0)
    return lines + [f'ms_deform_attn_forward on cuda:0 ({name}) matches '
                    f'multi_scale_deformable_attn_pytorch (max abs diff {error:.2e})']


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='cmd', required=True)
    sub.add_parser('mode')
    sub.add_parser('pip-spec')
    sub.add_parser('arch-list')
    home = sub.add_parser('cuda-home')
    home.add_argument('--dest', required=True, help='folder for an assembled CUDA_HOME')
    home.add_argument('--root', action='append', default=[], help='extra CUDA tree to use')
    check = sub.add_parser('check')
    check.add_argument('--cuda', action='store_true', help='demand CUDA ops')
    check.add_argument('--report', action='store_true', help='print the report')
    args = parser.parse_args(argv)

    import torch
    try:
        if args.cmd == 'mode':
            print(cuda_mode(os.environ.get('RASS_MMCV_CUDA'), torch.cuda.is_available(),
                            torch.version.cuda))
        elif args.cmd == 'pip-spec':
            from importlib.metadata import requires
            print(toolkit_requirement(requires('torch') or []))
        elif args.cmd == 'arch-list':
            print(arch_list(visible_capabilities(), os.environ.get('TORCH_CUDA_ARCH_LIST'),
                            torch.cuda.get_arch_list() or torch._C._cuda_getArchFlags().split()))
        elif args.cmd == 'cuda-home':
            home_dir = resolve_cuda_home(args.dest, args.root)
            if home_dir is None:
                print(f'no nvcc of CUDA {torch.version.cuda} found', file=sys.stderr)
                return NO_TOOLKIT
            print(home_dir)
        else:
            lines = check_mmcv(args.cuda)
            if args.report:
                print('\n'.join(lines))
    except (ValueError, LookupError, FileExistsError, RuntimeError) as e:
        print(f'[mmcv_cuda] {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
