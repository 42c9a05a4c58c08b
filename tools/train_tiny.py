# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""The main job: the paper's ImageNet -> COCO / ADE20K workflow in miniature,
on embedded data, on a CPU, in minutes.

    python tools/train_tiny.py                    # classifier -> Mask R-CNN, UperNet
    python tools/train_tiny.py --compare-scratch  # + the same from random weights
    python tools/train_tiny.py --arch s           # the paper's STViT-S (slower)
    python tools/train_tiny.py --resume           # continue a killed chain
    python tools/train_tiny.py --task detection   # one stage alone
    python tools/train_tiny.py --detector dino --segmentor mask2former

mmpretrain trains the STViT classifier, the converter turns its checkpoint
into the mm format, and mmdet / mmseg fine-tune from it through the
backbone's Pretrained init_cfg; each with the real config and mmengine's
Runner (see stvit_mm/main_job.py). Writes work_dirs/tiny/summary.json,
chain.png (losses and metrics) and super_tokens.png.
"""
import argparse
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args(argv=None):
    from mmengine.config import DictAction

    from stvit_mm.main_job import DETECTORS, SEGMENTORS, STAGES, TASKS
    parser = argparse.ArgumentParser(
        description='Pretrain an STViT classifier on tiny data, fine-tune '
        'Mask R-CNN and UperNet from it, evaluate all three')
    parser.add_argument('--task', choices=TASKS,
                        help='run this stage alone (default: the chain)')
    parser.add_argument('--compare-scratch', action='store_true',
                        help='also fine-tune detection and segmentation from '
                        'random weights')
    parser.add_argument('--scratch', action='store_true',
                        help='with --task detection/segmentation: start from '
                        'random weights instead of the hand-over')
    parser.add_argument('--detector', choices=DETECTORS, default='mask_rcnn',
                        help='the detection head fine-tuned (default: the '
                        "paper's Mask R-CNN)")
    parser.add_argument('--segmentor', choices=SEGMENTORS, default='upernet',
                        help='the segmentation head fine-tuned (default: '
                        "the paper's UperNet)")
    parser.add_argument('--arch', default='tiny',
                        help="'tiny' (default: dims 32-256, depths 1,1,2,1) "
                        "or an STViT arch name: s, b, l")
    parser.add_argument('--iters', type=int, nargs='+', metavar='N',
                        help='iterations: one number with --task, else three '
                        '(classification, detection, segmentation); default '
                        + ', '.join(str(STAGES[t].iters) for t in TASKS))
    parser.add_argument('--work-dir', default='work_dirs/tiny')
    parser.add_argument('--data-root', default=osp.join(ROOT, 'data', 'tiny'))
    parser.add_argument('--resume', action='store_true',
                        help='continue where a killed run stopped; finished '
                        'stages are not trained again')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='with --task: further config overrides, '
                        'key=value')
    parser.add_argument('--no-pictures', action='store_true',
                        help='skip chain.png and super_tokens.png')
    args = parser.parse_args(argv)
    expected = 1 if args.task else 3
    if args.iters and len(args.iters) != expected:
        parser.error(f'--iters takes {expected} number(s) here, got '
                     f'{len(args.iters)}')
    if args.cfg_options and not args.task:
        parser.error('--cfg-options goes with --task (the stages\' configs '
                     'differ)')
    if args.scratch and not args.task:
        parser.error('--scratch goes with --task; the chain has '
                     '--compare-scratch')
    return args


def main(argv=None):
    args = parse_args(argv)
    from stvit_mm.main_job import TASKS, TINY_ARCH, StageError, run_chain, \
        run_single
    arch = TINY_ARCH if args.arch == 'tiny' else args.arch
    try:
        if args.task:
            return run_single(args.task, args.work_dir, args.data_root, arch,
                              iters=args.iters[0] if args.iters else None,
                              scratch=args.scratch, resume=args.resume,
                              cfg_options=args.cfg_options,
                              detector=args.detector,
                              segmentor=args.segmentor)
        iters = dict(zip(TASKS, args.iters)) if args.iters else None
        return run_chain(args.work_dir, args.data_root, arch, iters,
                         compare_scratch=args.compare_scratch,
                         resume=args.resume,
                         pictures=not args.no_pictures,
                         detector=args.detector, segmentor=args.segmentor)
    except StageError as error:
        sys.exit(f'error: {error}')


if __name__ == '__main__':
    os.chdir(ROOT)
    main()
