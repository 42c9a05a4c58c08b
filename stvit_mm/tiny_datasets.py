# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Write small, learnable datasets in the real formats the configs read.

:func:`make_all` (CLI: ``python tools/dataset_converters/make_tiny_datasets.py
data/tiny``) creates, under OUT:
  imagenet/  train/, val/, meta/{train,val}.txt (mmpretrain's ImageNet
             annotation-file layout): ONE object per image
  coco/      train2017/, val2017/, annotations/instances_{train,val}2017.json
             (COCO instances with polygon masks): several objects per image
  ade/ADEChallengeData2016/  images/{training,validation}/*.jpg and
             annotations/{training,validation}/*.png (ADE20K layout, labels
             1..150, 1 = 'wall' for the background; 0 is ignored by mmseg)
so every config runs on them by changing only its data root.

All three draw on ONE set of object categories (:data:`CATEGORIES`), so a
classifier trained on the ImageNet-layout set has learnt exactly the objects
the detector and the segmentor must find: the paper's ImageNet -> COCO / ADE20K
transfer in miniature. Each category is a shape with its own colour family
and texture; scenes have a cluttered, desaturated background, and detection /
segmentation scenes hold 2-4 objects at several scales that may overlap
(every object keeps at least half of itself visible; masks and boxes are
those of the visible part).

Training and validation images come from different random streams
(``seed`` and ``seed + 1``), and a validation image identical to a training
image is never written. The same arguments write byte-identical files.
"""
import hashlib
import json
import os
import os.path as osp
from typing import List, NamedTuple, Tuple

import cv2
import numpy as np


class Category(NamedTuple):
    name: str
    shape: str
    colour: Tuple[int, int, int]  # BGR, jittered per object
    texture: str
    coco_name: str   # a COCO class (mmdet keeps only known names)
    ade_name: str    # an ADE20K class


CATEGORIES = (
    Category('disc', 'ellipse', (50, 50, 215), 'solid', 'sports ball',
             'ball'),
    Category('tile', 'rectangle', (60, 190, 60), 'stripes', 'tv',
             'screen door'),
    Category('pennant', 'triangle', (215, 110, 40), 'checker', 'kite',
             'flag'),
    Category('star', 'star', (40, 205, 225), 'dots', 'frisbee',
             'signboard'),
)
BACKGROUND_ADE_NAME = 'wall'


def _background(rng, size: int) -> np.ndarray:
    """Cluttered, desaturated background: a soft gradient, grey strokes and
    blobs, and pixel noise. (size, size, 3) uint8 BGR."""
    base = rng.uniform(90, 160, size=3)
    tilt = rng.uniform(-30, 30, size=(2, 3))
    ramp = np.linspace(-0.5, 0.5, size)
    image = (base + ramp[:, None, None] * tilt[0] +
             ramp[None, :, None] * tilt[1])
    for _ in range(rng.integers(4, 9)):
        grey = float(rng.uniform(60, 200))
        tint = rng.uniform(-12, 12, size=3)  # barely coloured: no category
        colour = tuple(float(v) for v in np.clip(grey + tint, 0, 255))
        if rng.random() < 0.5:
            p0, p1 = rng.integers(0, size, size=(2, 2))
            cv2.line(image, tuple(int(v) for v in p0),
                     tuple(int(v) for v in p1), colour,
                     int(rng.integers(1, 4)))
        else:
            centre = tuple(int(v) for v in rng.integers(0, size, size=2))
            axes = tuple(int(v) for v in rng.integers(2, size // 6, size=2))
            cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0,
                        360, colour, -1)
    image += rng.normal(0, 8, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _polygon(rng, shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    """Vertices (K, 2) of a randomly rotated shape of radius about r."""
    angle = rng.uniform(0, 2 * np.pi)
    if shape == 'ellipse':
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        radii = np.stack([r * rng.uniform(0.8, 1.0) * np.cos(t),
                          r * rng.uniform(0.8, 1.0) * np.sin(t)], 1)
    elif shape == 'rectangle':
        w, h = r * rng.uniform(0.65, 0.85), r * rng.uniform(0.65, 0.85)
        radii = np.array([(-w, -h), (w, -h), (w, h), (-w, h)])
    elif shape == 'triangle':
        t = np.array([0, 2, 4]) * np.pi / 3
        radii = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    elif shape == 'star':
        t = np.arange(10) * np.pi / 5
        rr = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        radii = np.stack([rr * np.cos(t), rr * np.sin(t)], 1)
    else:
        raise ValueError(f'unknown shape {shape!r}')
    rotation = np.array([[np.cos(angle), -np.sin(angle)],
                         [np.sin(angle), np.cos(angle)]])
    return radii @ rotation.T + np.array([cx, cy])


def _paint(rng, image: np.ndarray, mask: np.ndarray,
           category: Category) -> None:
    """Fill ``mask`` of ``image`` with the category's colour and texture."""
    size = image.shape[0]
    colour = np.clip(np.array(category.colour) +
                     rng.integers(-25, 26, size=3), 0, 255).astype(np.float64)
    yy, xx = np.mgrid[:size, :size]
    period = int(rng.integers(4, 7))
    if category.texture == 'stripes':
        dark = ((xx + yy) // period) % 2 == 0
    elif category.texture == 'checker':
        dark = ((xx // period) + (yy // period)) % 2 == 0
    elif category.texture == 'dots':
        dark = ((xx % period) < 2) & ((yy % period) < 2)
    else:  # solid, with a soft highlight
        dark = np.zeros((size, size), bool)
    fill = np.broadcast_to(colour, image.shape).copy()
    fill[dark] *= 0.55
    fill += rng.normal(0, 6, size=image.shape)
    image[mask] = np.clip(fill[mask], 0, 255).astype(np.uint8)


def make_scene(rng, size: int, num_objects: Tuple[int, int] = (2, 4),
               radius: Tuple[float, float] = (0.09, 0.28),
               min_visible: float = 0.5):
    """One image with objects of :data:`CATEGORIES` that may overlap.

    Args:
        size: image side in pixels.
        num_objects: (min, max) number of objects.
        radius: (min, max) object radius as a fraction of ``size``.
        min_visible: fraction of every object that stays visible.

    Returns:
        tuple: image (size, size, 3) uint8 BGR and a list of
        (category index, visible mask (size, size) bool), bottom to top.
    """
    image = _background(rng, size)
    masks: List[np.ndarray] = []
    labels: List[int] = []
    wanted = int(rng.integers(num_objects[0], num_objects[1] + 1))
    for _ in range(wanted):
        for _attempt in range(30):
            label = int(rng.integers(len(CATEGORIES)))
            r = rng.uniform(*radius) * size
            cx, cy = rng.uniform(r * 0.6, size - r * 0.6, size=2)
            poly = _polygon(rng, CATEGORIES[label].shape, cx, cy, r)
            mask = np.zeros((size, size), np.uint8)
            cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
            mask = mask.astype(bool)
            if mask.sum() < 40:
                continue
            # the new object goes on top: older ones must stay visible enough
            if all((old & ~mask).sum() >= min_visible * old.sum()
                   and (old & ~mask).sum() >= 40 for old in masks):
                break
        else:
            continue
        masks = [old & ~mask for old in masks] + [mask]
        labels.append(label)
        _paint(rng, image, mask, CATEGORIES[label])
    return image, list(zip(labels, masks))


def make_single_object(rng, size: int) -> Tuple[np.ndarray, int]:
    """A classification image: one object over clutter. Returns the image
    (size, size, 3) uint8 BGR and its category index."""
    image, objects = make_scene(rng, size, num_objects=(1, 1),
                                radius=(0.2, 0.4))
    return image, objects[0][0]


def _digest(image: np.ndarray) -> str:
    return hashlib.sha1(image.tobytes()).hexdigest()


def _splits(seed: int, counts: Tuple[int, int], draw):
    """Yield (split index, item index, drawn item) for training then
    validation, from separate random streams; validation items whose image
    equals a training image are skipped (drawn again)."""
    seen = set()
    for split, count in enumerate(counts):
        rng = np.random.default_rng([seed, split])
        written = 0
        while written < count:
            item = draw(rng)
            digest = _digest(item[0])
            if split == 1 and digest in seen:
                continue
            seen.add(digest)
            yield split, written, item
            written += 1


def _polygons(mask: np.ndarray) -> List[List[float]]:
    """COCO polygons (flat x, y lists) of a visible mask's outer contours."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours
            if len(c) >= 3]


def write_coco(out: str, seed: int, counts: Tuple[int, int], size: int):
    from mmdet.datasets import CocoDataset
    names = CocoDataset.METAINFO['classes']
    # The json lists all 80 COCO categories with their real ids, so that
    # label i of mmdet's head is names[i] and CocoMetric maps it back.
    coco_ids = (list(range(1, 12)) + list(range(13, 26)) + [27, 28] +
                list(range(31, 45)) + list(range(46, 66)) + [67, 70] +
                list(range(72, 83)) + list(range(84, 91)))
    category_ids = [coco_ids[names.index(c.coco_name)] for c in CATEGORIES]
    splits = ('train2017', 'val2017')
    records = [dict(images=[], annotations=[]) for _ in splits]
    for split, i, (image, objects) in _splits(
            seed, counts, lambda rng: make_scene(rng, size)):
        name = f'{i:06d}.jpg'
        os.makedirs(osp.join(out, splits[split]), exist_ok=True)
        cv2.imwrite(osp.join(out, splits[split], name), image,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        record = records[split]
        record['images'].append(
            dict(id=i + 1, file_name=name, width=size, height=size))
        for label, mask in objects:
            polygons = _polygons(mask)
            if not polygons:
                continue
            ys, xs = np.nonzero(mask)
            x0, y0 = int(xs.min()), int(ys.min())
            record['annotations'].append(dict(
                id=len(record['annotations']) + 1, image_id=i + 1,
                category_id=category_ids[label], segmentation=polygons,
                area=float(mask.sum()),
                bbox=[float(x0), float(y0), float(xs.max() + 1 - x0),
                      float(ys.max() + 1 - y0)],
                iscrowd=0))
    categories = [dict(id=cid, name=name, supercategory='none')
                  for cid, name in zip(coco_ids, names)]
    os.makedirs(osp.join(out, 'annotations'), exist_ok=True)
    for split, record in zip(splits, records):
        with open(osp.join(out, 'annotations', f'instances_{split}.json'),
                  'w') as f:
            json.dump(dict(images=record['images'],
                           annotations=record['annotations'],
                           categories=categories), f)


def ade_labels() -> Tuple[int, List[int]]:
    """ADE20K annotation values (1-based) of the background and of each
    category, looked up by name in mmseg's class list."""
    from mmseg.datasets import ADE20KDataset
    names = list(ADE20KDataset.METAINFO['classes'])
    return (names.index(BACKGROUND_ADE_NAME) + 1,
            [names.index(c.ade_name) + 1 for c in CATEGORIES])


def write_ade(out: str, seed: int, counts: Tuple[int, int], size: int):
    background, values = ade_labels()
    splits = ('training', 'validation')
    for split, i, (image, objects) in _splits(
            seed, counts, lambda rng: make_scene(rng, size)):
        img_dir = osp.join(out, 'images', splits[split])
        ann_dir = osp.join(out, 'annotations', splits[split])
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        seg = np.full((size, size), background, np.uint8)
        for label, mask in objects:
            seg[mask] = values[label]
        name = f'ADE_{splits[split]}_{i:08d}'
        cv2.imwrite(osp.join(img_dir, name + '.jpg'), image,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(osp.join(ann_dir, name + '.png'), seg)


def write_imagenet(out: str, seed: int, counts: Tuple[int, int], size: int):
    """ImageNet layout; class index i is category i (mmpretrain reads the
    integer labels of meta/*.txt)."""
    splits = ('train', 'val')
    lines: List[List[str]] = [[], []]
    for split, i, (image, label) in _splits(
            seed, counts, lambda rng: make_single_object(rng, size)):
        rel = osp.join(CATEGORIES[label].name, f'{i:06d}.jpg')
        os.makedirs(osp.join(out, splits[split], CATEGORIES[label].name),
                    exist_ok=True)
        cv2.imwrite(osp.join(out, splits[split], rel), image,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        lines[split].append(f'{rel} {label}')
    os.makedirs(osp.join(out, 'meta'), exist_ok=True)
    for split, split_lines in zip(splits, lines):
        with open(osp.join(out, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(split_lines) + '\n')


# Bump when the written data changes, so that an old folder is rewritten.
FORMAT_VERSION = 2
MARKER = 'tiny_datasets.json'
SUBSETS = ('imagenet', 'coco', 'ade')


def is_complete(out: str) -> bool:
    """Whether ``out`` holds a finished set of this writer's format."""
    try:
        with open(osp.join(out, MARKER)) as f:
            return json.load(f).get('format') == FORMAT_VERSION
    except (OSError, ValueError):
        return False


def make_all(out: str, seed: int = 0, coco=(240, 60), ade=(240, 60),
             imagenet=(800, 200), size: int = 128,
             imagenet_size: int = 64) -> str:
    """Write the three datasets under ``out`` and return ``out``.

    Earlier contents of ``out/{imagenet,coco,ade}`` are removed first (a
    stale image would otherwise join the ADE20K split). The marker file,
    written last, records the format and the arguments.

    Args:
        coco, ade, imagenet: (training, validation) image counts.
        size: side of the detection and segmentation images.
        imagenet_size: side of the classification images.
    """
    import shutil
    for subset in SUBSETS + (MARKER, ):
        path = osp.join(out, subset)
        if osp.isdir(path):
            shutil.rmtree(path)
        elif osp.isfile(path):
            os.remove(path)
    write_imagenet(osp.join(out, 'imagenet'), seed, imagenet,
                   imagenet_size)
    write_coco(osp.join(out, 'coco'), seed + 10, coco, size)
    write_ade(osp.join(out, 'ade', 'ADEChallengeData2016'), seed + 20, ade,
              size)
    with open(osp.join(out, MARKER), 'w') as f:
        json.dump(dict(format=FORMAT_VERSION, seed=seed, coco=list(coco),
                       ade=list(ade), imagenet=list(imagenet), size=size,
                       imagenet_size=imagenet_size,
                       categories=[c.name for c in CATEGORIES]), f)
    return out
