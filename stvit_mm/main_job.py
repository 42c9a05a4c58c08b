# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""The main job: the paper's ImageNet -> COCO / ADE20K workflow in miniature.

1. mmpretrain trains the STViT classifier (the classification config) on the
   ImageNet-layout tiny set and evaluates top-1 on held-out images;
2. its last checkpoint goes through the converter into the one mm format;
3. mmdet's Mask R-CNN and mmseg's UperNet (the detection and segmentation
   configs) start their backbone from that file through the same
   ``init_cfg=dict(type='Pretrained', prefix='backbone.')`` that real
   ImageNet weights take, fine-tune on the COCO / ADE20K-layout tiny sets,
   and evaluate with their own metrics;
4. optionally the same two fine-tunings run from random weights;
5. a table, ``summary.json``, a chart of losses and metrics, and the super
   tokens of the trained classifier on a held-out image are written.

Every stage is the toolbox's own Runner on the real config; only what
:func:`stvit_mm.tiny.apply_tiny_overrides` names changes (data, size, run
length, batch, learning rate, backbone size). CLI: ``tools/train_tiny.py``.
"""
import contextlib
import copy
import io
import json
import logging
import numbers
import os
import os.path as osp
import shutil
import time
import uuid
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
from mmengine.config import Config

from stvit_mm.tiny import apply_tiny_overrides
from stvit_mm.tiny_datasets import CATEGORIES, make_all

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TASKS = ('classification', 'detection', 'segmentation')
# every metric the chance guesser scores; a stage reports its Stage.metrics
METRICS = {'classification': ('accuracy/top1', ),
           'detection': ('coco/bbox_mAP', 'coco/segm_mAP'),
           'segmentation': ('mIoU', )}
# A small STViT (same class and code as STViT-S: super token attention in
# every stage, the conv stem, the MLP with its 3x3 conv) that learns the tiny
# sets within the main job's 10 minutes on 2 CPU cores; --arch s runs the
# same chain with the paper's STViT-S and the configs' full-width heads.
TINY_ARCH = dict(embed_dims=[32, 64, 128, 256], depths=[1, 1, 2, 1],
                 num_heads=[1, 2, 4, 8])
# With the small backbone, necks and heads of matching width, per head. The
# configs' 256-channel FPN, 1024-unit box head and 256-channel mask convs, and
# UperNet's 512 channels, are sized for STViT-S on 800-pixel images; on the
# tiny ones they cost 5x (Mask R-CNN: 1.15 s vs 0.22 s per iteration) and
# 5x (UperNet: 4.1 s vs 0.8 s) the time of these, one thread each. DINO and
# Mask2Former keep their layer counts and query mechanics; Mask2Former's
# 256-wide transformers shrink to 64 (8 heads of 8), DINO's feed-forward
# layers to 512, and DINO's 900 queries (top-k over the encoder's tokens,
# 340 of them at 128 px) to 100.
_DETR_WIDTH = 64
TINY_HEADS = {
    'classifier': {},
    'mask_rcnn': {
        'model.neck.out_channels': 64,
        'model.rpn_head.in_channels': 64,
        'model.rpn_head.feat_channels': 64,
        'model.roi_head.bbox_roi_extractor.out_channels': 64,
        'model.roi_head.bbox_head.in_channels': 64,
        'model.roi_head.bbox_head.fc_out_channels': 256,
        'model.roi_head.mask_roi_extractor.out_channels': 64,
        'model.roi_head.mask_head.in_channels': 64,
        'model.roi_head.mask_head.conv_out_channels': 64},
    'upernet': {
        'model.decode_head.channels': 128,
        'model.auxiliary_head.channels': 64},
    'dino': {
        # width stays 256: mmdet's DINO decoder encodes the reference
        # points with a fixed 128 features per coordinate
        'model.num_queries': 100,
        'model.encoder.layer_cfg.ffn_cfg.feedforward_channels': 512,
        'model.decoder.layer_cfg.ffn_cfg.feedforward_channels': 512,
        'model.dn_cfg.group_cfg.num_dn_queries': 20},
    'mask2former': {
        'model.decode_head.feat_channels': _DETR_WIDTH,
        'model.decode_head.out_channels': _DETR_WIDTH,
        'model.decode_head.num_queries': 20,
        # 12544 sampled points per mask are for 512-px crops; a 128-px image
        # has 16384 pixels
        'model.decode_head.train_cfg.num_points': 2048,
        'model.decode_head.pixel_decoder.norm_cfg.num_groups': 8,
        'model.decode_head.pixel_decoder.encoder.layer_cfg.self_attn_cfg.'
        'embed_dims': _DETR_WIDTH,
        'model.decode_head.pixel_decoder.encoder.layer_cfg.ffn_cfg.'
        'embed_dims': _DETR_WIDTH,
        'model.decode_head.pixel_decoder.encoder.layer_cfg.ffn_cfg.'
        'feedforward_channels': 256,
        'model.decode_head.pixel_decoder.positional_encoding.num_feats':
        _DETR_WIDTH // 2,
        'model.decode_head.positional_encoding.num_feats': _DETR_WIDTH // 2,
        'model.decode_head.transformer_decoder.layer_cfg.self_attn_cfg.'
        'embed_dims': _DETR_WIDTH,
        'model.decode_head.transformer_decoder.layer_cfg.cross_attn_cfg.'
        'embed_dims': _DETR_WIDTH,
        'model.decode_head.transformer_decoder.layer_cfg.ffn_cfg.'
        'embed_dims': _DETR_WIDTH,
        'model.decode_head.transformer_decoder.layer_cfg.ffn_cfg.'
        'feedforward_channels': 256,
        # one round over the three feature levels (not three), two
        # deformable encoder layers (not six): each decoder layer adds a
        # Hungarian matching and a point-sampled mask loss
        'model.decode_head.transformer_decoder.num_layers': 3,
        'model.decode_head.pixel_decoder.encoder.num_layers': 2},
}
HANDOVER_NAME = 'stvit_tiny_classifier_mm.pth'


@dataclass
class Stage:
    """One training run of the chain."""
    task: str
    config: str       # relative to the repo root
    iters: int
    lr: float
    size: int         # image side in pixels
    batch_size: int
    head: str         # key of TINY_HEADS and of the chart's titles
    metrics: Tuple[str, ...]  # the toolbox's names of the held-out metrics
    # config keys whose defaults are sized for COCO / ADE20K scenes
    overrides: Optional[dict] = None


STAGES = {
    'classification': Stage('classification',
                            'configs/classification/stvit_s_in1k.py',
                            iters=300, lr=1e-3, size=64, batch_size=32,
                            head='classifier', metrics=('accuracy/top1', )),
    'detection': Stage('detection', 'configs/detection/mask_rcnn_stvit_s.py',
                       iters=400, lr=2e-4, size=128, batch_size=2,
                       head='mask_rcnn',
                       metrics=('coco/bbox_mAP', 'coco/segm_mAP'),
                       # a tiny image holds at most 4 objects, a COCO image
                       # dozens: 32 sampled RoIs per image (not 512) keep the
                       # mask head's cost in proportion, and 20 detections
                       # per image (not 100) its cost at test time
                       overrides={
                           'model.train_cfg.rcnn.sampler.num': 32,
                           'model.test_cfg.rpn.max_per_img': 300,
                           'model.test_cfg.rcnn.max_per_img': 20}),
    'segmentation': Stage('segmentation',
                          'configs/segmentation/upernet_stvit_s.py',
                          iters=300, lr=2e-4, size=128, batch_size=4,
                          head='upernet', metrics=('mIoU', )),
}
# The heads the chain can fine-tune (--detector, --segmentor); the defaults
# are the paper's, STAGES['detection'] and STAGES['segmentation'].
HEAD_STAGES = {
    'mask_rcnn': STAGES['detection'],
    'upernet': STAGES['segmentation'],
    'dino': Stage('detection', 'configs/detection/dino-4scale_stvit_s_12e.py',
                  iters=300, lr=2e-4, size=128, batch_size=2,
                  head='dino', metrics=('coco/bbox_mAP', ),
                  # a tiny image holds at most 4 objects: 20 detections
                  overrides={'model.test_cfg.max_per_img': 20}),
    'mask2former': Stage('segmentation',
                         'configs/segmentation/mask2former_stvit_s_160k.py',
                         iters=200, lr=2e-4, size=128, batch_size=4,
                         head='mask2former', metrics=('mIoU', )),
}
DETECTORS = ('mask_rcnn', 'dino')
SEGMENTORS = ('upernet', 'mask2former')
HEAD_TITLES = {'classifier': 'classification (mmpretrain)',
               'mask_rcnn': 'Mask R-CNN (mmdet)', 'dino': 'DINO (mmdet)',
               'upernet': 'UperNet (mmseg)',
               'mask2former': 'Mask2Former (mmseg)'}


class StageError(RuntimeError):
    """A stage's checkpoint or record is missing or unreadable."""


