"""Mask R-CNN with an STViT-S backbone, 1x schedule on COCO.

Target (paper, COCO val2017): box AP 47.6, mask AP 43.1; 252G FLOPs at 1280x800.
Backbone choices: ../_base_/stvit_backbones.py; schedule and optimiser:
_base_/coco_instance_1x.py.
"""
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/coco_instance_1x.py',
    '../_base_/stvit_backbones.py',
    '../_base_/stvit_runtime.py',
]
model = dict(
    backbone={{_base_.stvit_s}},
    neck=dict(in_channels={{_base_.stvit_s_channels}}))
