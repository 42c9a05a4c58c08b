"""stvit_mm: the STViT backbone for mmpretrain, mmdet and mmseg.

The whole stack (matched torch/torchvision, mmcv 2.1.0 built with ops, the
three toolboxes) is installed by tools/install.sh; this file only makes the
package itself installable (editable in that environment).

A regular (non-editable) install also carries the model index and the configs
it names, under stvit_mm/.mim/ as the OpenMMLab packages do, so that
``mmpretrain.get_model('stvit_s_in1k')`` works without the repository; an
editable install reads them from the repository itself.
"""
import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

MIM_FILES = ('model-index.yml', 'configs')


class BuildPyWithModelIndex(build_py):
    """build_py that copies MIM_FILES into the built package's .mim/."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            return  # the package runs from the repository, which has them
        root = os.path.dirname(os.path.abspath(__file__))
        mim = os.path.join(self.build_lib, 'stvit_mm', '.mim')
        os.makedirs(mim, exist_ok=True)
        for name in MIM_FILES:
            src, dst = os.path.join(root, name), os.path.join(mim, name)
            if os.path.isdir(src):
                shutil.copytree(src, dst, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns('__pycache__'))
            else:
                shutil.copyfile(src, dst)

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
    cmdclass={'build_py': BuildPyWithModelIndex},
    install_requires=['torch>=2.0', 'mmengine==0.10.7', 'mmcv==2.1.0'],
    extras_require={
        'cls': ['mmpretrain==1.2.0'],
        'det': ['mmdet==3.3.0'],
        'seg': ['mmsegmentation==1.2.2'],
        # timm.create_model('stvit_small', ...): see stvit_mm/timm.py
        'timm': ['timm>=1.0'],
    },
)
