"""UperNet with an STViT-B backbone on ADE20K, 512x512, 160k iterations.

Target (paper, ADE20K val): mIoU 50.7 single-scale, 51.9 multi-scale; 1036G FLOPs at 512x2048.
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
    backbone={{_base_.stvit_b}},
    decode_head=dict(in_channels={{_base_.stvit_b_channels}}),
    auxiliary_head=dict(in_channels=384))
