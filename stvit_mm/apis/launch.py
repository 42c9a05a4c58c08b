# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Config -> mmengine Runner for tools/train.py and tools/test.py, on GPUs
or, with the same command, on CPU-only machines.

The toolbox (mmdet, mmseg, mmpretrain) is chosen by the config's
``default_scope``; the Runner resolves every registry through it, so one
entry point serves every config of this repository.

CPU distributed runs (``--launcher pytorch`` under torchrun, no CUDA) need
two things mmengine 0.10.7 does not do by itself (measured, see
docs/install.md): its ``init_dist`` calls ``torch.cuda.set_device``
unconditionally, and its DDP wrapper passes ``device_ids=[LOCAL_RANK]``,
which DistributedDataParallel rejects for CPU modules. So we initialise the
gloo process group ourselves before the Runner is built (the Runner then
skips ``init_dist``) and wrap with ``device_ids=None``.
"""
import os
import os.path as osp
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.runner import Runner

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
TOOLBOXES = ('mmdet', 'mmseg', 'mmpretrain')


def load_config(config: str, cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None) -> Config:
    """Read a config, merge ``cfg_options`` and set ``work_dir`` (command
    line > config > ``work_dirs/<config name>``)."""
    import stvit_mm  # noqa: F401  (registers STViT and safe loading)
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in TOOLBOXES:
        raise ValueError(f'{config}: default_scope is {scope!r}; expected one'
                         f' of {TOOLBOXES} (it selects the toolbox)')
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs',
                                osp.splitext(osp.basename(config))[0])
    return cfg


def apply_train_options(cfg: Config, resume: Optional[str] = None,
                        amp: bool = False,
                        auto_scale_lr: bool = False) -> Config:
    """Command-line training switches.

    Args:
        resume: None (no resume), 'auto' (latest checkpoint in work_dir) or
            a checkpoint path.
        amp: use mmengine's AmpOptimWrapper (bf16 autocast on CPU).
        auto_scale_lr: scale the lr by total batch / base_batch_size.
    """
    if resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif resume is not None:
        if not osp.isfile(resume):
            raise FileNotFoundError(f'--resume checkpoint not found: {resume}')
        cfg.resume, cfg.load_from = True, resume
    if amp:
        wrapper = cfg.get('optim_wrapper')
        if wrapper is None:
            raise ValueError('--amp needs an optim_wrapper in the config')
        if wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
            wrapper.type = 'AmpOptimWrapper'
            wrapper.setdefault('loss_scale', 'dynamic')
    if auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise ValueError('--auto-scale-lr needs auto_scale_lr.'
                             'base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    return cfg


def check_load_from(cfg: Config) -> None:
    """Fail now, with the file and the problem named, if ``cfg.load_from``
    (a config's ``load_from``, ``--resume CKPT`` or tools/test.py's
    checkpoint) is a local file that cannot be read or holds no STViT
    weights; mmengine would load a foreign file with a missing-keys warning
    and go on from random weights. URLs are left to mmengine."""
    from stvit_mm.utils import check_stvit_checkpoint
    load_from = cfg.get('load_from')
    if load_from and '://' not in str(load_from):
        check_stvit_checkpoint(str(load_from))


def init_cpu_process_group(backend: str = 'gloo') -> None:
    """Join the process group torchrun describes (RANK, WORLD_SIZE,
    MASTER_ADDR, MASTER_PORT in the environment), without touching CUDA."""
    missing = [key for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR',
                               'MASTER_PORT') if key not in os.environ]
    if missing:
        raise RuntimeError(f'--launcher pytorch needs {missing} in the '
                           'environment: start it with torchrun (or '
                           'tools/dist_train.sh / tools/dist_test.sh)')
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method='env://')


def setup_launcher(cfg: Config, launcher: str) -> Config:
    """Set ``cfg.launcher``; for a pytorch launch on a machine without CUDA,
    start gloo now and make the DDP wrapper CPU-compatible."""
    if launcher not in LAUNCHERS:
        raise ValueError(f'launcher must be one of {LAUNCHERS}, got '
                         f'{launcher!r}')
    cfg.launcher = launcher
    if launcher == 'pytorch' and not torch.cuda.is_available():
        init_cpu_process_group()
        wrapper = dict(cfg.get('model_wrapper_cfg') or {})
        wrapper.setdefault('type', 'MMDistributedDataParallel')
        wrapper['device_ids'] = None  # CPU modules: no device list
        wrapper.setdefault('broadcast_buffers', False)  # as mmengine's own
        # mmengine reads this only when it builds the wrapper itself
        wrapper.setdefault('find_unused_parameters',
                           cfg.get('find_unused_parameters', False))
        cfg.model_wrapper_cfg = wrapper
    return cfg


def build_runner(cfg: Config) -> Runner:
    """The Runner a config asks for (``runner_type``), else mmengine's."""
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
