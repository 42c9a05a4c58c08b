# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Write small, learnable datasets in the real formats the configs read.

:func:`make_all` (CLI: ``python tools/dataset_converters/make_tiny_datasets.py
data/tiny``) creates, under OUT:
  coco/      train2017/, val2017/, annotations/instances_{train,val}2017.json
             (COCO instances, polygon masks; the mmdet configs' layout)
  ade/ADEChallengeData2016/  images/{training,validation}/*.jpg and
             annotations/{training,validation}/*.png (ADE20K layout, labels
             1..150 with 0 = "other", as mmseg's reduce_zero_label expects)
  imagenet/  train/, val/, meta/{train,val}.txt (mmpretrain's ImageNet
             annotation-file layout)
so every config runs on them by changing only its data root.

The objects are flat-coloured rectangles, ellipses and triangles on a noisy
background, one colour family per class, so a network learns them in a few
hundred iterations. Category names are COCO / ADE20K / ImageNet class names
(the toolboxes' dataset classes keep only known names).
"""
import json
import os
import os.path as osp

import cv2
import numpy as np

SHAPES = ('rectangle', 'ellipse', 'triangle')
# COCO category ids of the 80 classes, in mmdet's CocoDataset class order:
# the json lists all 80 so that label i maps to COCO_IDS[i] in CocoMetric.
COCO_IDS = (list(range(1, 12)) + list(range(13, 26)) + [27, 28] +
            list(range(31, 45)) + list(range(46, 66)) + [67, 70] +
            list(range(72, 83)) + list(range(84, 91)))
COCO_SHAPE_NAMES = ('tv', 'sports ball', 'kite')  # one COCO class per shape
ADE_LABELS = (2, 3, 4)    # ADE20K 'building', 'sky', 'floor' (1 = 'wall')
BASE_COLOURS = ((220, 60, 40), (40, 200, 60), (50, 80, 230))  # BGR


def _background(rng, size):
    base = rng.integers(90, 150, size=3)
    noise = rng.normal(0, 12, size=(size, size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _polygon(rng, shape, cx, cy, r):
    if shape == 'rectangle':
        w, h = r * rng.uniform(0.7, 1.0), r * rng.uniform(0.7, 1.0)
        pts = [(cx - w, cy - h), (cx + w, cy - h), (cx + w, cy + h),
               (cx - w, cy + h)]
    elif shape == 'ellipse':
        a, b = r * rng.uniform(0.7, 1.0), r * rng.uniform(0.7, 1.0)
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        pts = list(zip(cx + a * np.cos(t), cy + b * np.sin(t)))
    else:
        t = rng.uniform(0, 2 * np.pi) + np.array([0, 2, 4]) * np.pi / 3
        pts = list(zip(cx + r * np.cos(t), cy + r * np.sin(t)))
    return np.round(np.array(pts, dtype=np.float64), 1)


def _colour(rng, label):
    jitter = rng.integers(-25, 26, size=3)
    return tuple(int(v) for v in np.clip(np.array(BASE_COLOURS[label]) +
                                         jitter, 0, 255))


def make_scene(rng, size, max_objects=3):
    """One image with 1..max_objects non-overlapping shapes.

    Returns:
        tuple: image (size, size, 3) uint8 BGR, and a list of
        (label, polygon (K, 2), mask (size, size) bool).
    """
    image = _background(rng, size)
    objects, occupied = [], np.zeros((size, size), bool)
    for _ in range(rng.integers(1, max_objects + 1)):
        for _attempt in range(20):
            label = int(rng.integers(len(SHAPES)))
            r = rng.uniform(0.12, 0.25) * size
            cx, cy = rng.uniform(r + 2, size - r - 2, size=2)
            poly = _polygon(rng, SHAPES[label], cx, cy, r)
            mask = np.zeros((size, size), np.uint8)
            cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
            mask = mask.astype(bool)
            if mask.sum() > 30 and not (mask & occupied).any():
                break
        else:
            continue
        occupied |= mask
        image[mask] = _colour(rng, label)
        objects.append((label, poly, mask))
    return image, objects


def write_coco(out, rng, num_train, num_val, size):
    from mmdet.datasets import CocoDataset
    names = CocoDataset.METAINFO['classes']
    assert len(names) == len(COCO_IDS) == 80
    shape_ids = [COCO_IDS[names.index(n)] for n in COCO_SHAPE_NAMES]
    for split, count in (('train2017', num_train), ('val2017', num_val)):
        os.makedirs(osp.join(out, split), exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            image, objects = make_scene(rng, size)
            name = f'{i:06d}.jpg'
            cv2.imwrite(osp.join(out, split, name), image,
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            images.append(dict(id=i + 1, file_name=name, width=size,
                               height=size))
            for label, poly, mask in objects:
                x0, y0 = poly.min(0)
                x1, y1 = poly.max(0)
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=i + 1,
                    category_id=shape_ids[label],
                    segmentation=[poly.reshape(-1).tolist()],
                    area=float(mask.sum()),
                    bbox=[float(x0), float(y0), float(x1 - x0),
                          float(y1 - y0)],
                    iscrowd=0))
        categories = [dict(id=cid, name=name, supercategory='none')
                      for cid, name in zip(COCO_IDS, names)]
        os.makedirs(osp.join(out, 'annotations'), exist_ok=True)
        with open(osp.join(out, 'annotations', f'instances_{split}.json'),
                  'w') as f:
            json.dump(dict(images=images, annotations=annotations,
                           categories=categories), f)


def write_ade(out, rng, num_train, num_val, size):
    for split, count in (('training', num_train), ('validation', num_val)):
        img_dir = osp.join(out, 'images', split)
        ann_dir = osp.join(out, 'annotations', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for i in range(count):
            image, objects = make_scene(rng, size)
            seg = np.ones((size, size), np.uint8)  # 1: 'wall' background
            for label, _, mask in objects:
                seg[mask] = ADE_LABELS[label]
            name = f'ADE_{split}_{i:08d}'
            cv2.imwrite(osp.join(img_dir, name + '.jpg'), image,
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(osp.join(ann_dir, name + '.png'), seg)


def write_imagenet(out, rng, num_train, num_val, size):
    os.makedirs(osp.join(out, 'meta'), exist_ok=True)
    for split, count in (('train', num_train), ('val', num_val)):
        lines = []
        for i in range(count):
            label = i % len(SHAPES)
            image = _background(rng, size)
            r = rng.uniform(0.25, 0.4) * size
            cx, cy = rng.uniform(r + 2, size - r - 2, size=2)
            poly = _polygon(rng, SHAPES[label], cx, cy, r)
            cv2.fillPoly(image, [np.round(poly).astype(np.int32)],
                         _colour(rng, label))
            rel = osp.join(f'class_{label}', f'{i:06d}.jpg')
            os.makedirs(osp.join(out, split, f'class_{label}'), exist_ok=True)
            cv2.imwrite(osp.join(out, split, rel), image)
            lines.append(f'{rel} {label}')
        with open(osp.join(out, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')


def make_all(out, seed=0, coco=(64, 16), ade=(64, 16), imagenet=(96, 24),
             size=128):
    rng = np.random.default_rng(seed)
    write_coco(osp.join(out, 'coco'), rng, *coco, size=size)
    write_ade(osp.join(out, 'ade', 'ADEChallengeData2016'), rng, *ade,
              size=size)
    write_imagenet(osp.join(out, 'imagenet'), rng, *imagenet, size=96)
    return out
