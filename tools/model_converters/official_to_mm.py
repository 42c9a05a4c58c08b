# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Convert an official STViT checkpoint (or an mmengine checkpoint of a
trained STViT model) into the mm format shared by mmpretrain, mmdet and mmseg.

    python tools/model_converters/official_to_mm.py stvit-s.pth stvit-s_mm.pth

SRC may hold 'model', 'model_ema', 'state_dict' or a bare state dict, with or
without 'module.' prefixes; it is read with torch's weights-only unpickler.
Official keys are renamed; an mmengine checkpoint (e.g. a classifier trained
with mmpretrain) keeps its backbone.*, neck.* and head.* tensors and loses
the optimizer state and the rest of the runner's bookkeeping.
DST is {'state_dict': {'backbone.*', 'neck.*', 'head.*'}} of tensors only:
``load_from=DST`` for a classifier, or
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``
for the backbone of a detector or segmentor.
"""
import argparse
import pickle
import sys

import stvit_mm  # noqa: F401  (allow-lists argparse.Namespace for loading)
from stvit_mm.utils import convert_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official STViT checkpoint, or an '
                        'mmengine checkpoint of an STViT model')
    parser.add_argument('dst', help='output path')
    parser.add_argument('--ema', action='store_true',
                        help="convert the 'model_ema' weights instead")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        state_dict = convert_checkpoint(args.src, args.dst, args.ema)
    except (OSError, ValueError, KeyError, pickle.UnpicklingError) as error:
        # a bad input file: the message names it and the problem
        message = error.args[0] if isinstance(error, KeyError) else error
        sys.exit(f'error: {message}')
    parts = {}
    for key in state_dict:
        parts[key.split('.')[0]] = parts.get(key.split('.')[0], 0) + 1
    summary = ', '.join(f'{n} {part}.*' for part, n in parts.items())
    print(f'Saved {len(state_dict)} tensors ({summary}) to {args.dst}')


if __name__ == '__main__':
    main()
