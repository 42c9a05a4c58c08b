"""Cascade Mask R-CNN with the heads used for hierarchical transformer
backbones of the paper's time: each of the three box heads has 4 shared 3x3
convs (with BatchNorm) and 1 fc, and regresses decoded boxes with GIoU loss.

With mmdet's default 2-fc heads the whole detector counts 488G FLOPs at
1280x800 for STViT-B; with these, 832G, the paper's 837G (docs/flops.md), so
these are the heads the paper's cascade numbers were measured with.
Head BatchNorm is SyncBN across GPUs; mmengine reverts it to BN in a
single-process run.
"""
_base_ = 'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py'

_stage_stds = ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
               [0.033, 0.033, 0.067, 0.067])
model = dict(
    roi_head=dict(bbox_head=[
        dict(
            type='ConvFCBBoxHead',
            num_shared_convs=4,
            num_shared_fcs=1,
            in_channels=256,
            conv_out_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder',
                            target_means=[0., 0., 0., 0.], target_stds=stds),
            reg_class_agnostic=False,
            reg_decoded_bbox=True,
            norm_cfg=dict(type='SyncBN', requires_grad=True),
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False,
                          loss_weight=1.0),
            loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
        for stds in _stage_stds
    ]))
