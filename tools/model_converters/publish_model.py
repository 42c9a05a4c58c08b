# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Strip a training checkpoint down to its weights and name it by content.

    python tools/model_converters/publish_model.py \
        work_dirs/mask_rcnn_stvit_s/epoch_12.pth mask_rcnn_stvit_s_coco.pth
    # -> mask_rcnn_stvit_s_coco-1a2b3c4d.pth

The input is read with torch's weights-only unpickler (importing stvit_mm
allow-lists exactly what mmengine checkpoints hold). The output keeps
``state_dict`` (tensors on CPU; with an EMA hook it already holds the EMA
weights) and, with --keep-meta, ``meta``; the optimizer, schedulers, message
hub, EMA copy and any other training state are dropped. The file is then
renamed to ``<stem>-<first 8 hex digits of its sha256>.pth`` and the final
path printed.
"""
import argparse
import hashlib
import os
import os.path as osp
from collections import OrderedDict

import torch

import stvit_mm  # noqa: F401  (registers the weights-only allow-list)
from stvit_mm.utils.checkpoint import load_checkpoint_file, pick_state_dict


def parse_args():
    parser = argparse.ArgumentParser(
        description='Publish a checkpoint: weights only, sha256-named')
    parser.add_argument('in_file', help='training checkpoint')
    parser.add_argument('out_file', help='output path; the hash is added to '
                        'its name')
    parser.add_argument('--keep-meta', action='store_true',
                        help='keep the checkpoint\'s "meta" (epoch, config '
                        'text, dataset_meta, ...)')
    return parser.parse_args()


def publish(in_file: str, out_file: str, keep_meta: bool = False) -> str:
    """Write the stripped checkpoint and return its final, hashed path."""
    if not osp.isfile(in_file):
        raise FileNotFoundError(f'checkpoint not found: {in_file}')
    checkpoint = load_checkpoint_file(in_file)
    # mmengine 'state_dict', official 'model' / 'model_ema', or bare weights
    weights = pick_state_dict(checkpoint, source=in_file)
    published = {'state_dict': OrderedDict(
        (key, value.detach().cpu()) for key, value in weights.items())}
    if keep_meta:
        if 'meta' not in checkpoint:
            raise KeyError(f'--keep-meta: {in_file} has no "meta"; its keys '
                           f'are {sorted(checkpoint)}')
        published['meta'] = checkpoint['meta']
    dropped = sorted(set(checkpoint) - set(published))

    stem = out_file[:-4] if out_file.endswith('.pth') else out_file
    out_dir = osp.dirname(osp.abspath(out_file))
    os.makedirs(out_dir, exist_ok=True)
    torch.save(published, out_file)
    digest = hashlib.sha256()
    with open(out_file, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    final = f'{stem}-{digest.hexdigest()[:8]}.pth'
    os.replace(out_file, final)
    print(f'kept {len(published["state_dict"])} tensors'
          f'{" and meta" if keep_meta else ""}; dropped {dropped}')
    return final


def main():
    args = parse_args()
    print(publish(args.in_file, args.out_file, args.keep_meta))


if __name__ == '__main__':
    main()
