"""STViT-B on ImageNet-1K, 224x224 (paper: top-1 84.8, 9.9G FLOPs).

The STViT-S recipe (see stvit_s_in1k.py) with drop path 0.4; layer scale is
on in stages 3 and 4 (part of the 'b' arch).
"""
_base_ = './stvit_s_in1k.py'

model = dict(
    backbone=dict(arch='b', drop_path_rate=0.4),
    neck=dict(in_channels=512))
