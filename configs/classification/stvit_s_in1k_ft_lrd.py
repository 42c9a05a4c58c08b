"""Fine-tune STViT-S from its ImageNet-1K weights with layer-wise lr decay.

The recipe for continuing from the trained classifier rather than from
scratch: on ImageNet-1K as written (so it runs as is), or on another
dataset after replacing the dataloaders and ``model.head.num_classes`` (the
new head then starts from random; the backbone and neck load).
stvit_s_in1k.py with these changes:

- ``load_from``: the converted official checkpoint (official_to_mm.py).
- mmpretrain's LearningRateDecayOptimWrapperConstructor with
  ``layer_decay_rate=0.9``: each parameter's lr is multiplied by
  0.9 ** (21 - layer), layer 0 the stem, 1-20 the blocks, 21 the neck and
  head (STViT.get_layer_depth). 0.9 is what mmpretrain's SimMIM recipe uses
  for Swin-B, a backbone of similar depth (24 blocks).
- lr 5e-5 at batch 1024 (``--auto-scale-lr`` rescales it): the stem then
  trains at 0.9 ** 21 x 5e-5 = 5.5e-6, about the lr at which the paper
  fine-tunes the whole network (stvit_s_in1k_384.py), and the head ten
  times faster, as a new head needs.
- 30 epochs: one epoch of linear warm-up (a new head's first gradients are
  large), then cosine decay to 1e-6.

Weight decay 0.05 (none on norms, biases, 1-D parameters and layer scales),
augmentation, drop path and EMA stay stvit_s_in1k.py's. No paper result:
the paper fine-tunes without layer decay.
"""
_base_ = './stvit_s_in1k.py'

load_from = 'checkpoints/stvit_s_in1k_mm.pth'  # official_to_mm.py output

optim_wrapper = dict(
    constructor='LearningRateDecayOptimWrapperConstructor',
    optimizer=dict(lr=5e-5),
    paramwise_cfg=dict(layer_decay_rate=0.9))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=1),
]
train_cfg = dict(max_epochs=30)
