from setuptools import find_packages, setup
setup(name='stvit_mm', version='0.1.0', packages=find_packages(include=['stvit_mm', 'stvit_mm.*']))
