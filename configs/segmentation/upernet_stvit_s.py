"""UperNet with an STViT-S backbone on ADE20K, 512x512, 160k iterations.

Target (paper, ADE20K val): mIoU 48.6 single-scale, 49.0 multi-scale; 926G FLOPs at 512x2048.
Backbone choices (shared with detection):
../_base_/stvit_backbones.py; schedule and optimiser:
_base_/upernet_ade20k_160k.py.
"""
_base_ = [
    './_base_/upernet_ade20k_160k.py',
    '../_base_/stvit_backbones.py',
    '../_base_/stvit_runtime.py',
]
model = dict(
    backbone={{_base_.stvit_s}},
    decode_head=dict(in_channels={{_base_.stvit_s_channels}}),
    auxiliary_head=dict(in_channels=320))
