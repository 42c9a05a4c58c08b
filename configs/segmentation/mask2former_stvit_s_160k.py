"""Mask2Former with an STViT-S backbone on ADE20K, 512x512, 160k iterations.

mmseg's Mask2Former recipe (``mmseg::mask2former/
mask2former_swin-t_8xb2-160k_ade20k-512x512.py``: 100 queries, 6-layer
deformable pixel decoder, 9-layer transformer decoder, AdamW lr 1e-4 with
the backbone at 0.1x and its norms without weight decay, clipping at 0.01,
batch 16) with only the backbone swapped; mixed precision through
AutoAmpOptimWrapper (fp32 on a CPU).

Cost at 512x512 (``tools/analysis_tools/get_flops.py``, see docs/flops.md):
62.8G, 43.76M params; mmseg's
Mask2Former Swin-T, measured the same way: 69.5G, 47.44M..
"""
_base_ = [
    'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py',
    '../_base_/stvit_backbones.py',
    '../_base_/stvit_runtime.py',
]
custom_imports = dict(imports=['stvit_mm'], allow_failed_imports=False)

model = dict(
    backbone={{_base_.stvit_s}},
    decode_head=dict(in_channels={{_base_.stvit_s_channels}}))

optim_wrapper = dict(
    type='AutoAmpOptimWrapper',
    paramwise_cfg=dict(custom_keys={{_base_.stvit_s_norm_keys}}))
