# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Layer-wise learning-rate decay for detectors and segmentors.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` asks the *model*
for ``get_layer_depth``; mmpretrain's ImageClassifier has one (it delegates
to its backbone), mmdet's detectors and mmseg's segmentors do not, and
mmdet's / mmseg's own decay constructors only know ConvNeXt and BEiT
parameter names. ``STViTLayerDecayOptimWrapperConstructor`` asks the
model's ``backbone`` instead, so it serves any model of the three toolboxes
whose backbone has ``get_layer_depth(param_name, prefix)`` (STViT does).

It is registered in mmengine's root OPTIM_WRAPPER_CONSTRUCTORS, which the
mmdet, mmseg and mmpretrain registries fall back to.
"""
import logging
from collections import defaultdict
from numbers import Real
from typing import List

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

# paramwise_cfg keys that mmengine 0.10's DefaultOptimWrapperConstructor
# reads; the parent ignores any other key, so a misspelt one would silently
# leave a rule off.
_MMENGINE_KEYS = frozenset({
    'custom_keys', 'bias_lr_mult', 'bias_decay_mult', 'norm_decay_mult',
    'dwconv_decay_mult', 'flat_decay_mult', 'bypass_duplicate',
    'dcn_offset_lr_mult'})
# decay exemptions applied unless the config sets the key itself
_NO_DECAY_DEFAULTS = dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                          flat_decay_mult=0.0)
# Swin-style position tables, matched by the parameter's own (last) name.
# STViT has none: its position encoding ``pos_embed`` is a depthwise conv
# module whose weight decays like every other conv weight.
POSITION_TABLES = frozenset({'absolute_pos_embed',
                             'relative_position_bias_table'})


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class STViTLayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor plus layer-wise lr decay over the
    model's backbone.

    A parameter ``backbone.<name>`` gets the learning rate
    ``lr * layer_decay_rate ** (num_layers - 1 - layer_id)``, where
    ``(layer_id, num_layers) = model.backbone.get_layer_depth(
    'backbone.<name>', 'backbone.')``. For STViT the stem is layer 0, block j
    of the whole network layer j + 1, and num_layers = blocks + 2, so the
    last block trains at ``lr * rate`` and the stem at ``lr * rate **
    (blocks + 1)``; necks and heads keep ``lr``.

    ``paramwise_cfg``:

    - ``layer_decay_rate`` (float, required): in (0, 1]; 1 is no decay.
    - every key of mmengine's DefaultOptimWrapperConstructor
      (``custom_keys``, ``norm_decay_mult``, ``bias_decay_mult``,
      ``flat_decay_mult``, ``dwconv_decay_mult``, ``bias_lr_mult``,
      ``dcn_offset_lr_mult``, ``bypass_duplicate``) with its meaning there;
      an ``lr_mult`` (custom key or bias) multiplies the decayed lr.
    - Unless set: ``norm_decay_mult``, ``bias_decay_mult`` and
      ``flat_decay_mult`` are 0 (no weight decay on BN/LN/GN weights and
      biases, on any bias, on any 1-D parameter), and Swin-style position
      tables (:data:`POSITION_TABLES`) get no weight decay unless a custom
      key matches them. These need the optimizer's ``weight_decay``; without
      it there is no decay to exempt from.

    Every parameter group also records ``layer_id`` and ``lr_scale``.

    Example::

        optim_wrapper = dict(
            constructor='STViTLayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.9))

    Raises:
        ValueError: a missing or out-of-range ``layer_decay_rate``, an unknown
            ``paramwise_cfg`` key, an optimizer without ``lr``, or (when
            called) a model without a ``backbone`` that has
            ``get_layer_depth``.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict = None):
        name = type(self).__name__
        paramwise_cfg = dict(paramwise_cfg or {})
        unknown = set(paramwise_cfg) - _MMENGINE_KEYS - {'layer_decay_rate'}
        if unknown:
            raise ValueError(
                f'{name}: unknown paramwise_cfg key(s) {sorted(unknown)}; '
                f'it takes layer_decay_rate and '
                f'{", ".join(sorted(_MMENGINE_KEYS))}')
        if 'layer_decay_rate' not in paramwise_cfg:
            raise ValueError(f'{name} needs paramwise_cfg.layer_decay_rate, '
                             'e.g. 0.9 (1.0 means no decay)')
        rate = paramwise_cfg.pop('layer_decay_rate')
        # bool is a Real too; True would pass as 1.0
        if isinstance(rate, bool) or not isinstance(rate, Real) or \
                not 0 < rate <= 1:
            raise ValueError(f'{name}: layer_decay_rate must be a number in '
                             f'(0, 1], got {rate!r}')
        self.layer_decay_rate = float(rate)
        optimizer_cfg = optim_wrapper_cfg.get('optimizer') or {}
        if optimizer_cfg.get('lr') is None:
            raise ValueError(f'{name} scales the optimizer\'s lr per layer, '
                             'so optim_wrapper.optimizer needs an lr')
        if optimizer_cfg.get('weight_decay') is not None:
            for key, value in _NO_DECAY_DEFAULTS.items():
                paramwise_cfg.setdefault(key, value)
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def add_params(self, params: List[dict], module: nn.Module,
                   prefix: str = '', **kwargs) -> None:
        """mmengine's rules for every parameter, then (on the call for the
        whole model) the backbone's layer scales and the table exemption."""
        if prefix:  # the parent's recursion into submodules
            super().add_params(params, module, prefix, **kwargs)
            return
        get_layer_depth = self._layer_depth_fn(module)
        first = len(params)
        super().add_params(params, module, prefix, **kwargs)

        names = {id(p): n for n, p in module.named_parameters()}
        custom_keys = self.paramwise_cfg.get('custom_keys', {})
        summary = defaultdict(int)
        for group in params[first:]:
            name = names[id(group['params'][0])]
            if name.startswith('backbone.'):
                layer_id, num_layers = get_layer_depth(name, 'backbone.')
                scale = self.layer_decay_rate ** (num_layers - 1 - layer_id)
            else:  # necks and heads: the full lr
                layer_id, scale = None, 1.0
            group['lr'] = group.get('lr', self.base_lr) * scale
            group['lr_scale'] = scale
            group['layer_id'] = layer_id
            if (self.base_wd is not None
                    and name.rsplit('.', 1)[-1] in POSITION_TABLES
                    and not any(key in name for key in custom_keys)):
                group['weight_decay'] = 0.0
            summary[(layer_id, scale)] += 1
        self._log_summary(summary)

    def _layer_depth_fn(self, model: nn.Module):
        """The backbone's ``get_layer_depth``, or a ValueError saying what
        is missing."""
        name = type(self).__name__
        backbone = getattr(model, 'backbone', None)
        if not isinstance(backbone, nn.Module):
            raise ValueError(
                f'{name} decays the lr over the layers of model.backbone, '
                f'but {type(model).__name__} has no backbone module')
        if not callable(getattr(backbone, 'get_layer_depth', None)):
            raise ValueError(
                f'{name}: the backbone {type(backbone).__name__} has no '
                'get_layer_depth(param_name, prefix) to give each parameter '
                'its layer (STViT has one)')
        return backbone.get_layer_depth

    def _log_summary(self, summary: dict) -> None:
        lines = [f'layer-wise lr decay {self.layer_decay_rate}, base lr '
                 f'{self.base_lr}:']
        for (layer_id, scale), count in sorted(
                summary.items(), key=lambda kv: (kv[0][0] is None,
                                                 kv[0][0] or 0)):
            where = 'outside the backbone' if layer_id is None else \
                f'backbone layer {layer_id}'
            lines.append(f'  {where}: lr x {scale:.4g} '
                         f'({count} parameter tensors)')
        print_log('\n'.join(lines), logger='current', level=logging.INFO)
