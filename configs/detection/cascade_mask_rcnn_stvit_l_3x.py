"""Cascade Mask R-CNN with an STViT-L backbone, 3x multi-scale schedule on COCO.

Target (paper, COCO val2017): none (the paper reports Cascade Mask R-CNN for STViT-B only).
Heads: _base_/cascade_mask_rcnn_4conv1fc.py (4conv1fc, GIoU). Backbone
choices: ../_base_/stvit_backbones.py; schedule and optimiser:
_base_/coco_instance_ms_3x.py.
"""
_base_ = [
    './_base_/cascade_mask_rcnn_4conv1fc.py',
    './_base_/coco_instance_ms_3x.py',
    '../_base_/stvit_backbones.py',
    '../_base_/stvit_runtime.py',
]
model = dict(
    backbone={{_base_.stvit_l}},
    neck=dict(in_channels={{_base_.stvit_l_channels}}))
