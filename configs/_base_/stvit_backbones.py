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

# DETR-family detectors at 4 scales (DINO) take stages 2-4 (strides 8-32);
# their ChannelMapper adds the stride-64 level, as it does for ResNet-50.
stvit_s_last3 = dict(stvit_s, out_indices=(1, 2, 3))
stvit_b_last3 = dict(stvit_b, out_indices=(1, 2, 3))
stvit_l_last3 = dict(stvit_l, out_indices=(1, 2, 3))
stvit_s_last3_channels = stvit_s_channels[1:]
stvit_b_last3_channels = stvit_b_channels[1:]
stvit_l_last3_channels = stvit_l_channels[1:]


def _norm_keys(depths, lr_mult=0.1):
    """paramwise ``custom_keys`` that give every norm of the backbone
    ``lr_mult`` and no weight decay.

    Recipes that train the backbone at a lower rate (``'backbone':
    dict(lr_mult=0.1)``) need one key per norm: mmengine applies only the
    longest custom key that matches a parameter, and then skips
    ``norm_decay_mult`` (mmseg's Swin configs list their norms the same way).
    """
    frozen = dict(lr_mult=lr_mult, decay_mult=0.0)
    keys = {f'backbone.patch_embed.proj.{i}.': frozen for i in (2, 5, 8, 11)}
    for stage, depth in enumerate(depths):
        if stage < len(depths) - 1:
            keys[f'backbone.layers.{stage}.downsample.proj.1.'] = frozen
        for block in range(depth):
            # norm1 (LayerNorm) and norm2 (BatchNorm) of each block
            keys[f'backbone.layers.{stage}.blocks.{block}.norm'] = frozen
    return keys


stvit_s_norm_keys = _norm_keys([3, 5, 9, 3])
stvit_b_norm_keys = _norm_keys([4, 6, 14, 6])
stvit_l_norm_keys = _norm_keys([4, 7, 19, 8])
