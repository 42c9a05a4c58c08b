# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Official STViT checkpoints <-> the one mm format used by every task.

The mm format is ``{'state_dict': {'backbone.*', 'neck.*', 'head.*'}}`` of
tensors only: it initialises an mmpretrain classifier (``load_from``) and the
backbone of a detector or segmentor (``init_cfg=dict(type='Pretrained',
checkpoint=..., prefix='backbone.')``).
"""
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Mapping, Optional

import torch
import torch.nn as nn
from mmengine.logging import MMLogger, print_log
from mmengine.runner.checkpoint import CheckpointLoader

# The official code stores the identity kernels of its unfold/fold convs as
# frozen parameters; they are constants, not weights.
_CONSTANT_KEY = re.compile(r'\.attn\.(unfold|fold)\.weights$')
_BACKBONE_KEY = re.compile(r'^(patch_embed|layers)\.')
_MM_BACKBONE_KEY = re.compile(r'^backbone\.(patch_embed|layers)\.')
_TAIL_KEYS = (('proj.', 'neck.proj.'), ('norm.', 'neck.norm.'),
              ('head.', 'head.fc.'))


def load_checkpoint_file(filename: str, map_location='cpu') -> dict:
    """Read a checkpoint with torch's weights-only unpickler (the allow-list
    of :mod:`stvit_mm.utils.safe_globals` applies); a local file that cannot
    be read raises an error naming it and the problem
    (:mod:`stvit_mm.utils.checkpoint_file`)."""
    checkpoint = CheckpointLoader.load_checkpoint(filename,
                                                  map_location=map_location)
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'{filename} holds a {type(checkpoint).__name__}, not '
                        'a checkpoint dict')
    return checkpoint


def _has_stvit_weights(state_dict: Mapping) -> bool:
    """Official keys (patch_embed.*, layers.*) or an mm model's backbone."""
    return any(_BACKBONE_KEY.match(key) or
               _MM_BACKBONE_KEY.match(key) for key in state_dict)


def check_stvit_checkpoint(filename: str) -> None:
    """Raise a clear error unless ``filename`` is a readable checkpoint that
    holds STViT weights (official, converted, or an mmengine checkpoint of an
    STViT classifier, detector or segmentor). For entry points such as
    ``load_from`` and ``--resume``, where mmengine would otherwise load a
    foreign file with a warning about missing keys and go on from random
    weights.

    Raises:
        ValueError: the file holds no STViT weights (or no weights at all);
            the errors of :func:`load_checkpoint_file` for unreadable files.
    """
    checkpoint = load_checkpoint_file(filename)
    state_dict = pick_state_dict(checkpoint, source=filename)
    if not _has_stvit_weights(state_dict):
        raise ValueError(
            f'{filename} holds no STViT weights: expected official keys '
            '(patch_embed.*, layers.*) or an mm model\'s (backbone.'
            f'patch_embed.*, backbone.layers.*), found e.g. '
            f'{list(state_dict)[:5]}')


def pick_state_dict(checkpoint: Mapping, use_ema: bool = False,
                    source: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """The model weights of a checkpoint in any of the formats we accept:
    ``state_dict`` (mmengine), ``model`` / ``model_ema`` (official, DeiT-style)
    or a bare state dict. ``module.`` prefixes (DDP) are removed."""
    if use_ema:
        if 'model_ema' not in checkpoint:
            raise KeyError(f'{source} has no "model_ema" entry; its keys are '
                           f'{sorted(checkpoint)[:10]}')
        state_dict = checkpoint['model_ema']
    elif 'state_dict' in checkpoint:
        state_dict = checkpoint['state_dict']
    elif 'model' in checkpoint:
        state_dict = checkpoint['model']
    elif 'model_ema' in checkpoint:
        state_dict = checkpoint['model_ema']
    else:
        state_dict = checkpoint
    tensors = OrderedDict()
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor):
            tensors[re.sub(r'^(module\.)+', '', key)] = value
    if not tensors:
        raise ValueError(f'{source} holds no tensors under "state_dict", '
                         f'"model", "model_ema" or at the top level; its keys'
                         f' are {sorted(checkpoint)[:10]}')
    return tensors


def is_official_state_dict(state_dict: Mapping) -> bool:
    return any(_BACKBONE_KEY.match(key) for key in state_dict)


