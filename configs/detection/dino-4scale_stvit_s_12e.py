"""DINO (4 feature scales) with an STViT-S backbone, 12 epochs on COCO.

mmdet's DINO recipe (``mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py``:
900 queries, 6+6 deformable layers, AdamW lr 1e-4 with the backbone at
0.1x, gradient clipping at 0.1, batch 16) with only the backbone swapped:
STViT stages 2-4 (strides 8, 16, 32) feed the ChannelMapper, which adds the
fourth, stride-64 level, as for ResNet-50. Mixed precision through
AutoAmpOptimWrapper (fp32 on a CPU).

Cost at 1280x800 (``tools/analysis_tools/get_flops.py``, mode='tensor', see
docs/flops.md): 274.5G, 43.93M params; Swin-T in the same DINO,
measured the same way: 289.5G, 48.19M.
"""
_base_ = [
    'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
    '../_base_/stvit_backbones.py',
    '../_base_/stvit_runtime.py',
]
custom_imports = dict(imports=['stvit_mm'], allow_failed_imports=False)

model = dict(
    backbone={{_base_.stvit_s_last3}},
    neck=dict(in_channels={{_base_.stvit_s_last3_channels}}))

# DINO's optimiser as it is (weight decay 1e-4 on every parameter), with
# mixed precision where a GPU is present
optim_wrapper = dict(type='AutoAmpOptimWrapper')
