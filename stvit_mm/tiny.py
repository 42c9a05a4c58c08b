# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Point any config of this repo at the embedded tiny datasets.

``stvit_mm.tiny_datasets.make_all`` writes them; this module
changes what a short CPU run needs and nothing else: data roots (and the
annotation file the COCO metric reads), the image size, the run length and
the learning-rate schedule length, the batch size, the logging/checkpoint
intervals, the EMA horizon of the classifier, and where the backbone starts
(random weights, or a given checkpoint in place of the ImageNet one).
Everything else (model, losses, optimiser type, pipelines, evaluators, hooks)
is the config's own, so these runs exercise the real experiments.
"""
import os.path as osp
from typing import Optional

from mmengine.config import Config

from stvit_mm.utils.inference_pipeline import inference_test_pipeline

TASKS = ('detection', 'segmentation', 'classification')
_SCOPE_TASK = {'mmdet': 'detection', 'mmseg': 'segmentation',
               'mmpretrain': 'classification'}


def task_of(cfg: Config) -> str:
    """'detection', 'segmentation' or 'classification' from default_scope."""
    scope = cfg.get('default_scope')
    if scope not in _SCOPE_TASK:
        raise ValueError(f'cannot tell the task of a config with default_scope'
                         f' {scope!r}; expected one of {sorted(_SCOPE_TASK)}')
    return _SCOPE_TASK[scope]


def _resize_pipeline(pipeline: list, size: int) -> list:
    """Scale every resize/crop of a pipeline to ``size`` pixels."""
    out = []
    for step in pipeline:
        step = dict(step)
        kind = step['type']
        if kind in ('Resize', 'RandomResize', 'RandomChoiceResize'):
            # one fixed size: multi-scale sampling has no meaning here
            step = dict(type='Resize', scale=(size, size),
                        keep_ratio=step.get('keep_ratio', True))
        elif kind in ('RandomResizedCrop', 'ResizeEdge'):
            step['scale'] = size
        elif kind in ('CenterCrop', 'RandomCrop'):
            step['crop_size'] = size if kind == 'CenterCrop' else (size, size)
        elif kind == 'RandomChoice':
            # keep the first branch only: multi-scale choice has no meaning
            # at one tiny size
            out.extend(_resize_pipeline(step['transforms'][0], size))
            continue
        out.append(step)
    return out


def _set_dataset(loader: dict, root: str, size: int, batch_size: int,
                 **dataset_keys) -> None:
    dataset = loader['dataset']
    while 'dataset' in dataset:  # RepeatDataset / ClassBalancedDataset
        dataset = dataset['dataset']
    dataset['data_root'] = root
    dataset.update(dataset_keys)
    dataset['pipeline'] = _resize_pipeline(dataset['pipeline'], size)
    loader.update(batch_size=batch_size, num_workers=0,
                  persistent_workers=False)


def apply_tiny_overrides(cfg: Config, data_root: str, work_dir: str,
                         size: Optional[int] = None, iters: int = 40,
                         val_interval: Optional[int] = None,
                         checkpoint_interval: Optional[int] = None,
                         from_scratch: bool = True,
                         lr: Optional[float] = None,
                         batch_size: int = 2,
                         pretrained: Optional[str] = None) -> Config:
    """Return ``cfg`` changed to train for ``iters`` iterations on the tiny
    datasets under ``data_root`` (in place and returned).

    Args:
        cfg: a config of this repo (any task).
        data_root: the folder ``make_all`` wrote.
        work_dir: where logs and checkpoints go.
        size: image side; defaults to 128 (det/seg) or 64 (cls).
        iters: training iterations (the loop becomes iteration based).
        val_interval: validate every this many iterations (default: at end).
        checkpoint_interval: default: ``val_interval``; the last iteration
            is always saved.
        from_scratch: drop the backbone's Pretrained init_cfg and let its
            BatchNorms learn statistics (norm_eval=False).
        lr: optional learning rate override.
        batch_size: images per batch, training and validation.
        pretrained: a checkpoint for the backbone's Pretrained init_cfg
            (prefix ``backbone.``) in place of the config's ImageNet file;
            the config's norm_eval stays. Excludes ``from_scratch``.
    """
    if pretrained and from_scratch:
        raise ValueError('pass either pretrained=<checkpoint> or '
                         'from_scratch=True, not both')
    task = task_of(cfg)
    size = size or (64 if task == 'classification' else 128)
    val_interval = val_interval or iters
    if task == 'detection':
        root = osp.join(data_root, 'coco') + '/'
        for split, loader in (('train', cfg.train_dataloader),
                              ('val', cfg.val_dataloader),
                              ('val', cfg.test_dataloader)):
            _set_dataset(loader, root, size, batch_size,
                         ann_file=f'annotations/instances_{split}2017.json',
                         data_prefix=dict(img=f'{split}2017/'))
        for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
            evaluator['ann_file'] = root + 'annotations/instances_val2017.json'
    elif task == 'segmentation':
        root = osp.join(data_root, 'ade', 'ADEChallengeData2016')
        for split, loader in (('training', cfg.train_dataloader),
                              ('validation', cfg.val_dataloader),
                              ('validation', cfg.test_dataloader)):
            _set_dataset(loader, root, size, batch_size, data_prefix=dict(
                img_path=f'images/{split}',
                seg_map_path=f'annotations/{split}'))
        cfg.model.data_preprocessor['size'] = (size, size)
    else:
        root = osp.join(data_root, 'imagenet')
        for split, loader in (('train', cfg.train_dataloader),
                              ('val', cfg.val_dataloader),
                              ('val', cfg.test_dataloader)):
            _set_dataset(loader, root, size, batch_size, split=split)
        # DeiT's EMA keeps 1 - 4e-5 of the average per iteration, a horizon
        # of 25k iterations: over a short run it would stay at the random
        # init. Keep the EMA (the checkpoint and validation use it) with a
        # horizon of a tenth of the run.
        for hook in cfg.get('custom_hooks', []):
            if hook.get('type') == 'EMAHook':
                hook['momentum'] = min(0.5, 10.0 / max(iters, 1))

    # The top-level test_pipeline is what mmdeploy and mmseg's
    # inference_model preprocess with, the test dataloader's what mmdet's
    # and mmpretrain's inference do: one pipeline for all, the tiny size.
    cfg.test_pipeline = inference_test_pipeline(cfg)

    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters,
                         val_interval=val_interval)
    # warm-up, then cosine decay to zero over the short run (measured: a
    # constant lr lets from-scratch Mask R-CNN drift upward after ~60
    # iterations at batch 2)
    warmup = max(1, iters // 10)
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=warmup),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup,
             end=max(iters, warmup + 1), T_max=max(iters - warmup, 1),
             eta_min=0.0),
    ]
    if lr is not None:
        cfg.optim_wrapper.optimizer['lr'] = lr
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=5)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', by_epoch=False,
        interval=checkpoint_interval or val_interval,
        max_keep_ckpts=2, save_last=True)
    cfg.log_processor = dict(by_epoch=False)
    if pretrained:
        cfg.model.backbone.init_cfg = dict(type='Pretrained',
                                           checkpoint=pretrained,
                                           prefix='backbone.')
    if from_scratch:
        cfg.model.backbone.init_cfg = None
        # norm_eval keeps pretrained ImageNet BN statistics; from scratch
        # there are none, and frozen (0, 1) statistics let activations grow
        # unchecked through the blocks (measured: the loss diverges).
        if 'norm_eval' in cfg.model.backbone:
            cfg.model.backbone.norm_eval = False
    cfg.work_dir = work_dir
    cfg.load_from = None
    cfg.resume = False
    return cfg