def official_to_mm(state_dict: Mapping) -> Dict[str, torch.Tensor]:
    """Rename official keys to ``backbone.*``, ``neck.*`` (the 1x1 conv + BN
    tail) and ``head.fc.*``; drop the constant unfold/fold kernels.

    Raises:
        KeyError: on keys that belong to no part of an STViT classifier.
    """
    converted, unknown = OrderedDict(), []
    for key, value in state_dict.items():
        if _CONSTANT_KEY.search(key):
            continue
        if _BACKBONE_KEY.match(key):
            converted['backbone.' + key] = value
            continue
        for old, new in _TAIL_KEYS:
            if key.startswith(old):
                converted[new + key[len(old):]] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f'{len(unknown)} keys are not part of an official STViT'
                       f' checkpoint: {unknown[:10]}')
    if not any(key.startswith('backbone.') for key in converted):
        raise ValueError('no STViT backbone weights (patch_embed.*, layers.*)'
                         ' found in the state dict')
    return converted


_MM_PARTS = ('backbone.', 'neck.', 'head.')


def to_mm_format(state_dict: Mapping,
                 source: str = 'state dict') -> Dict[str, torch.Tensor]:
    """The one mm format from an official state dict (renamed) or from an
    mmengine checkpoint of an STViT classifier, detector or segmentor (its
    ``backbone.*``, ``neck.*`` and ``head.*`` tensors kept as they are; the
    rest, e.g. a detector's ``rpn_head.*``, dropped).

    Raises:
        ValueError: when the state dict holds no STViT backbone weights.
    """
    if is_official_state_dict(state_dict):
        return official_to_mm(state_dict)
    converted = OrderedDict((key, value) for key, value in state_dict.items()
                            if key.startswith(_MM_PARTS))
    # backbone.* alone could be any model's (e.g. a ResNet's backbone.conv1)
    if not any(_MM_BACKBONE_KEY.match(key) for key in converted):
        raise ValueError(
            f'{source} holds no STViT backbone weights: expected official '
            'keys (patch_embed.*, layers.*) or mm keys (backbone.patch_embed.*'
            f', backbone.layers.*), found e.g. {list(state_dict)[:5]}')
    return converted


def convert_checkpoint(src: str, dst: str,
                       use_ema: bool = False) -> Dict[str, torch.Tensor]:
    """Write ``src`` (official, or an mmengine checkpoint of an STViT model)
    to ``dst`` in the mm format, tensors only, and return its state dict."""
    checkpoint = load_checkpoint_file(src)
    state_dict = to_mm_format(
        pick_state_dict(checkpoint, use_ema=use_ema, source=src), source=src)
    state_dict = OrderedDict(
        (key, value.contiguous().clone()) for key, value in state_dict.items())
    dst_dir = osp.dirname(osp.abspath(dst))
    os.makedirs(dst_dir, exist_ok=True)
    torch.save({'state_dict': state_dict}, dst)
    return state_dict


def load_pretrained_backbone(module: nn.Module, filename: str,
                             prefix: Optional[str] = 'backbone.',
                             map_location='cpu') -> None:
    """Load backbone weights from an official or a converted file.

    The prefix selects the backbone in mm-format files (a converted file or a
    whole detector/classifier checkpoint); official files are recognised by
    their keys and converted on the fly.

    Raises:
        ValueError: when nothing in the file matches the backbone.
        RuntimeError: on shape mismatches (from ``load_state_dict``).
    """
    logger = MMLogger.get_current_instance()
    checkpoint = load_checkpoint_file(filename, map_location)
    state_dict = pick_state_dict(checkpoint, source=filename)
    if is_official_state_dict(state_dict):
        state_dict = official_to_mm(state_dict)
        prefix = 'backbone.'
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state_dict = {key[len(prefix):]: value
                      for key, value in state_dict.items()
                      if key.startswith(prefix)}
    own = module.state_dict()
    matched = [key for key in state_dict if key in own]
    if not matched:
        raise ValueError(
            f'None of the weights in {filename} (prefix {prefix!r}) match '
            f'{type(module).__name__}: the file has e.g. '
            f'{list(state_dict)[:5]}, the model expects e.g. {list(own)[:5]}')
    missing, unexpected = module.load_state_dict(state_dict, strict=False)
    print_log(f'Loaded {len(matched)}/{len(own)} {type(module).__name__} '
              f'tensors from {filename}', logger=logger)
    if missing:
        print_log(f'Missing keys (left at their init): {missing}',
                  logger=logger, level=30)
    if unexpected:
        print_log(f'Unexpected keys (ignored): {unexpected}', logger=logger,
                  level=30)
