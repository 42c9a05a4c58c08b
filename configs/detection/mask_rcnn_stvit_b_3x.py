"""Mask R-CNN with an STViT-B backbone, 3x multi-scale schedule on COCO.

Target (paper, COCO val2017): box AP 51.0, mask AP 45.4.
Backbone choices: ../_base_/stvit_backbones.py; schedule and optimiser:
_base_/coco_instance_ms_3x.py.
"""
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/coco_instance_ms_3x.py',
    '../_base_/stvit_backbones.py',
    '../_base_/stvit_runtime.py',
]
model = dict(
    backbone={{_base_.stvit_b}},
    neck=dict(in_channels={{_base_.stvit_b_channels}}))
