"""Assemble the GPU kit: everything a run on the lent GPU machine needs that its image lacks, in one folder.

    python tools/misc/build_gpu_kit.py                 # -> build/gpu_kit (idempotent; prints the kit's size)
    python tools/misc/build_gpu_kit.py --python-versions 3.12      # the GPU host's wheels only

The GPU machine (nvidia-h100-x1 / nvidia-h200) has Python 3.12 with torch 2.11.0+cu130, numpy, scipy,
transformers, peft, OpenCV and scikit-image (``tools/misc/gpu_image_packages.txt``), no OpenMMLab package and no
network. The kit holds wheels of what is missing (``KIT_WHEELS``) for each ``--python-versions`` (the GPU host's
and, by default, this machine's, so that ``tools/misc/prove_gpu_kit.sh`` installs the very same folder here), a wheel
of rass_mmseg built from this checkout, ``requirements.txt`` (one ``name==version`` a line), the stand-in
``mmcv._ext`` (``mmcv_ext_stub.py``), ``expected_image.txt`` (what ``tools/misc/run_gpu_kit.sh`` checks first) and
``MANIFEST.txt`` (size and sha256 of every file).

mmcv: ``mmcv-lite`` 2.1.0 (mmcv's pure-Python wheel) plus the stand-in ``_ext``, no compiled op at all. The kit is
then tied to no torch ABI and builds in a minute; on the GPU Mask2Former's deformable attention runs mmcv's PyTorch
implementation (``rass_mmseg/compat/ms_deform_attn.py``), see docs/en/advanced_guides/benchmarks.md.

Only registry access is needed (``pip download`` of wheels, never a source build); wheels already in the kit are
not fetched again, wheels of other versions are removed, so a kit never holds two versions of a package.
"""
import argparse
import hashlib
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List, Sequence, Tuple

from packaging.utils import canonicalize_name, parse_wheel_filename

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

#: (requirement, why it travels). Everything else the run imports is in the GPU image.
KIT_WHEELS: Tuple[Tuple[str, str], ...] = (
    ('mmengine==0.10.7', 'the pinned OpenMMLab stack'),
    ('mmcv-lite==2.1.0', 'mmcv 2.1.0 without compiled ops (see mmcv_ext_stub.py)'),
    ('mmsegmentation==1.2.2', 'the pinned OpenMMLab stack'),
    ('mmdet==3.3.0', "Mask2Former's head, pixel decoder and losses"),
    ('diffusers==0.42.1', 'the Stable Diffusion UNet and VAE'),
    ('kornia==0.9.0', "the degradation engine's filters"),
    ('kornia-rs==0.2.0', 'kornia imports it (compiled: one wheel per Python)'),
    ('ftfy==6.3.1', "mmseg's text tokenizer, imported with mmseg.models"),
    ('wcwidth==0.7.0', 'ftfy and prettytable'),
    ('addict==2.4.0', 'mmengine and mmcv'),
    ('yapf==0.43.0', "mmengine's Config"),
    ('platformdirs==4.14.9', 'yapf'),
    ('termcolor==3.3.0', 'mmengine'),
    ('prettytable==3.19.0', "mmseg's IoUMetric table"),
    ('terminaltables==3.1.10', 'mmdet'),
    ('pycocotools==2.0.11', 'imported by mmdet.models (compiled: one wheel per Python)'),
    ('shapely==2.2.0', 'imported by mmdet.models (compiled: one wheel per Python)'),
    ('setuptools==80.9.0', "pkg_resources, which mmengine needs for 'mmseg::' config bases (gone in setuptools 81)"),
)
#: manylinux tags pip may take for the compiled wheels (the GPU image is Ubuntu 24.04, glibc 2.39; this machine
#: has glibc 2.36), newest first.
PLATFORMS = ('manylinux_2_28_x86_64', 'manylinux_2_27_x86_64', 'manylinux_2_24_x86_64', 'manylinux_2_17_x86_64',
             'manylinux2014_x86_64', 'manylinux1_x86_64')
#: What tools/misc/run_gpu_kit.sh checks on the GPU machine before installing anything.
GPU_IMAGE = dict(python='3.12', torch='2.11.0', gpu='H100|H200',
                 modules='numpy scipy matplotlib yaml rich regex tqdm cv2 skimage PIL transformers tokenizers '
                 'safetensors peft huggingface_hub torchvision torchmetrics timm')
STUB = osp.join(osp.dirname(osp.abspath(__file__)), 'mmcv_ext_stub.py')
MIB = 1024 * 1024


def parse_args(argv: Sequence[str] = None) -> argparse.Namespace:
    here = f'{sys.version_info.major}.{sys.version_info.minor}'
    parser = argparse.ArgumentParser(description='Build the offline GPU kit (wheels + stand-in mmcv._ext)')
    parser.add_argument('--kit', default=osp.join(REPO, 'build', 'gpu_kit'), help='kit folder (created or updated)')
    parser.add_argument('--python-versions', nargs='+', default=sorted({GPU_IMAGE['python'], here}),
                        help="Pythons whose wheels the kit holds (default: the GPU host's and this machine's)")
    parser.add_argument('--max-mib', type=float, default=64.0, help='refuse a kit larger than this (MiB)')
    return parser.parse_args(argv)


