# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Draw the super tokens of one STViT block over an image (paper, Figure 4).

Each pixel is given the super token it is most strongly associated with
(argmax over its 9 neighbouring super tokens); the regions are coloured and
outlined over the image, at the image's own size.

    python tools/visualize_super_tokens.py demo.jpg \
        --config configs/classification/stvit_s_in1k.py \
        --checkpoint checkpoints/stvit_s_in1k_mm.pth \
        --stage 0 --block 2 --out super_tokens.png

Without --checkpoint the weights are random (the regions then follow colour
and texture only through the first layers). Stages whose super-token size is
1 run global attention and have no super tokens to show.
"""
import argparse
import os.path as osp

import mmcv
from mmengine.config import Config, DictAction

from stvit_mm.analysis.flops import build_model_from_config
from stvit_mm.analysis.super_tokens import (block_association, draw_regions,
                                            preprocess)
from stvit_mm.utils.checkpoint import load_pretrained_backbone


def parse_args():
    parser = argparse.ArgumentParser(
        description='Visualise the super tokens of an STViT block')
    parser.add_argument('image', help='input image file')
    parser.add_argument('--config', required=True, help='config file')
    parser.add_argument('--checkpoint', help='mm-format or official '
                        'checkpoint (random weights if omitted)')
    parser.add_argument('--stage', type=int, default=0)
    parser.add_argument('--block', type=int, default=-1,
                        help='block in the stage; negative counts from the '
                        'end (default: the last block)')
    parser.add_argument('--short-side', type=int, help='resize the image so '
                        'that its shorter side has this length before the '
                        'model (default: the task\'s test size)')
    parser.add_argument('--out', default='super_tokens.png',
                        help='output PNG, the size of the input image')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args()


def main():
    args = parse_args()
    if not osp.isfile(args.image):
        raise SystemExit(f'image not found: {args.image}')
    if not args.out.lower().endswith('.png'):
        raise SystemExit(f'--out must be a .png file, got {args.out}')
    image = mmcv.imread(args.image, flag='color')  # BGR uint8
    if image is None:
        raise SystemExit(f'cannot decode {args.image} as an image')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    model, _ = build_model_from_config(cfg)
    backbone = model.backbone
    if args.checkpoint:
        load_pretrained_backbone(backbone, args.checkpoint,
                                 prefix='backbone.')
    if not 0 <= args.stage < len(backbone.layers):
        raise SystemExit(f'--stage must be in [0, {len(backbone.layers) - 1}]'
                         f', got {args.stage}')
    depth = len(backbone.layers[args.stage].blocks)
    block = args.block + depth if args.block < 0 else args.block
    inputs = preprocess(image, cfg, args.short_side)
    try:
        labels, grid = block_association(backbone.eval(), inputs, args.stage,
                                         block)
    except ValueError as error:
        raise SystemExit(f'error: {error}')
    drawing = draw_regions(image, labels[0].numpy())
    mmcv.imwrite(drawing, args.out)
    print(f'stage {args.stage} block {block}: {grid[0]}x{grid[1]} super '
          f'tokens on a {tuple(inputs.shape[2:])} input; '
          f'{len(labels[0].unique())} regions drawn to {args.out}')


if __name__ == '__main__':
    main()
