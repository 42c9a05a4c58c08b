# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Train any config of this repository with mmengine's Runner; the toolbox
(mmdet, mmseg, mmpretrain) comes from the config's default_scope.

    python tools/train.py configs/detection/mask_rcnn_stvit_s.py
    bash tools/dist_train.sh configs/detection/mask_rcnn_stvit_s.py 8

Distributed runs work on GPUs (NCCL) and, unchanged, on CPU-only machines
(gloo); see stvit_mm/apis/launch.py.
"""
import argparse
import os
import pickle
import sys

from mmengine.config import DictAction

from stvit_mm.apis.launch import (LAUNCHERS, apply_train_options,
                                  build_runner, check_load_from, load_config,
                                  setup_launcher)


def parse_args():
    parser = argparse.ArgumentParser(description='Train an STViT config')
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument(
        '--resume', nargs='?', const='auto', metavar='CHECKPOINT',
        help='resume from CHECKPOINT, or from the latest checkpoint in the '
        'work dir when no path is given')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (AmpOptimWrapper)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr to the actual total batch size')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    try:
        apply_train_options(cfg, args.resume, args.amp, args.auto_scale_lr)
        check_load_from(cfg)
    except (OSError, ValueError, pickle.UnpicklingError) as error:
        sys.exit(f'error: {error}')  # names the file and the problem
    setup_launcher(cfg, args.launcher)
    build_runner(cfg).train()


if __name__ == '__main__':
    main()
