# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Params and FLOPs of any config of this repository (classifier, detector or
segmentor), counted as in the paper (fvcore / mmengine.analysis: one
multiply-add = one flop), Super Token Attention's matmuls included.

    python tools/analysis_tools/get_flops.py \
        configs/classification/stvit_s_in1k.py
    python tools/analysis_tools/get_flops.py \
        configs/detection/mask_rcnn_stvit_s.py --shape 800 1280

No checkpoint is needed: the backbone's init_cfg is cleared. The counting
lives in stvit_mm.analysis.flops; see docs/flops.md for measured figures.
"""
import argparse

from mmengine.config import DictAction

from stvit_mm.analysis.flops import PROTOCOLS, format_report, get_flops


def parse_args():
    parser = argparse.ArgumentParser(
        description='Count params and FLOPs of a config\'s model')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--shape', type=int, nargs=2, metavar=('H', 'W'),
        help='input height and width; defaults: classifier = test crop '
        'size, detector 800 1280, segmentor 512 2048 (the paper\'s sizes)')
    parser.add_argument(
        '--protocol', choices=PROTOCOLS, default='paper',
        help='two-stage detectors only: "paper" = 1000 fixed proposals and '
        '100 mask RoIs per mask head (mmdet 2.x dummy forward, the '
        'protocol of the paper\'s numbers); "tensor" = mmdet 3 '
        'mode="tensor" with NMS proposals of the random weights')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value (mmengine DictAction)')
    return parser.parse_args()


def main():
    args = parse_args()
    report = get_flops(args.config, shape=tuple(args.shape) if args.shape
                       else None, cfg_options=args.cfg_options,
                       protocol=args.protocol)
    print(format_report(report))


if __name__ == '__main__':
    main()
