"""Mask R-CNN STViT-S, 1x on COCO, with layer-wise learning-rate decay 0.9.

mask_rcnn_stvit_s.py with one change: STViTLayerDecayOptimWrapperConstructor
(stvit_mm) multiplies the lr of each backbone parameter by
0.9 ** (21 - layer), where layer 0 is the stem and layers 1-20 are the 20
blocks (a downsample goes with the block before it): the stem trains at
0.11x the lr, the last stage's blocks at 0.73-0.9x, and the FPN and heads,
which start from random, at the full 1e-4. No weight decay on norms, biases
and 1-D parameters, as before. 0.9 per block puts the stem between mmdet's
ConvNeXt Mask R-CNN (0.95 over 8 layers: 0.70x) and Cascade (0.7: 0.08x)
recipes; SimMIM fine-tunes Swin-B (24 blocks) with 0.9 too. The lr, schedule
and everything else stay the baseline's, so the two runs compare directly.
No paper result: the paper trains without layer decay.
"""
_base_ = './mask_rcnn_stvit_s.py'

optim_wrapper = dict(
    constructor='STViTLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9))
