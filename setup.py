"""stvit_mm: the STViT backbone for mmpretrain, mmdet and mmseg.

The whole stack (matched torch/torchvision, mmcv 2.1.0 built with ops, the
three toolboxes) is installed by tools/install.sh; this file only makes the
package itself installable (editable in that environment).
"""
from setuptools import find_packages, setup

setup(
    name='stvit_mm',
    version='0.1.0',
    description='STViT (Super Token Attention, CVPR 2023) backbone for '
    'mmpretrain, mmdet and mmseg',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['stvit_mm', 'stvit_mm.*']),
    install_requires=['torch>=2.0', 'mmengine==0.10.7', 'mmcv==2.1.0'],
    extras_require={
        'cls': ['mmpretrain==1.2.0'],
        'det': ['mmdet==3.3.0'],
        'seg': ['mmsegmentation==1.2.2'],
    },
)
