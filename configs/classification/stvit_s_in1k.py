"""STViT-S on ImageNet-1K, 224x224: the paper's recipe (top-1 83.6, 4.4G FLOPs).

300 epochs, AdamW lr 1e-3 at batch 1024, weight decay 0.05, cosine schedule
with 5 warm-up epochs, drop path 0.1, EMA, DeiT-style augmentation
(RandAugment, RandomErasing, Mixup 0.8, CutMix 1.0, label smoothing 0.1).
Batch 1024 = 8 GPUs x 128; mmengine's --auto-scale-lr rescales the lr for
other totals. Mixed precision as the official code trains with torch.cuda.amp:
AutoAmpOptimWrapper (stvit_mm) builds mmengine's AmpOptimWrapper on a GPU and
a plain fp32 OptimWrapper on a CPU, so the same file runs anywhere.
"""
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['stvit_mm'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='STViT', arch='s', stoken_size=[8, 4, 1, 1],
        drop_path_rate=0.1),
    # the official tail: 1x1 conv to 1024, BN, swish, global average pool
    neck=dict(type='STViTClsNeck', in_channels=512, out_channels=1024),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1024,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        cal_acc=False),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)

train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader

optim_wrapper = dict(
    type='AutoAmpOptimWrapper',
    optimizer=dict(lr=1e-3, weight_decay=0.05),
    # no decay on norms, biases and layer-scale gammas (DeiT practice)
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={'.gamma_': dict(decay_mult=0.0)},
        _delete_=True),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5),
]
# DeiT keeps an EMA with decay 0.99996 per iteration. PlainParamGroupsHook:
# see ../_base_/stvit_runtime.py (mmengine's `compile` option).
custom_hooks = [dict(type='EMAHook', momentum=4e-5, priority='ABOVE_NORMAL'),
                dict(type='PlainParamGroupsHook')]
auto_scale_lr = dict(base_batch_size=1024)
