"""STViT backbones for dense prediction, one variable per size, used as
``backbone={{_base_.stvit_s}}`` by the detection and segmentation configs.

- Super tokens of 16, 8, 2, 1 pixels per stage: with those the backbone
  costs the paper's FLOPs (STViT-S 82.3G at 1280x800); they are not tied to
  any weight, so ImageNet checkpoints load unchanged.
- BatchNorm: STViT has one in every block. Detection trains with 2 images per
  GPU, too few for batch statistics, so ``norm_eval=True`` keeps the ImageNet
  statistics while the affine weights still train (as mmdet does for ResNet).
  It needs no SyncBN and no process group, so the configs also run in one CPU
  process, or in CPU DDP, unchanged.
- Drop path 0.1 / 0.3 / 0.4 for S / B / L (the paper does not state it).
- ``pretrained_*``: converted ImageNet checkpoints, made with
  ``python tools/model_converters/official_to_mm.py OFFICIAL.pth DST``.
  Override with ``--cfg-options model.backbone.init_cfg.checkpoint=PATH`` or
  train from scratch with ``--cfg-options model.backbone.init_cfg=None``.
"""
pretrained_s = 'checkpoints/stvit_s_in1k_mm.pth'
pretrained_b = 'checkpoints/stvit_b_in1k_mm.pth'
pretrained_l = 'checkpoints/stvit_l_in1k_mm.pth'

_common = dict(_delete_=True, type='STViT', stoken_size=[16, 8, 2, 1],
               out_indices=(0, 1, 2, 3), norm_eval=True)
stvit_s = dict(_common, arch='s', drop_path_rate=0.1, init_cfg=dict(
    type='Pretrained', checkpoint=pretrained_s, prefix='backbone.'))
stvit_b = dict(_common, arch='b', drop_path_rate=0.3, init_cfg=dict(
    type='Pretrained', checkpoint=pretrained_b, prefix='backbone.'))
stvit_l = dict(_common, arch='l', drop_path_rate=0.4, init_cfg=dict(
    type='Pretrained', checkpoint=pretrained_l, prefix='backbone.'))
stvit_s_channels = [64, 128, 320, 512]
stvit_b_channels = [96, 192, 384, 512]
stvit_l_channels = [96, 192, 448, 640]
