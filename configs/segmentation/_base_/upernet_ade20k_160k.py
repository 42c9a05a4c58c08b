"""UperNet on ADE20K, 512x512 crops, 160k iterations at batch 16 (8 GPUs x 2),
with AdamW for STViT.

The paper does not state its segmentation optimiser (facts §4); these are the
usual settings for hierarchical backbones of its time: AdamW lr 6e-5, weight
decay 0.01 (none on norms, biases and layer scales), 1500-iteration linear
warm-up, then poly decay to 0. Mixed precision as on the paper's GPUs:
AutoAmpOptimWrapper (stvit_mm) builds mmengine's AmpOptimWrapper when a GPU
is present and a plain fp32 OptimWrapper otherwise, so this file also runs on
a CPU.

BatchNorm: the backbone keeps its ImageNet statistics (norm_eval=True, see
../../_base_/stvit_backbones.py); the UperNet heads use mmseg's
SyncBN across GPUs, which mmengine turns back into plain BN in a
non-distributed run, so the same file trains in one CPU process.
"""
_base_ = [
    'mmseg::_base_/models/upernet_swin.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['stvit_mm'], allow_failed_imports=False)

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='AutoAmpOptimWrapper',
    optimizer=dict(
        type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0,
        custom_keys={'.gamma_': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000,
         by_epoch=False),
]
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
