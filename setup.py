"""Install rass_mmseg, the MMSegmentation 1.x plugin for RASS (arXiv 2602.14042).

The pinned OpenMMLab stack (mmcv 2.1.0 with compiled ops in particular) cannot be expressed as plain
requirements; ``bash tools/install.sh`` installs it and then this package in editable mode.

As OpenMMLab packages do, the package carries ``configs/``, ``demo/``, ``tools/`` and a ``model-index.yml`` (made
from ``configs/*/metafile.yaml``) in ``rass_mmseg/.mim/``, where mmengine resolves ``_base_ =
['rass_mmseg::rass/<config>.py']``: a wheel (``pip install .``, an sdist) gets copies; an editable install
(``pip install -e .``) gets links into this checkout, so ``configs/`` stays the one source. ``rass_mmseg/.mim`` is
generated and git-ignored.
"""
import glob
import os
import os.path as osp
import shutil
import warnings

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
#: Folders of the checkout that go into ``rass_mmseg/.mim``.
MIM_FOLDERS = ('configs', 'demo', 'tools')


def model_index() -> str:
    """``model-index.yml``: the metafiles of ``configs/*/`` (paths relative to ``.mim``), as mmseg lists them."""
    metafiles = sorted(osp.relpath(path, HERE).replace(os.sep, '/')
                       for path in glob.glob(osp.join(HERE, 'configs', '*', 'metafile.yaml')))
    return 'Import:\n' + ''.join(f'- {path}\n' for path in metafiles)


def _remove(path: str) -> None:
    """Remove a generated link, file or folder of ``.mim``."""
    if osp.islink(path) or osp.isfile(path):
        os.remove(path)
    elif osp.isdir(path):
        shutil.rmtree(path)


def write_mim(mim_dir: str, link: bool) -> None:
    """Fill ``mim_dir`` with :data:`MIM_FOLDERS` (relative links when ``link``, else copies) and model-index.yml.

    Args:
        mim_dir: The package's ``.mim`` folder (in the checkout for an editable install, in the build folder for
            a wheel).
        link: Link instead of copying; falls back to copies (with a warning) where links cannot be made.
    """
    os.makedirs(mim_dir, exist_ok=True)
    for name in MIM_FOLDERS:
        source, target = osp.join(HERE, name), osp.join(mim_dir, name)
        if not osp.isdir(source):
            raise FileNotFoundError(f'{source}: not found (the sdist must carry it: see MANIFEST.in)')
        _remove(target)
        if link:
            try:
                os.symlink(osp.relpath(source, mim_dir), target, target_is_directory=True)
                continue
            except OSError as error:  # e.g. Windows without the symlink privilege
                warnings.warn(f'cannot link {target} -> {source} ({error}); copying instead')
        shutil.copytree(source, target, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    with open(osp.join(mim_dir, 'model-index.yml'), 'w') as f:
        f.write(model_index())


class BuildPyWithMim(build_py):
    """setuptools' ``build_py`` that also writes ``rass_mmseg/.mim`` (see the module docstring)."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # the package is imported from the checkout: link there
            write_mim(osp.join(HERE, 'rass_mmseg', '.mim'), link=True)
        else:
            write_mim(osp.join(self.build_lib, 'rass_mmseg', '.mim'), link=False)


def read_version() -> str:
    namespace: dict = {}
    with open(osp.join(osp.dirname(__file__), 'rass_mmseg', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='rass_mmseg',
    version=read_version(),
    description='RASS: restoration adaptation for semantic segmentation on low-quality images, '
    'as an MMSegmentation 1.x plugin',
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['rass_mmseg', 'rass_mmseg.*']),
    python_requires='>=3.9',
    install_requires=[
        'torch>=2.1',
        'torchvision',
        'mmengine>=0.10.0',
        'mmcv>=2.0.0rc4,<2.2.0',
        'mmsegmentation>=1.2.0',
        'mmdet>=3.0.0',
        'diffusers>=0.30',
        'transformers>=4.40',
        'peft>=0.13',
        'timm',
        'safetensors',
        'opencv-python',
        'scikit-image',
        'kornia>=0.7',
        'torchmetrics>=1.0',
    ],
    license='Apache License 2.0',
    cmdclass={'build_py': BuildPyWithMim},
    zip_safe=False,
)
