# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Evaluate a checkpoint of any config of this repository with mmengine's
Runner (the config's test dataloader and evaluator); the toolbox comes from
the config's default_scope.

    python tools/test.py configs/detection/mask_rcnn_stvit_s.py CHECKPOINT
    bash tools/dist_test.sh configs/detection/mask_rcnn_stvit_s.py CHECKPOINT 8

Checkpoints load with torch's weights-only unpickler (importing stvit_mm
registers what mmengine checkpoints need).
"""
import argparse
import os
import pickle
import sys

from mmengine.config import DictAction
from mmengine.dist import is_main_process

from stvit_mm.apis.launch import (LAUNCHERS, build_runner, check_load_from,
                                  load_config, setup_launcher)


def parse_args():
    parser = argparse.ArgumentParser(description='Test an STViT checkpoint')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where logs and metrics go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    try:
        check_load_from(cfg)
    except (OSError, ValueError, pickle.UnpicklingError) as error:
        # a bad file fails here, named, not after the model and data are built
        sys.exit(f'error: {error}')
    setup_launcher(cfg, args.launcher)
    metrics = build_runner(cfg).test()
    if is_main_process():  # every rank holds the same gathered metrics
        print(f'metrics: {metrics}')


if __name__ == '__main__':
    main()
