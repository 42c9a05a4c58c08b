"""STViT-L on ImageNet-1K, 224x224 (paper: top-1 85.3, 15.6G FLOPs).

The STViT-S recipe (see stvit_s_in1k.py) with drop path 0.6; layer scale is
on in stages 3 and 4 (part of the 'l' arch).
"""
_base_ = './stvit_s_in1k.py'

model = dict(
    backbone=dict(arch='l', drop_path_rate=0.6),
    neck=dict(in_channels=640))