# ------------------------------------------------------------------ configs
def set_backbone_arch(cfg: Config, arch) -> Config:
    """Give the config's STViT ``arch`` (a name or a dict) and make the
    neck/heads take its channels. In place; returns ``cfg``."""
    from stvit_mm.models.backbones.stvit import STViT
    channels = list(STViT.arch_zoo[arch]['embed_dims']
                    if isinstance(arch, str) else arch['embed_dims'])
    cfg.model.backbone.arch = arch
    task = {'mmpretrain': 'classification', 'mmdet': 'detection',
            'mmseg': 'segmentation'}[cfg.default_scope]
    if task == 'classification':
        cfg.model.neck.in_channels = channels[-1]
        return cfg
    # the stages the backbone hands on: all four (FPN, UperNet, Mask2Former)
    # or the last three (DINO at 4 scales)
    used = [channels[i] for i in cfg.model.backbone.out_indices]
    if task == 'detection':
        cfg.model.neck.in_channels = used
    else:
        cfg.model.decode_head.in_channels = used
        if cfg.model.get('auxiliary_head'):
            cfg.model.auxiliary_head.in_channels = channels[2]
    return cfg


def stage_config(stage: Stage, arch, data_root: str, work_dir: str,
                 pretrained: Optional[str] = None,
                 iters: Optional[int] = None,
                 cfg_options: Optional[dict] = None) -> Config:
    """The stage's real config with the tiny overrides applied.

    Args:
        pretrained: the mm-format checkpoint the backbone starts from; None
            trains from random weights.
        iters: override ``stage.iters``.
        cfg_options: further ``key=value`` overrides, applied last.
    """
    cfg = Config.fromfile(osp.join(ROOT, stage.config))
    set_backbone_arch(cfg, copy.deepcopy(arch))
    if arch == TINY_ARCH:
        cfg.merge_from_dict(TINY_HEADS[stage.head])
    iters = iters or stage.iters
    apply_tiny_overrides(
        cfg, data_root, work_dir, size=stage.size, iters=iters,
        val_interval=iters,
        checkpoint_interval=max(1, iters // 4), lr=stage.lr,
        batch_size=stage.batch_size, from_scratch=pretrained is None,
        pretrained=pretrained)
    # validate once, after training, by the caller: the loop would also
    # validate at its last iteration
    cfg.train_cfg.val_begin = iters + 1
    # short runs from few images: clip gradients as the 300-epoch recipes do
    cfg.optim_wrapper.clip_grad = dict(max_norm=5.0, norm_type=2)
    if stage.overrides:
        cfg.merge_from_dict(stage.overrides)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if stage.task == 'classification':
        # DeiT's regularisation (Mixup/CutMix, RandAugment, random erasing)
        # is for 300 epochs of 1.28M images; a 300-iteration run on 800
        # images learns nothing under it, so it is dropped here.
        cfg.model.train_cfg = dict(augments=None)
        pipeline = cfg.train_dataloader.dataset.pipeline
        cfg.train_dataloader.dataset.pipeline = [
            step for step in pipeline
            if step['type'] not in ('RandAugment', 'RandomErasing')]
    return cfg


# ------------------------------------------------------------------- stages
def _last_checkpoint(stage_dir: str) -> Optional[str]:
    """The checkpoint ``last_checkpoint`` names, checked to be readable."""
    from stvit_mm.utils import load_checkpoint_file
    pointer = osp.join(stage_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        path = f.read().strip()
    if not osp.isfile(path):
        raise StageError(f'{pointer} names {path}, which does not exist; '
                         f'delete {stage_dir} to train this stage again')
    try:
        load_checkpoint_file(path)
    except Exception as error:
        raise StageError(f'cannot read the checkpoint {path} of stage '
                         f'{osp.basename(stage_dir)} ({error}); delete '
                         f'{stage_dir} to train this stage again') from error
    return path


def _read_record(stage_dir: str) -> Optional[dict]:
    path = osp.join(stage_dir, 'record.json')
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise StageError(f'the record {path} of a finished stage is '
                         f'unreadable ({error}); delete {stage_dir} to '
                         f'train this stage again') from error


def run_stage(name: str, cfg: Config, stage_dir: str, resume: bool,
              stage: Optional[Stage] = None) -> dict:
    """Train and evaluate one stage with mmengine's Runner, or read the
    record of a stage that finished before (``resume``).

    Args:
        stage: what ran (its head and metric names go into the record);
            default: the chain's stage of the task in ``name``.

    Returns:
        dict: ``metrics`` (the toolbox's names), ``seconds``, ``resumed``,
        ``iters``, ``checkpoint`` (the last one), ``head`` and
        ``metric_keys`` (those of ``metrics`` the stage reports).
    """
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    if resume:
        record = _read_record(stage_dir)
        if record is not None:
            if not osp.isfile(record['checkpoint']):
                raise StageError(
                    f'stage {name} finished, but its checkpoint '
                    f'{record["checkpoint"]} is missing; delete {stage_dir} '
                    'to train this stage again')
            print(f'[{name}] finished before: {record["metrics"]}')
            return record
        resume = _last_checkpoint(stage_dir) is not None
    else:
        shutil.rmtree(stage_dir, ignore_errors=True)
    os.makedirs(stage_dir, exist_ok=True)
    cfg.work_dir = stage_dir
    cfg.resume = resume
    # runners built in one process within a second would otherwise share a
    # logger and message hub (mmengine names them by config and timestamp)
    cfg.experiment_name = f'{name}_{uuid.uuid4().hex[:8]}'
    # mmdet's and mmseg's runtimes name their visualizer 'visualizer', so a
    # second runner in the process would get the first one's (and write its
    # losses into the first stage's vis_data)
    if cfg.get('visualizer') is not None:
        cfg.visualizer['name'] = cfg.experiment_name
    cfg.dump(osp.join(stage_dir, 'config.py'))
    start = time.time()
    # A runner makes its toolbox's registry scope the process's current
    # one; give the caller its own back afterwards (a later mmpretrain
    # inferencer in the same process would otherwise look its transforms
    # up in mmseg's registry).
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        runner = Runner.from_cfg(cfg)
        runner.train()
        metrics = runner.val_loop.run()
    # mmseg reports numpy scalars, mmdet and mmpretrain Python floats
    metrics = {k: float(v) for k, v in metrics.items()
               if isinstance(v, (numbers.Real, np.number))}
    task = name.replace('_scratch', '')
    stage = stage or STAGES[task]
    if task == 'detection' and not metrics:
        # CocoMetric returns nothing when no image has a detection, whose
        # average precision is 0
        print(f'[{name}] the detector made no detections: mAP 0')
        metrics = {key: 0.0 for key in stage.metrics}
    record = dict(
        head=stage.head, metric_keys=list(stage.metrics),
        metrics=metrics,
        # a resumed stage counts the time of its last attempt only
        seconds=time.time() - start, resumed=resume, iters=runner.iter,
        checkpoint=_last_checkpoint(stage_dir))
    with open(osp.join(stage_dir, 'record.json'), 'w') as f:
        json.dump(record, f, indent=1)
    return record


def metric_keys(record: dict, task: str) -> Tuple[str, ...]:
    """The metrics a stage's record reports (records written before the
    heads could be chosen: those of the task's default head)."""
    return tuple(record.get('metric_keys') or STAGES[task].metrics)


def loss_curve(stage_dir: str) -> List[Tuple[int, float]]:
    """(iteration, loss) from the LocalVisBackend's ``vis_data/scalars.json``
    of every run in the stage dir (a resumed stage has several; later runs
    win)."""
    runs = sorted(d for d in os.listdir(stage_dir)
                  if osp.isfile(osp.join(stage_dir, d, 'vis_data',
                                         'scalars.json')))
    values = {}
    for run in runs:
        with open(osp.join(stage_dir, run, 'vis_data', 'scalars.json')) as f:
            for line in f:
                entry = json.loads(line)
                if 'loss' in entry and 'iter' in entry:
                    values[int(entry['iter'])] = float(entry['loss'])
    return sorted(values.items())


def hand_over(classifier_checkpoint: str, dst: str) -> int:
    """Convert the trained classifier into the mm format, as a user converts
    ImageNet weights. Returns the number of backbone tensors written."""
    from stvit_mm.utils import convert_checkpoint
    state_dict = convert_checkpoint(classifier_checkpoint, dst)
    return sum(key.startswith('backbone.') for key in state_dict)


def check_handover(path: str) -> None:
    """A clear error naming ``path`` if the hand-over file is missing,
    unreadable or holds no STViT weights (the check ``load_from`` gets)."""
    from stvit_mm.utils import check_stvit_checkpoint
    if not osp.isfile(path):
        raise StageError(f'the classifier hand-over checkpoint {path} is '
                         'missing; run the classification stage again '
                         '(delete its folder, or run without --resume)')
    try:
        check_stvit_checkpoint(path)
    except Exception as error:
        raise StageError(f'the classifier hand-over checkpoint {path} is '
                         f'unusable ({error}); run the classification '
                         'stage again') from error


# ------------------------------------------------------------ chance levels
def chance_levels(data_root: str, seed: int = 0) -> Dict[str, Dict]:
    """Each metric of a guesser that knows the training set's label
    statistics but not the image, scored by the toolboxes' own metrics on
    the held-out images."""
    rng = np.random.default_rng(seed)
    with _quiet():
        return {'classification': _chance_classification(data_root),
                'detection': _chance_detection(data_root, rng),
                'segmentation': _chance_segmentation(data_root, rng)}


@contextlib.contextmanager
def _quiet():
    """Keep the metrics' own tables and pycocotools' prints off the
    console (the chain prints the numbers it needs)."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _chance_classification(data_root: str) -> dict:
    def frequencies(split):
        with open(osp.join(data_root, 'imagenet', 'meta',
                           f'{split}.txt')) as f:
            labels = [int(line.split()[1]) for line in f if line.strip()]
        return np.bincount(labels, minlength=len(CATEGORIES)) / len(labels)

    # expected top-1 of guessing with the training label frequencies
    return {'accuracy/top1': float(100 * frequencies('train')
                                   @ frequencies('val'))}


def _chance_detection(data_root: str, rng) -> dict:
    """Random boxes: per image as many as the training images hold on
    average, each a random training box (category and size) at a random
    place with a random score, its mask the filled box."""
    import torch
    from mmdet.evaluation import CocoMetric
    coco = osp.join(data_root, 'coco', 'annotations')
    with open(osp.join(coco, 'instances_train2017.json')) as f:
        train = json.load(f)
    with open(osp.join(coco, 'instances_val2017.json')) as f:
        val = json.load(f)
    from mmdet.datasets import CocoDataset
    names = CocoDataset.METAINFO['classes']
    id_to_label = {c['id']: names.index(c['name'])
                   for c in train['categories']}
    boxes = [(id_to_label[a['category_id']], a['bbox'][2], a['bbox'][3])
             for a in train['annotations']]
    per_image = max(1, round(len(boxes) / len(train['images'])))
    metric = CocoMetric(ann_file=osp.join(coco, 'instances_val2017.json'),
                        metric=['bbox', 'segm'])
    metric.dataset_meta = CocoDataset.METAINFO
    for image in val['images']:
        height, width = image['height'], image['width']
        picks = [boxes[i] for i in rng.integers(len(boxes), size=per_image)]
        bboxes, masks = [], np.zeros((per_image, height, width), bool)
        for k, (_, w, h) in enumerate(picks):
            x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
            bboxes.append([x0, y0, x0 + w, y0 + h])
            masks[k, int(y0):int(np.ceil(y0 + h)),
                  int(x0):int(np.ceil(x0 + w))] = True
        metric.process({}, [dict(
            img_id=image['id'], ori_shape=(height, width),
            pred_instances=dict(
                bboxes=torch.tensor(bboxes, dtype=torch.float32),
                scores=torch.tensor(rng.random(per_image),
                                    dtype=torch.float32),
                labels=torch.tensor([p[0] for p in picks]),
                masks=torch.from_numpy(masks)))])
    results = metric.compute_metrics(metric.results)
    return {key: float(results[key.split('/')[1]])
            for key in METRICS['detection']}


def _chance_segmentation(data_root: str, rng) -> dict:
    """Random labels per pixel, drawn with the training pixel frequencies
    of each class."""
    import cv2
    import torch
    from mmseg.datasets import ADE20KDataset
    from mmseg.evaluation import IoUMetric
    ann = osp.join(data_root, 'ade', 'ADEChallengeData2016', 'annotations')

    def read(split):
        for name in sorted(os.listdir(osp.join(ann, split))):
            png = cv2.imread(osp.join(ann, split, name), cv2.IMREAD_UNCHANGED)
            # reduce_zero_label, as mmseg's ADE20K dataset loads it
            yield np.where(png == 0, 255, png.astype(np.int64) - 1)

    counts = np.zeros(256, np.int64)
    for label in read('training'):
        counts += np.bincount(label.ravel(), minlength=256)
    counts[255] = 0
    prior = counts / counts.sum()
    metric = IoUMetric()
    metric.dataset_meta = ADE20KDataset.METAINFO
    for label in read('validation'):
        guess = rng.choice(256, size=label.shape, p=prior)
        metric.process({}, [dict(
            pred_sem_seg=dict(data=torch.from_numpy(guess)[None]),
            gt_sem_seg=dict(data=torch.from_numpy(label)[None]))])
    return {'mIoU': float(metric.compute_metrics(metric.results)['mIoU'])}


# -------------------------------------------------------------------- chain
def ensure_data(data_root: str) -> None:
    """Write the tiny datasets unless ``data_root`` holds a complete set
    written by this version of the writer."""
    from stvit_mm.tiny_datasets import is_complete
    if is_complete(data_root):
        return
    print(f'Writing the tiny datasets to {data_root}')
    make_all(data_root)


def chain_stages(detector: str = 'mask_rcnn',
                 segmentor: str = 'upernet') -> Dict[str, Stage]:
    """The chain's stage per task with the chosen heads."""
    for kind, name, known in (('detector', detector, DETECTORS),
                              ('segmentor', segmentor, SEGMENTORS)):
        if name not in known:
            raise ValueError(f'unknown {kind} {name!r}; choose one of '
                             f'{", ".join(known)}')
    return {'classification': STAGES['classification'],
            'detection': HEAD_STAGES[detector],
            'segmentation': HEAD_STAGES[segmentor]}


def run_chain(work_dir: str = 'work_dirs/tiny',
              data_root: str = osp.join(ROOT, 'data', 'tiny'),
              arch=None, iters: Optional[Dict[str, int]] = None,
              compare_scratch: bool = False, resume: bool = False,
              pictures: bool = True, detector: str = 'mask_rcnn',
              segmentor: str = 'upernet') -> dict:
    """Classification -> hand-over -> detection and segmentation fine-tuning
    (and, with ``compare_scratch``, the same from random weights).

    Args:
        arch: STViT arch name or dict; default :data:`TINY_ARCH`.
        iters: per-task iteration overrides, e.g. ``{'detection': 5}``.
        detector, segmentor: the heads fine-tuned (:data:`DETECTORS`,
            :data:`SEGMENTORS`); default: the paper's.

    Returns:
        dict: the summary also written to ``work_dir/summary.json``.
    """
    start = time.time()
    arch = TINY_ARCH if arch is None else arch
    stages = chain_stages(detector, segmentor)
    iters = {task: (iters or {}).get(task) or stages[task].iters
             for task in TASKS}
    os.makedirs(work_dir, exist_ok=True)
    settings = dict(arch=arch, iters=iters, data_root=osp.abspath(data_root))
    if (detector, segmentor) != ('mask_rcnn', 'upernet'):
        settings.update(detector=detector, segmentor=segmentor)
    _check_settings(work_dir, settings, resume)
    ensure_data(data_root)
    chance = chance_levels(data_root)

    records = {}
    cls_dir = osp.join(work_dir, 'classification')
    cfg = stage_config(stages['classification'], arch, data_root, cls_dir,
                       iters=iters['classification'])
    records['classification'] = run_stage('classification', cfg, cls_dir,
                                          resume, stages['classification'])
    handover = osp.join(cls_dir, HANDOVER_NAME)
    if resume and osp.isfile(handover):
        check_handover(handover)
        print(f'[hand-over] {handover} from before')
    else:
        count = hand_over(records['classification']['checkpoint'], handover)
        print(f'[hand-over] {records["classification"]["checkpoint"]} -> '
              f'{handover}: {count} backbone tensors, loaded by the detector'
              ' and the segmentor through init_cfg=Pretrained(prefix='
              '"backbone.")')

    scratch_seconds = 0.0
    for task in ('detection', 'segmentation'):
        runs = [(task, handover)]
        if compare_scratch:
            runs.append((f'{task}_scratch', None))
        for name, pretrained in runs:
            stage_dir = osp.join(work_dir, name)
            cfg = stage_config(stages[task], arch, data_root, stage_dir,
                               pretrained=pretrained, iters=iters[task])
            began = time.time()
            records[name] = run_stage(name, cfg, stage_dir, resume,
                                      stages[task])
            if pretrained is None:
                scratch_seconds += time.time() - began

    summary = make_summary(records, chance, arch)
    pictures_at = {}
    if pictures:
        pictures_at['chart'] = plot_chain(work_dir, records, chance,
                                          osp.join(work_dir, 'chain.png'))
        pictures_at['super_tokens'] = super_token_picture(
            cls_dir, handover, data_root,
            osp.join(work_dir, 'super_tokens.png'))
    summary['seconds'] = time.time() - start - scratch_seconds
    with open(osp.join(work_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    print_table(summary, records)
    print(f'summary:      {osp.abspath(osp.join(work_dir, "summary.json"))}')
    for what, path in pictures_at.items():
        print(f'{what + ":":<13} {osp.abspath(path)}')
    return summary


def run_single(task: str, work_dir: str = 'work_dirs/tiny',
               data_root: str = osp.join(ROOT, 'data', 'tiny'), arch=None,
               iters: Optional[int] = None, scratch: bool = False,
               resume: bool = False,
               cfg_options: Optional[dict] = None,
               detector: str = 'mask_rcnn',
               segmentor: str = 'upernet') -> dict:
    """One stage of the chain alone, in ``work_dir/<task>``. Detection and
    segmentation start from the chain's classifier hand-over in
    ``work_dir/classification`` (run that stage first), or from random
    weights with ``scratch``; ``detector``/``segmentor`` choose the head."""
    arch = TINY_ARCH if arch is None else arch
    stage = chain_stages(detector, segmentor)[task]
    ensure_data(data_root)
    pretrained = None
    if task != 'classification' and not scratch:
        pretrained = osp.join(work_dir, 'classification', HANDOVER_NAME)
        if not osp.isfile(pretrained):
            raise StageError(
                f'no classifier hand-over at {pretrained}: run '
                '`--task classification` (or the whole chain) first with the'
                ' same --work-dir, or pass --scratch to start from random '
                'weights')
        check_handover(pretrained)
    name = f'{task}_scratch' if scratch and task != 'classification' \
        else task
    stage_dir = osp.join(work_dir, name)
    cfg = stage_config(stage, arch, data_root, stage_dir,
                       pretrained=pretrained, iters=iters,
                       cfg_options=cfg_options)
    record = run_stage(name, cfg, stage_dir, resume, stage)
    if task == 'classification':
        handover = osp.join(stage_dir, HANDOVER_NAME)
        count = hand_over(record['checkpoint'], handover)
        print(f'[hand-over] {count} backbone tensors -> {handover}')
    print(f'\n{name}: {record["iters"]} iterations, '
          f'{record["seconds"] / 60:.1f} min, from '
          f'{pretrained or "random weights"}')
    for key in stage.metrics:
        print(f'  {key:<16} {record["metrics"][key]:.4f}')
    print(f'checkpoints: {osp.abspath(stage_dir)}')
    return record


def _check_settings(work_dir: str, settings: dict, resume: bool) -> None:
    """A resumed chain must continue with the settings it started with."""
    path = osp.join(work_dir, 'chain.json')
    settings = json.loads(json.dumps(settings))  # tuples -> lists
    if resume and osp.isfile(path):
        with open(path) as f:
            before = json.load(f)
        if before != settings:
            raise StageError(
                f'--resume: {work_dir} was started with {before}, not '
                f'{settings}; resume with the same options or use another '
                '--work-dir')
    with open(path, 'w') as f:
        json.dump(settings, f, indent=1)


def make_summary(records: dict, chance: dict, arch) -> dict:
    """``{task: {metric: value, 'chance': {...}, 'scratch': {...}}}`` with
    the toolboxes' metric names and units."""
    summary = {}
    for task in TASKS:
        if task not in records:
            continue
        metrics = records[task]['metrics']
        keys = metric_keys(records[task], task)
        entry = {key: metrics[key] for key in keys}
        entry['head'] = records[task].get('head', STAGES[task].head)
        entry['chance'] = {key: chance[task][key] for key in keys}
        entry['minutes'] = records[task]['seconds'] / 60
        scratch = records.get(f'{task}_scratch')
        if scratch is not None:
            entry['scratch'] = {key: scratch['metrics'][key]
                                for key in keys}
        summary[task] = entry
    summary['arch'] = arch
    return summary


def print_table(summary: dict, records: dict) -> None:
    """Task, metric, value, chance, (scratch,) minutes."""
    scratch = any('scratch' in summary.get(t, {}) for t in TASKS)
    header = ['task', 'metric', 'value', 'chance'] + \
        (['scratch'] if scratch else []) + ['minutes']
    rows = []
    for task in TASKS:
        if task not in summary:
            continue
        entry = summary[task]
        for key in metric_keys(records[task], task):
            fmt = '{:.3f}' if task == 'detection' else '{:.2f}'
            head = entry.get('head', STAGES[task].head)
            name = task if head == STAGES[task].head else f'{task} ({head})'
            row = [name, key, fmt.format(entry[key]),
                   fmt.format(entry['chance'][key])]
            if scratch:
                row.append(fmt.format(entry['scratch'][key])
                           if 'scratch' in entry else '-')
            row.append(f'{entry["minutes"]:.1f}')
            rows.append(row)
    widths = [max(len(str(r[i])) for r in [header] + rows)
              for i in range(len(header))]
    line = '  '.join('{:<%d}' % w for w in widths)
    print('\n' + line.format(*header))
    print('  '.join('-' * w for w in widths))
    for row in rows:
        print(line.format(*row))
    print(f'chain: {summary["seconds"] / 60:.1f} min (top-1 and mIoU in '
          'percent, COCO mAP as a fraction; chance: a guesser that knows '
          "the training labels' statistics but not the image)")


# ----------------------------------------------------------------- pictures
_LABELS = {'accuracy/top1': 'top-1\n(%)', 'coco/bbox_mAP': 'box mAP\n(x100)',
           'coco/segm_mAP': 'mask mAP\n(x100)', 'mIoU': 'mIoU\n(%)'}


def plot_chain(work_dir: str, records: dict, chance: dict, out: str) -> str:
    """Loss curves of every run and the metrics beside their chance level
    (and the runs from random weights), one PNG readable at page width."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for ax, task in zip(axes.flat, TASKS):
        for name, style, label in (
                (task, '-', 'from scratch' if task == 'classification'
                 else 'from the trained classifier'),
                (f'{task}_scratch', '--', 'from random weights')):
            stage_dir = osp.join(work_dir, name)
            if name not in records or not osp.isdir(stage_dir):
                continue
            curve = loss_curve(stage_dir)
            if curve:
                its, values = zip(*curve)
                ax.plot(its, values, style, lw=2, label=label)
        head = records[task].get('head', STAGES[task].head) \
            if task in records else STAGES[task].head
        ax.set_title(f'{HEAD_TITLES[head]}: training loss', fontsize=12)
        ax.set_xlabel('iteration', fontsize=11)
        ax.set_ylabel('loss', fontsize=11)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=10)

    ax = axes.flat[3]
    keys = [(task, key) for task in TASKS if task in records
            for key in metric_keys(records[task], task)]

    def scaled(task, key, value):
        return value * 100 if task == 'detection' else value

    groups = [('trained (det./seg.: from the classifier)', '#1f77b4',
               [scaled(t, k, records[t]['metrics'][k]) for t, k in keys])]
    if all(f'{t}_scratch' in records for t, _ in keys
           if t != 'classification'):
        groups.append(('from random weights', '#ff7f0e', [
            scaled(t, k, records[f'{t}_scratch']['metrics'][k])
            if t != 'classification' else np.nan for t, k in keys]))
    groups.append(('chance', '#9a9a9a',
                   [scaled(t, k, chance[t][k]) for t, k in keys]))
    width = 0.8 / len(groups)
    for g, (label, colour, values) in enumerate(groups):
        xs = np.arange(len(keys)) + (g - (len(groups) - 1) / 2) * width
        bars = ax.bar(xs, values, width, label=label, color=colour)
        for bar, value in zip(bars, values):
            if not np.isnan(value):
                ax.text(bar.get_x() + bar.get_width() / 2, value + 1,
                        f'{value:.0f}', ha='center', va='bottom',
                        fontsize=10)
    ax.set_xticks(np.arange(len(keys)))
    ax.set_xticklabels([_LABELS[k] for _, k in keys], fontsize=10)
    ax.set_ylim(0, 135)
    ax.set_yticks(range(0, 101, 20))
    ax.set_title('held-out metrics', fontsize=12)
    ax.legend(fontsize=9.5, loc='upper right')
    ax.grid(axis='y', alpha=0.3)
    fig.suptitle('Main job: classifier pretraining -> detection and '
                 'segmentation fine-tuning (tiny data)', fontsize=13)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def super_token_picture(cls_dir: str, checkpoint: str, data_root: str,
                        out: str, short_side: int = 256) -> str:
    """A held-out detection image, and the stage-1 super tokens of the
    classifier before (random weights) and after training, side by side."""
    import cv2
    from mmengine.registry import DefaultScope

    from stvit_mm.analysis.flops import build_model_from_config
    from stvit_mm.analysis.super_tokens import (block_association,
                                                draw_regions, preprocess)
    from stvit_mm.utils import load_pretrained_backbone
    cfg = Config.fromfile(osp.join(cls_dir, 'config.py'))
    val_dir = osp.join(data_root, 'coco', 'val2017')
    image = cv2.imread(osp.join(val_dir, sorted(os.listdir(val_dir))[0]))
    inputs = preprocess(image, cfg, short_side)
    shown = cv2.resize(image, tuple(inputs.shape[2:][::-1]),
                       interpolation=cv2.INTER_LINEAR)
    panels = [(shown, 'held-out image')]
    for trained in (False, True):
        with DefaultScope.overwrite_default_scope(cfg.default_scope):
            model, _ = build_model_from_config(cfg)
        backbone = model.backbone
        backbone.init_weights()
        if trained:
            load_pretrained_backbone(backbone, checkpoint)
        last_block = len(backbone.layers[0].blocks) - 1
        labels, grid = block_association(backbone.eval(), inputs, 0,
                                         last_block)
        panels.append((draw_regions(shown, labels[0].numpy()),
                       f'{"trained" if trained else "random"}: '
                       f'{grid[0]}x{grid[1]} super tokens'))
    captioned = []
    for picture, caption in panels:
        bar = np.full((28, picture.shape[1], 3), 255, np.uint8)
        cv2.putText(bar, caption, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 0, 0), 1, cv2.LINE_AA)
        captioned.append(np.concatenate([bar, picture], 0))
    gap = np.full((captioned[0].shape[0], 6, 3), 255, np.uint8)
    row = [captioned[0]]
    for picture in captioned[1:]:
        row += [gap, picture]
    cv2.imwrite(out, np.concatenate(row, 1))
    return out
