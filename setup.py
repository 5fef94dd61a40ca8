"""Install rass_mmseg, the MMSegmentation 1.x plugin for RASS (arXiv 2602.14042).

The pinned OpenMMLab stack (mmcv 2.1.0 with compiled ops in particular) cannot be expressed as plain
requirements; ``bash tools/install.sh`` installs it and then this package in editable mode.
"""
import os.path as osp

from setuptools import find_packages, setup


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
        'safetensors',
        'opencv-python',
        'scikit-image',
        'kornia>=0.7',
        'torchmetrics>=1.0',
    ],
    license='Apache License 2.0',
    zip_safe=False,
)