def requirement_pins() -> Dict[str, str]:
    """``{canonical name: version}`` of :data:`KIT_WHEELS`."""
    pins = {}
    for requirement, _ in KIT_WHEELS:
        name, version = requirement.split('==')
        pins[canonicalize_name(name)] = version
    return pins


def download(specs: List[str], python_version: str, dest: str) -> None:
    """``pip download`` binary wheels of ``specs`` for CPython ``python_version`` on x86_64 Linux, no deps."""
    cmd = [sys.executable, '-m', 'pip', 'download', '--disable-pip-version-check', '--no-deps',
           '--only-binary=:all:', '--implementation', 'cp', '--python-version', python_version, '-d', dest]
    for platform in PLATFORMS:
        cmd += ['--platform', platform]
    result = subprocess.run(cmd + specs, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f'[kit] pip download for CPython {python_version} failed: {result.stderr.strip()[-2000:]}')


def build_own_wheel(dest: str) -> str:
    """Build rass_mmseg's wheel from this checkout into ``dest`` (replacing an older one); return its path.

    The wheel's bytes depend only on the code (fixed timestamps), so an unchanged checkout rebuilds the same file.
    """
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, SOURCE_DATE_EPOCH='315532800')  # fixed zip timestamps: same code, same bytes
        result = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--disable-pip-version-check', '--no-deps',
                                 '--no-build-isolation', '-q', '-w', tmp, REPO], capture_output=True, text=True,
                                env=env)
        if result.returncode:
            sys.exit(f'[kit] building the rass_mmseg wheel failed: {result.stderr.strip()[-2000:]}')
        (built, ) = os.listdir(tmp)
        for old in os.listdir(dest):
            if old.startswith('rass_mmseg-'):
                os.remove(osp.join(dest, old))
        shutil.move(osp.join(tmp, built), osp.join(dest, built))
    return osp.join(dest, built)


def prune(wheels: str, pins: Dict[str, str]) -> List[str]:
    """Remove every file of ``wheels`` that is not a wheel of a pinned ``name==version``; return their names."""
    removed = []
    for file in sorted(os.listdir(wheels)):
        try:
            name, version, _, _ = parse_wheel_filename(file)
            keep = pins.get(name) == str(version)
        except ValueError:  # not a wheel
            keep = False
        if not keep:
            os.remove(osp.join(wheels, file))
            removed.append(file)
    return removed


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def tree_size(root: str) -> int:
    return sum(osp.getsize(osp.join(d, f)) for d, _, files in os.walk(root) for f in files)


def tracked_size() -> int:
    """Bytes of the checkout's tracked files (they travel to the GPU machine beside the kit)."""
    out = subprocess.run(['git', '-C', REPO, 'ls-files', '-z'], check=True, capture_output=True).stdout
    return sum(osp.getsize(osp.join(REPO, f)) for f in out.decode().split('\0') if f and osp.isfile(osp.join(REPO, f)))


def main(argv: Sequence[str] = None) -> int:
    args = parse_args(argv)
    kit = osp.abspath(args.kit)
    wheels = osp.join(kit, 'wheels')
    os.makedirs(wheels, exist_ok=True)
    specs = [requirement for requirement, _ in KIT_WHEELS]
    for version in args.python_versions:
        print(f'[kit] wheels for CPython {version}: {len(specs)} requirements')
        download(specs, version, wheels)
    own = build_own_wheel(wheels)
    own_name, own_version, _, _ = parse_wheel_filename(osp.basename(own))
    pins = dict(requirement_pins(), **{own_name: str(own_version)})
    for file in prune(wheels, pins):
        print(f'[kit] removed {file} (not a pinned version)')

    with open(osp.join(kit, 'requirements.txt'), 'w') as f:
        f.writelines(f'{name}=={version}\n' for name, version in sorted(pins.items()))
    with open(osp.join(kit, 'expected_image.txt'), 'w') as f:
        f.writelines(f'{key}={value}\n' for key, value in GPU_IMAGE.items())
    shutil.copyfile(STUB, osp.join(kit, 'mmcv_ext_stub.py'))
    files = sorted(osp.relpath(osp.join(d, f), kit) for d, _, names in os.walk(kit) for f in names)
    files = [rel for rel in files if rel != 'MANIFEST.txt']
    with open(osp.join(kit, 'MANIFEST.txt'), 'w') as f:
        f.write(f'# rass_mmseg GPU kit for Python {" / ".join(args.python_versions)}; install and run with '
                'bash tools/misc/run_gpu_kit.sh\n')
        f.writelines(f'{sha256(osp.join(kit, rel))}  {osp.getsize(osp.join(kit, rel)):>9}  {rel}\n' for rel in files)

    size, repo = tree_size(kit), tracked_size()
    print(f'[kit] {kit}: {len(os.listdir(wheels))} wheels, {size / MIB:.1f} MiB '
          f'(limit {args.max_mib:g} MiB; with the checkout\'s tracked files {repo / MIB:.1f} MiB, '
          f'{(size + repo) / MIB:.1f} MiB travels)')
    if size > args.max_mib * MIB:
        print(f'[kit] too large: {size / MIB:.1f} MiB > {args.max_mib:g} MiB', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
