# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""One image through any config of this repository, by the toolbox's own
inferencer (chosen by the config's ``default_scope``): the predictions as
printable lines and a picture of them.

- mmdet: ``DetInferencer`` -> boxes and masks above a score threshold.
- mmseg: ``MMSegInferencer`` -> the segmentation map over the image.
- mmpretrain: ``ImageClassificationInferencer`` -> the top-k classes.

Used by tools/inference.py. Several toolboxes' inferencers in one process
leak their default scope into each other, so each run sets its own scope
for its whole duration.
"""
import os.path as osp
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
from mmengine.registry import DefaultScope

from stvit_mm.apis.launch import load_config


@dataclass
class InferenceResult:
    """What :func:`inference` found.

    Attributes:
        task: 'detection', 'segmentation' or 'classification'.
        lines: the predictions, one printable line each (a header first).
        visualization: (H, W, 3) uint8 RGB picture of the predictions.
    """
    task: str
    lines: List[str]
    visualization: np.ndarray


def _class_name(classes, index: int) -> str:
    if classes is not None and 0 <= index < len(classes):
        return str(classes[index])
    return f'class {index}'


def _detect(image, config, checkpoint, device, score_thr, max_lines):
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(model=config, weights=checkpoint,
                               device=device, scope='mmdet')
    out = inferencer(image, return_vis=True, no_save_vis=True,
                     pred_score_thr=score_thr, return_datasamples=True)
    instances = out['predictions'][0].pred_instances
    classes = inferencer.model.dataset_meta.get('classes')
    keep = instances.scores >= score_thr
    order = torch.argsort(instances.scores[keep], descending=True)
    scores, labels = instances.scores[keep][order], \
        instances.labels[keep][order]
    boxes = instances.bboxes[keep][order]
    masks = instances.masks[keep][order] if 'masks' in instances else None
    lines = [f'{len(scores)} detections with score >= {score_thr} '
             f'(of {len(instances.scores)})']
    for i in range(min(len(scores), max_lines)):
        box = ', '.join(f'{v:.0f}' for v in boxes[i].tolist())
        mask = '' if masks is None else \
            f'  mask {int(masks[i].sum())} px'
        lines.append(f'  {_class_name(classes, int(labels[i])):<20} '
                     f'{float(scores[i]):.3f}  box [{box}]{mask}')
    if len(scores) > max_lines:
        lines.append(f'  ... {len(scores) - max_lines} more')
    return lines, out['visualization'][0]


def _segment(image, config, checkpoint, device, max_lines):
    from mmseg.apis import MMSegInferencer
    inferencer = MMSegInferencer(model=config, weights=checkpoint,
                                 device=device, scope='mmseg')
    # one image: predictions is its (H, W) class map, visualization its
    # picture (datasamples would come without the picture)
    out = inferencer(image, return_vis=True)
    seg = torch.from_numpy(np.asarray(out['predictions']))
    classes = inferencer.model.dataset_meta.get('classes')
    counts = torch.bincount(seg.flatten().long())
    present = torch.nonzero(counts).flatten().tolist()
    present.sort(key=lambda c: -int(counts[c]))
    total = int(seg.numel())
    lines = [f'{len(present)} classes in the segmentation map '
             f'({seg.shape[0]}x{seg.shape[1]} pixels)']
    for c in present[:max_lines]:
        lines.append(f'  {_class_name(classes, c):<20} '
                     f'{int(counts[c]) / total:7.2%}')
    if len(present) > max_lines:
        lines.append(f'  ... {len(present) - max_lines} more')
    return lines, out['visualization']


def _classify(image, config, checkpoint, device, topk):
    import mmcv
    from mmpretrain.apis import ImageClassificationInferencer
    from mmpretrain.visualization import UniversalVisualizer
    # pretrained=False, not None: mmpretrain reads True as "the config's"
    inferencer = ImageClassificationInferencer(
        config, pretrained=checkpoint or False, device=device)
    sample = inferencer(image, return_datasamples=True)[0]
    scores = sample.pred_score.detach().cpu()
    top = torch.topk(scores, min(topk, scores.numel()))
    classes = inferencer.classes
    lines = [f'top-{len(top.indices)} of {scores.numel()} classes']
    for rank, (score, index) in enumerate(zip(top.values, top.indices), 1):
        lines.append(f'  {rank}. {_class_name(classes, int(index)):<20} '
                     f'{float(score):.4f}')
    # the toolbox's drawing of every label in pred_label: the top k
    sample.set_pred_label(top.indices)
    rgb = mmcv.imread(image)[..., ::-1]
    short = min(rgb.shape[:2])
    visualizer = UniversalVisualizer()
    vis = visualizer.visualize_cls(
        rgb, sample, classes=classes, draw_gt=False,
        resize=384 if short < 384 else None)  # small images: legible text
    return lines, vis


def inference(image: str, config: str, checkpoint: Optional[str] = None,
              device: str = 'cpu', score_thr: float = 0.3, topk: int = 5,
              max_lines: int = 20) -> InferenceResult:
    """Run ``image`` through ``config`` (weights from ``checkpoint``, or
    random when None) with the config's toolbox's inferencer.

    Args:
        score_thr: detections below it are neither printed nor drawn.
        topk: classes printed and drawn for classification.
        max_lines: most detections / segmentation classes printed.

    Raises:
        FileNotFoundError: image, config or checkpoint missing.
        ValueError: unreadable image, a checkpoint without STViT weights, or
            a config whose default_scope is not mmdet, mmseg or mmpretrain.
    """
    import mmcv
    from stvit_mm.utils import check_stvit_checkpoint
    if not osp.isfile(image):
        raise FileNotFoundError(f'image not found: {image}')
    if mmcv.imread(image) is None:
        raise ValueError(f'{image} is not an image that OpenCV can read')
    cfg = load_config(config)  # also imports stvit_mm: STViT registered
    if checkpoint is not None:
        check_stvit_checkpoint(checkpoint)
    scope = cfg.default_scope
    with DefaultScope.overwrite_default_scope(scope):
        if scope == 'mmdet':
            task = 'detection'
            lines, vis = _detect(image, config, checkpoint, device,
                                 score_thr, max_lines)
        elif scope == 'mmseg':
            task = 'segmentation'
            lines, vis = _segment(image, config, checkpoint, device,
                                  max_lines)
        else:
            task = 'classification'
            lines, vis = _classify(image, config, checkpoint, device, topk)
    return InferenceResult(task, lines, np.ascontiguousarray(vis))
