"""DINO (4 feature scales) with an STViT-L backbone, 12 epochs on COCO:
dino-4scale_stvit_s_12e.py (mmdet's DINO recipe) with the larger backbone.

Cost at 1280x800 (``tools/analysis_tools/get_flops.py``, mode='tensor', see
docs/flops.md): 478.4G, 113.65M params.
"""
_base_ = './dino-4scale_stvit_s_12e.py'

model = dict(
    backbone={{_base_.stvit_l_last3}},
    neck=dict(in_channels={{_base_.stvit_l_last3_channels}}))
