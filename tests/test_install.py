"""tools/install.sh with a torch of the environment's (--keep-torch), from a
downloaded folder with the registry unreachable (--download, --offline), and
its errors for what cannot work.

The "environment" is an interpreter that sees only what a GPU container
image brings (torch, torchvision, numpy, scipy, matplotlib, OpenCV, ONNX
Runtime and their dependencies: links to this venv's copies); everything
else must come from the downloaded folder.
The mmcv wheel comes from the install's own cache (same torch, CPU ops),
which README's install has filled.
"""
import importlib.metadata as metadata
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
INSTALL = osp.join(ROOT, 'tools', 'install.sh')
# What the GPU machine's image (and NGC's) brings besides pip; the heavy
# wheels, which would make the offline install minutes longer in the suite.
CONTAINER = ['torch', 'torchvision', 'numpy', 'scipy', 'matplotlib',
             'opencv-python', 'onnxruntime', 'onnx']


def _install(*args, env=None, timeout=900):
    return subprocess.run(['bash', INSTALL, *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _dists_needed(names):
    """Distributions of ``names`` and of everything they require."""
    seen, todo = {}, list(names)
    while todo:
        name = re.split(r'[ ;<>=!~\[(]', todo.pop(), maxsplit=1)[0]
        key = name.lower().replace('_', '-')
        if not key or key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency this venv does not have
        seen[key] = dist
        todo += [r for r in (dist.requires or []) if 'extra ==' not in r]
    return list(seen.values())


def _torch_only_python(root):
    """An interpreter whose packages are those of CONTAINER and what they
    need, nothing else: a venv whose .pth names a folder of links to this
    venv's copies of those distributions."""
    site = root / 'site'
    site.mkdir()
    for dist in _dists_needed(CONTAINER):
        tops = {str(f).split('/')[0] for f in dist.files or []}
        for top in tops:
            src = osp.join(str(dist.locate_file('')), top)
            if top != '..' and osp.exists(src) and not (site / top).exists():
                os.symlink(src, site / top)
    subprocess.run([sys.executable, '-m', 'venv', str(root / 'env')],
                   check=True)
    purelib = subprocess.run(
        [str(root / 'env' / 'bin' / 'python'), '-c',
         'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
        capture_output=True, text=True, check=True).stdout.strip()
    with open(osp.join(purelib, 'torch_env.pth'), 'w') as f:
        f.write(str(site) + '\n')
    return str(root / 'env' / 'bin' / 'python')


def _offline_env(**extra):
    """The registry out of reach: no index, no pip configuration."""
    env = dict(os.environ, PIP_NO_INDEX='1', PIP_CONFIG_FILE=os.devnull,
               STVIT_MM_CUDA='0')
    env.pop('PIP_FIND_LINKS', None)
    env.update(extra)
    return env


@pytest.fixture(scope='module')
def offline_install(tmp_path_factory):
    """(venv python, wheel folder, base python): download with the
    registry, then install offline beside the base interpreter's torch."""
    root = tmp_path_factory.mktemp('install')
    base_python = _torch_only_python(root)
    wheels = root / 'wheels'
    download = _install('--keep-torch', '--download', str(wheels),
                        env=dict(os.environ, PYTHON=base_python,
                                 STVIT_MM_CUDA='0'))
    assert download.returncode == 0, download.stderr[-3000:]
    names = os.listdir(wheels)
    assert 'mmcv-2.1.0.tar.gz' in names
    assert not any(n.startswith('torch-') for n in names)  # kept, not fetched
    assert not any(n.startswith('nvidia_cuda_nvcc') for n in names)  # CPU

    venv = root / 'venv'
    install = _install('--keep-torch', '--offline', str(wheels),
                       env=_offline_env(PYTHON=base_python,
                                        STVIT_MM_VENV=str(venv)))
    assert install.returncode == 0, (install.stdout[-3000:]
                                     + install.stderr[-3000:])
    assert '[install] ok: torch 2.14.1' in install.stdout
    return str(venv / 'bin' / 'python'), str(wheels), base_python


def test_offline_install_keeps_the_environments_torch(offline_install):
    python, _, base_python = offline_install
    script = (
        'import torch, mmcv, mmdet, mmpretrain, mmseg, stvit_mm\n'
        'from mmcv.ops import nms\n'
        'from mmengine.registry import MODELS\n'
        'print(torch.__file__)\n'
        'boxes = torch.tensor([[0., 0, 10, 10], [1, 1, 10, 10], '
        '[20, 20, 30, 30]])\n'
        'print(nms(boxes, torch.tensor([.9, .8, .7]), 0.5)[1].tolist())\n'
        'model = MODELS.build(dict(type="STViT", arch=dict(embed_dims=[8, 16,'
        ' 32, 64], depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 4]),'
        ' stoken_size=[4, 2, 1, 1], out_indices=(3,)))\n'
        'print(tuple(model(torch.rand(1, 3, 64, 64))[0].shape))\n')
    out = subprocess.run([python, '-c', script], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    torch_file, kept, shape = out.stdout.strip().splitlines()[-3:]
    base_site = subprocess.run(
        [base_python, '-c', 'import torch; print(torch.__file__)'],
        capture_output=True, text=True, check=True).stdout.strip()
    assert torch_file == base_site  # the environment's torch, not a copy
    assert kept == '[0, 2]' and shape == '(1, 64, 2, 2)'


def test_cuda_build_that_cannot_work_says_why(offline_install, tmp_path):
    """A CUDA build needs an nvcc of torch's CUDA version: each way it can
    be missing stops the install with the versions involved."""
    python, wheels, base_python = offline_install
    venv = osp.dirname(osp.dirname(python))
    env = _offline_env(PYTHON=base_python, STVIT_MM_VENV=venv,
                       STVIT_MM_CUDA='1', STVIT_MM_CACHE=str(tmp_path))
    no_arch = _install('--keep-torch', '--offline', wheels, env=env)
    assert no_arch.returncode != 0
    assert 'no GPU visible' in no_arch.stderr
    assert "STVIT_MM_CUDA_ARCH='8.0;9.0'" in no_arch.stderr

    env['STVIT_MM_CUDA_ARCH'] = '9.0'
    fake = tmp_path / 'cuda12' / 'bin' / 'nvcc'
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/sh\necho "Cuda compilation tools, release 12.4,'
                    ' V12.4.131"\n')
    fake.chmod(0o755)
    wrong = _install('--keep-torch', '--offline', wheels,
                     env=dict(env, STVIT_MM_NVCC=str(fake)))
    assert wrong.returncode != 0
    assert 'is CUDA 12.4; torch was built with CUDA 13.0' in wrong.stderr

    # The folder was made for CPU ops: no nvcc wheels in it.
    missing = _install('--keep-torch', '--offline', wheels,
                       env=dict(env, STVIT_MM_NVCC='registry'))
    assert missing.returncode != 0
    assert 'built with CUDA 13.0, and no nvcc of that version' in \
        missing.stderr
    assert '--download' in missing.stderr
    # The CPU build in the venv is untouched by the failed attempts.
    out = subprocess.run([python, '-c', 'import mmcv.ops'],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_bad_invocations_name_the_problem(tmp_path):
    unknown = _install('--gpu')
    assert unknown.returncode != 0
    assert "unknown option '--gpu'" in unknown.stderr
    absent = _install('--offline', str(tmp_path / 'nowhere'))
    assert absent.returncode != 0
    assert 'does not exist' in absent.stderr
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip',
                    str(tmp_path / 'bare')], check=True)
    no_torch = _install('--keep-torch', env=dict(
        os.environ, PYTHON=str(tmp_path / 'bare' / 'bin' / 'python'),
        STVIT_MM_VENV=str(tmp_path / 'venv')))
    assert no_torch.returncode != 0
    assert 'cannot import torch' in no_torch.stderr
    assert not (tmp_path / 'venv').exists()  # nothing half-made
