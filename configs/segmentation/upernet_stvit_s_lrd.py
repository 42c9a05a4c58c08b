"""UperNet STViT-S on ADE20K (512x512, 160k) with layer-wise learning-rate
decay 0.9.

upernet_stvit_s.py with one change: STViTLayerDecayOptimWrapperConstructor
(stvit_mm) multiplies the lr of each backbone parameter by
0.9 ** (21 - layer), where layer 0 is the stem and layers 1-20 are the 20
blocks (a downsample goes with the block before it): the stem trains at
0.11x the lr, the last stage's blocks at 0.73-0.9x, and the UperNet and
auxiliary heads, which start from random, at the full 6e-5. No weight decay
on norms, biases and 1-D parameters, as before. 0.9 is the rate of mmseg's
BEiT and ConvNeXt UperNet recipes on ADE20K. The lr, schedule and
everything else stay the baseline's, so the two runs compare directly.
No paper result: the paper trains without layer decay.
"""
_base_ = './upernet_stvit_s.py'

optim_wrapper = dict(
    constructor='STViTLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9))
