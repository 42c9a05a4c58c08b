# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""The main job: train a real config from scratch on the embedded tiny data,
evaluate it with the toolbox's metric, and say where everything went.

    python tools/train_tiny.py                      # Mask R-CNN STViT-S, COCO metric
    python tools/train_tiny.py --task segmentation  # UperNet STViT-S, mIoU
    python tools/train_tiny.py --task classification

It writes the tiny datasets (tools/dataset_converters/make_tiny_datasets.py)
if they are missing, takes the task's real config, changes only data roots,
image size, run length and logging (stvit_mm.tiny), and runs mmengine's
Runner, the same one ``mim train`` runs. Progress comes from the runner's
logger; checkpoints and logs go to --work-dir.
"""
import argparse
import json
import os
import os.path as osp
import time

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import stvit_mm  # noqa: F401  (registers STViT and the safe-loading list)
from stvit_mm.tiny import apply_tiny_overrides
from stvit_mm.tiny_datasets import make_all

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

DEFAULTS = {
    # config, iterations, learning rate, image size. Measured: Mask R-CNN
    # from scratch at batch 2 diverges with a constant AdamW lr 2e-4 after
    # ~80 iterations; the config's own 1e-4, decayed (stvit_mm.tiny), is used.
    'detection': ('configs/detection/mask_rcnn_stvit_s.py', 120, 1e-4, 128),
    'segmentation': ('configs/segmentation/upernet_stvit_s.py', 150, 1e-4,
                     128),
    'classification': ('configs/classification/stvit_s_in1k.py', 150, 5e-4,
                       64),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train and evaluate a real STViT config on tiny data')
    parser.add_argument('--task', choices=sorted(DEFAULTS),
                        default='detection')
    parser.add_argument('--config', help='override the task\'s config')
    parser.add_argument('--data-root', default=osp.join(ROOT, 'data', 'tiny'))
    parser.add_argument('--work-dir', help='default: work_dirs/tiny_<task>')
    parser.add_argument('--iters', type=int)
    parser.add_argument('--lr', type=float)
    parser.add_argument('--size', type=int, help='image side in pixels')
    parser.add_argument('--resume', action='store_true',
                        help='continue from the last checkpoint in work-dir')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='further config overrides, key=value')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    config, iters, lr, size = DEFAULTS[args.task]
    config = args.config or osp.join(ROOT, config)
    work_dir = args.work_dir or osp.join('work_dirs', f'tiny_{args.task}')
    if not osp.isdir(osp.join(args.data_root, 'coco')):
        print(f'Writing the tiny datasets to {args.data_root}')
        make_all(args.data_root)

    cfg = Config.fromfile(config)
    iters = args.iters or iters
    # validate once, after training (below), to print and return the metrics
    apply_tiny_overrides(cfg, args.data_root, work_dir,
                         size=args.size or size, iters=iters,
                         val_interval=10 * iters,
                         checkpoint_interval=max(1, iters // 3),
                         lr=args.lr or lr)
    # from scratch at batch 2, clip gradients as the 300-epoch recipes do
    cfg.optim_wrapper.clip_grad = dict(max_norm=5.0, norm_type=2)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.resume = args.resume

    start = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val_loop.run() if runner.val_loop else {}
    minutes = (time.time() - start) / 60

    print('\n' + '=' * 72)
    print(f'{args.task}: {osp.basename(config)} trained for '
          f'{runner.iter} iterations from scratch in {minutes:.1f} min')
    if not metrics:
        print('  (no metrics: the model produced no predictions)')
    for name, value in metrics.items():
        print(f'  {name:<32} {value:.4f}' if isinstance(value, float)
              else f'  {name:<32} {value}')
    print(f'checkpoints: {osp.abspath(runner.work_dir)}/iter_*.pth '
          f'(last: {osp.join(osp.abspath(runner.work_dir), "last_checkpoint")})')
    print(f'logs:        {osp.abspath(runner.log_dir)}')
    summary = osp.join(runner.work_dir, 'tiny_metrics.json')
    with open(summary, 'w') as f:
        json.dump({k: float(v) if isinstance(v, (int, float)) else str(v)
                   for k, v in metrics.items()}, f, indent=1)
    print(f'metrics:     {osp.abspath(summary)}')
    return metrics


if __name__ == '__main__':
    os.chdir(ROOT)
    main()
