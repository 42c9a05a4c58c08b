"""Mask2Former instance segmentation with an STViT-S backbone on COCO,
large-scale jitter at 1024x1024, 50 epochs (368750 iterations at batch 16).

mmdet's recipe (``mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py``:
100 queries, AdamW lr 1e-4 with the backbone at 0.1x and its norms without
weight decay, clipping at 0.01) with only the backbone swapped; mixed
precision through AutoAmpOptimWrapper (fp32 on a CPU). Not in the paper.

Cost at 1280x800 (``tools/analysis_tools/get_flops.py``, see
docs/flops.md): 247.3G, 43.74M params..
"""
_base_ = [
    'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py',
    '../_base_/stvit_backbones.py',
    '../_base_/stvit_runtime.py',
]
custom_imports = dict(imports=['stvit_mm'], allow_failed_imports=False)

model = dict(
    backbone={{_base_.stvit_s}},
    panoptic_head=dict(in_channels={{_base_.stvit_s_channels}}))

optim_wrapper = dict(
    type='AutoAmpOptimWrapper',
    paramwise_cfg=dict(custom_keys={{_base_.stvit_s_norm_keys}}))
