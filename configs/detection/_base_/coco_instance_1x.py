"""COCO instances, 1x (12 epochs, steps 8 and 11), AdamW for STViT.

The paper does not state its detection optimiser (facts §4); these are the
usual settings for hierarchical backbones of its time: AdamW lr 1e-4, weight
decay 0.05 (none on norms, biases and layer scales), batch 16 (8 GPUs x 2).
Mixed precision as on the paper's GPUs: AutoAmpOptimWrapper (stvit_mm)
builds mmengine's AmpOptimWrapper when a GPU is present and a plain fp32
OptimWrapper otherwise (mmengine's own refuses to build without a GPU), so
the same file also runs on a CPU.
"""
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['stvit_mm'], allow_failed_imports=False)

optim_wrapper = dict(
    type='AutoAmpOptimWrapper',
    optimizer=dict(
        _delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999),
        weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0,
        custom_keys={'.gamma_': dict(decay_mult=0.0)}))
auto_scale_lr = dict(enable=False, base_batch_size=16)
