"""DINO (5 feature scales) with an STViT-L backbone, 12 epochs on COCO.

The counterpart of mmdet's strongest DINO, ``mmdet::dino/
dino-5scale_swin-l_8xb2-12e_coco.py``, with only the backbone swapped: all
four STViT-L stages (strides 4-32) feed the ChannelMapper, which adds the
stride-64 level; recipe as in dino-4scale_stvit_s_12e.py. Swin-L there
starts from ImageNet-22k weights; STViT-L has ImageNet-1k weights only.

Cost at 1280x800 (``tools/analysis_tools/get_flops.py``, mode='tensor', see
docs/flops.md): 1032.1G, 113.97M params (mmdet's
Swin-L DINO, measured the same way: 1540.0G, 218.33M).
"""
_base_ = [
    'mmdet::dino/dino-5scale_swin-l_8xb2-12e_coco.py',
    '../_base_/stvit_backbones.py',
    '../_base_/stvit_runtime.py',
]
custom_imports = dict(imports=['stvit_mm'], allow_failed_imports=False)

model = dict(
    backbone={{_base_.stvit_l}},
    neck=dict(in_channels={{_base_.stvit_l_channels}}))

# DINO's optimiser as it is (weight decay 1e-4 on every parameter), with
# mixed precision where a GPU is present
optim_wrapper = dict(type='AutoAmpOptimWrapper')
