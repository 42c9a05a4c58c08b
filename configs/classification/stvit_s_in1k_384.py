"""STViT-S fine-tuned at 384x384 (paper: top-1 85.0, 14.1G FLOPs).

30 epochs from the 224 model at lr 5e-6, weight decay 1e-8, batch 1024,
without warm-up. Set `load_from` to the converted (or self-trained) 224
checkpoint, e.g. `--cfg-options load_from=work_dirs/stvit_s_in1k/epoch_300.pth`.
Super-token sizes stay [8, 4, 1, 1]: they are not tied to any weight.
"""
_base_ = './stvit_s_in1k.py'

load_from = 'checkpoints/stvit_s_in1k_mm.pth'  # official_to_mm.py output

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=384, backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2,
         total_level=10, magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(type='RandomErasing', erase_prob=0.25, mode='rand',
         min_area_ratio=0.02, max_area_ratio=1 / 3,
         fill_color=[103.53, 116.28, 123.675],
         fill_std=[57.375, 57.12, 58.395]),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=384, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=384),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=128, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=128, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=5e-6, weight_decay=1e-8))
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=5e-7, by_epoch=True, begin=0),
]
train_cfg = dict(max_epochs=30)
