# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Write the embedded tiny COCO, ADE20K and ImageNet datasets.

    python tools/dataset_converters/make_tiny_datasets.py data/tiny

One set of object categories across the three (see stvit_mm/tiny_datasets.py
for the layouts and what the images hold); the same arguments write
byte-identical files. tools/train_tiny.py writes them itself when missing.
"""
import argparse

from stvit_mm.tiny_datasets import make_all


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out', nargs='?', default='data/tiny')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--size', type=int, default=128,
                        help='COCO / ADE image side in pixels')
    parser.add_argument('--imagenet-size', type=int, default=64,
                        help='ImageNet-layout image side in pixels')
    args = parser.parse_args(argv)
    make_all(args.out, seed=args.seed, size=args.size,
             imagenet_size=args.imagenet_size)
    print(f'Wrote tiny COCO, ADE20K and ImageNet datasets under {args.out}')


if __name__ == '__main__':
    main()
