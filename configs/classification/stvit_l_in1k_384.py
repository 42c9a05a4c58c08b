"""STViT-L fine-tuned at 384x384 (paper: top-1 86.4, 49.7G FLOPs).

The 384 fine-tune recipe of stvit_s_in1k_384.py (30 epochs, lr 5e-6, weight
decay 1e-8) with the L model of stvit_l_in1k.py (drop path 0.6).
Set `load_from` to the converted (or self-trained) 224 checkpoint.
"""
_base_ = './stvit_s_in1k_384.py'

load_from = 'checkpoints/stvit_l_in1k_mm.pth'  # official_to_mm.py output
model = dict(
    backbone=dict(arch='l', drop_path_rate=0.6),
    neck=dict(in_channels=640))
