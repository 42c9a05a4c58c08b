"""Mask2Former with an STViT-B backbone on ADE20K, 512x512, 160k iterations:
mask2former_stvit_s_160k.py (mmseg's Mask2Former recipe) with the larger
backbone and its norms' keys.

Cost at 512x512 (``tools/analysis_tools/get_flops.py``, see docs/flops.md):
87.6G, 69.99M params..
"""
_base_ = './mask2former_stvit_s_160k.py'

model = dict(
    backbone={{_base_.stvit_b}},
    decode_head=dict(in_channels={{_base_.stvit_b_channels}}))

optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={{_base_.stvit_b_norm_keys}}))
