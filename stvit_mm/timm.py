# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""STViT in timm: ``timm.create_model('stvit_small')`` and friends.

Importing this module (``import stvit_mm`` does so when timm >= 1.0 is
installed) registers ``stvit_small``, ``stvit_base`` and ``stvit_large`` with
timm, each with two pretrained configs: ``.in1k`` (224, the default) and
``.in1k_384`` (the 384 fine-tune), which differ only in preprocessing. The
model is this package's :class:`~stvit_mm.models.STViT` backbone and
:class:`~stvit_mm.models.STViTClsNeck` tail plus a linear classifier, with
the state-dict keys of the mm format (``backbone.*``, ``neck.*``,
``head.fc.*``), so a converted mm file and a timm state dict are the same.

The official weights are not on any host timm can download from: pass the
official file, which is read with this package's checked weights-only loader
and converted on the fly::

    timm.create_model('stvit_small', pretrained=True,
                      pretrained_cfg_overlay=dict(file='stvit-small.pth'))
"""
import logging
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_

try:
    import timm
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    from timm.models import (adapt_input_conv, build_model_with_cfg,
                             generate_default_cfgs, register_model,
                             resolve_pretrained_cfg)
except ImportError as error:
    raise ImportError('stvit_mm.timm needs timm >= 1.0 (pip install -e '
                      '".[timm]"): ' + str(error)) from error

from stvit_mm.models import STViT, STViTClsNeck
from stvit_mm.utils.checkpoint import (load_checkpoint_file, pick_state_dict,
                                       to_mm_format)

if int(timm.__version__.split('.')[0]) < 1:
    raise ImportError(f'stvit_mm.timm needs timm >= 1.0, found '
                      f'{timm.__version__} (pip install -e ".[timm]")')

__all__ = ['TimmSTViT', 'stvit_small', 'stvit_base', 'stvit_large']

_logger = logging.getLogger(__name__)
_GLOBAL_POOLS = ('avg', '')


class TimmSTViT(nn.Module):
    """An STViT classifier with timm's model interface.

    Args:
        arch (str | dict): STViT arch ('s', 'b', 'l' or a dict, see STViT).
        num_classes (int): classifier outputs; 0 for none (pooled
            features). Defaults to 1000.
        in_chans (int): input channels. Defaults to 3.
        global_pool (str): 'avg' (the official tail: 1x1 conv, BN, swish,
            average pool) or '' (the same without pooling; num_classes
            must be 0).
        drop_rate (float): dropout before the classifier (0 officially).
        head_hidden_size (int): width of the 1x1 conv tail. Defaults to 1024.
        **kwargs: further STViT arguments (stoken_size, n_iter,
            drop_path_rate, mlp_ratio, qkv_bias, with_cp, ...).

    Shapes:
        forward: (B, in_chans, H, W) -> (B, num_classes); any H, W.
        forward_features: -> (B, C_3, ceil(H / 32), ceil(W / 32)).
    """

    def __init__(self, arch: Union[str, dict] = 's', num_classes: int = 1000,
                 in_chans: int = 3, global_pool: str = 'avg',
                 drop_rate: float = 0., head_hidden_size: int = 1024,
                 **kwargs):
        super().__init__()
        # every stage output, for forward_intermediates; taking them costs
        # three small layout copies next to the network itself
        self.backbone = STViT(arch, in_channels=in_chans,
                              out_indices=(0, 1, 2, 3), **kwargs)
        dims = self.backbone.embed_dims
        self.in_chans = in_chans
        self.num_features = dims[-1]
        self.head_hidden_size = head_hidden_size
        self.feature_info = [
            dict(num_chs=dim, reduction=4 * 2**i,
                 module=f'backbone.layers.{i}') for i, dim in enumerate(dims)
        ]
        self.neck = STViTClsNeck(dims[-1], head_hidden_size)
        self.head_drop = nn.Dropout(drop_rate)
        self.drop_rate = drop_rate
        self.head = nn.Module()  # holds `fc`: the mm format's head.fc.* keys
        self.reset_classifier(num_classes, global_pool)

    # ------------------------------------------------------------ classifier
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int,
                         global_pool: Optional[str] = None) -> None:
        """A new classifier with ``num_classes`` outputs (0: identity), from
        the official init (trunc-normal std 0.02, bias 0)."""
        if global_pool is not None:
            if global_pool not in _GLOBAL_POOLS:
                raise ValueError(f'STViT global_pool must be one of '
                                 f'{_GLOBAL_POOLS}, got {global_pool!r}')
            self.global_pool = global_pool
        if num_classes and not self.global_pool:
            raise ValueError("global_pool='' leaves the features unpooled: "
                             'use it with num_classes=0')
        self.num_classes = num_classes
        if num_classes > 0:
            self.head.fc = nn.Linear(self.head_hidden_size, num_classes)
            trunc_normal_(self.head.fc.weight, std=.02)
            nn.init.zeros_(self.head.fc.bias)
        else:
            self.head.fc = nn.Identity()

    # --------------------------------------------------------------- forward
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, C_3, ceil(H / 32), ceil(W / 32))."""
        return self.backbone(x)[-1]

    def forward_head(self, x: torch.Tensor,
                     pre_logits: bool = False) -> torch.Tensor:
        """(B, C_3, h, w) -> (B, num_classes), or with ``pre_logits`` the
        pooled tail (B, head_hidden_size) (unpooled (B, head_hidden_size,
        h, w) with global_pool='')."""
        if self.global_pool:
            x = self.neck((x, ))[0]
        else:
            neck = self.neck
            x = neck.act(neck.norm(neck.proj(x)))
        x = self.head_drop(x)
        return x if pre_logits else self.head.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, num_classes)."""
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
            self, x: torch.Tensor,
            indices: Optional[Union[int, Sequence[int]]] = None,
            norm: bool = False, stop_early: bool = False,
            output_fmt: str = 'NCHW', intermediates_only: bool = False
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage outputs (before each downsample), as timm's feature API
        expects.

        Args:
            indices: stages to return: None all, n the last n, or a list
                (negative counts from the end).
            norm, stop_early: accepted for the interface; STViT has no norm
                between the stages and the tail, and a model pruned by
                :meth:`prune_intermediate_layers` stops after its last stage.
            output_fmt: 'NCHW' or 'NHWC'.

        Returns:
            list of (B, C_i, ceil(H / s_i), ceil(W / s_i)), s_i = 4 * 2**i
            (permuted for NHWC); unless ``intermediates_only``, preceded by
            the last stage output.
        """
        if output_fmt not in ('NCHW', 'NHWC'):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got "
                             f'{output_fmt!r}')
        take = self._take_indices(indices)
        stages = self.backbone(x)
        intermediates = [stages[i] for i in take]
        if output_fmt == 'NHWC':
            intermediates = [t.permute(0, 2, 3, 1) for t in intermediates]
        if intermediates_only:
            return intermediates
        return stages[-1], intermediates

    def prune_intermediate_layers(
            self, indices: Union[int, Sequence[int]] = 1,
            prune_norm: bool = False, prune_head: bool = True) -> List[int]:
        """Drop the stages after the last of ``indices`` (and the tail and
        classifier with ``prune_head``); returns the absolute indices."""
        take = self._take_indices(indices)
        last = max(take)
        backbone = self.backbone
        backbone.layers = backbone.layers[:last + 1]
        backbone.layers[last].downsample = None  # feeds nothing now
        backbone.out_indices = list(range(last + 1))
        if prune_head:
            self.neck = nn.Identity()
            self.reset_classifier(0, 'avg')
        return take

    def _take_indices(self, indices) -> List[int]:
        """timm's index convention over the stages this model has."""
        count = len(self.backbone.layers)
        if indices is None:
            indices = count
        if isinstance(indices, int):
            if not 0 < indices <= count:
                raise ValueError(f'cannot take the last {indices} of {count} '
                                 'stages')
            return list(range(count - indices, count))
        take = []
        for index in indices:
            if not -count <= index < count:
                raise ValueError(f'stage index {index} is out of range for '
                                 f'{count} stages')
            take.append(index % count)
        return take

    # -------------------------------------------------------------- training
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.with_cp = enable

    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups for timm's layer-wise lr decay: the stem, then
        stages (coarse) or blocks, a downsample with the block before it
        (as STViT.get_layer_depth), the tail and classifier last."""
        if coarse:
            blocks = r'^backbone\.layers\.(\d+)'
        else:
            blocks = [(r'^backbone\.layers\.(\d+)\.blocks\.(\d+)', None),
                      (r'^backbone\.layers\.(\d+)\.downsample', (99999, ))]
        return dict(stem=r'^backbone\.patch_embed', blocks=blocks)

    def no_weight_decay(self) -> set:
        """Layer-scale gammas (4D, so timm's 1D rule misses them); the
        official recipe does not decay them."""
        return {name for name, _ in self.named_parameters()
                if '.gamma_' in name}

    # --------------------------------------------------------------- weights
    def load_pretrained(self, checkpoint_path: str) -> None:
        """Load an official STViT file, a converted mm file or a timm state
        dict of this model; timm calls this for a pretrained ``file`` (or a
        downloaded ``url``).

        The file is read by :func:`stvit_mm.utils.load_checkpoint_file`
        (weights-only, with a clear error for an empty, foreign, truncated
        or unsafe file). A classifier of another size is left at its init.

        Raises:
            ValueError: the file holds no STViT weights; RuntimeError: it
                misses backbone weights or has other shapes (another arch).
        """
        checkpoint = load_checkpoint_file(checkpoint_path)
        state_dict = pick_state_dict(checkpoint, source=checkpoint_path)
        self._load_weights(to_mm_format(state_dict, source=checkpoint_path),
                           checkpoint_path)

    def _load_weights(self, state_dict: dict, source: str) -> None:
        state_dict = dict(state_dict)
        stem = 'backbone.patch_embed.proj.0.weight'
        if stem in state_dict and state_dict[stem].shape[1] != self.in_chans:
            state_dict[stem] = adapt_input_conv(self.in_chans,
                                                state_dict[stem])
        fc = self.head.fc
        keep_fc = isinstance(fc, nn.Linear) and \
            state_dict.get('head.fc.weight', torch.empty(0)).shape == \
            fc.weight.shape
        if not keep_fc and 'head.fc.weight' in state_dict:
            _logger.info(
                f'{source}: classifier of shape '
                f'{tuple(state_dict["head.fc.weight"].shape)} not loaded '
                f'(the model has {self.num_classes} classes)')
            state_dict.pop('head.fc.weight')
            state_dict.pop('head.fc.bias', None)
        missing, unexpected = self.load_state_dict(state_dict, strict=False)
        missing_backbone = [k for k in missing if k.startswith('backbone.')]
        if missing_backbone:
            raise RuntimeError(
                f'{source} lacks {len(missing_backbone)} STViT backbone '
                f'weights, e.g. {missing_backbone[:5]}: another arch than '
                f'{self._arch_name()}, or not an STViT file?')
        missing_tail = [k for k in missing
                        if keep_fc or not k.startswith('head.fc.')]
        if missing_tail:
            _logger.warning(f'{source}: {missing_tail} not in the file, left '
                            'at their init')
        if unexpected:
            _logger.warning(f'{source}: ignored keys {unexpected[:10]}')

    def _arch_name(self) -> str:
        """The timm name of this model (from its pretrained cfg)."""
        cfg = getattr(self, 'pretrained_cfg', None) or {}
        return cfg.get('architecture') or type(self).__name__


def _filter_state_dict(state_dict: dict, model: TimmSTViT) -> dict:
    """timm's pretrained_filter_fn, for weights timm reads itself (an
    in-memory ``state_dict`` or the Hugging Face Hub): official keys become
    this model's, the unfold/fold constants go."""
    return to_mm_format(pick_state_dict(state_dict))


def _cfg(**kwargs) -> dict:
    # the official evaluation transform: bicubic resize of the shorter side
    # to 256 and a 224 center crop (at 384: resize to 384 and crop, 1.0),
    # ImageNet mean and std
    cfg = dict(
        num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7),
        crop_pct=0.875, interpolation='bicubic', mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD, first_conv='backbone.patch_embed.proj.0',
        classifier='head.fc', custom_load=True, license='mit',
        paper_ids='arXiv:2211.11167',
        paper_name='Vision Transformer with Super Token Sampling',
        origin_url='https://github.com/hhb072/STViT')
    cfg.update(kwargs)
    return cfg


default_cfgs = generate_default_cfgs({
    f'{name}.{tag}': cfg
    for name in ('stvit_small', 'stvit_base', 'stvit_large')
    for tag, cfg in (('in1k', _cfg()),
                     ('in1k_384', _cfg(input_size=(3, 384, 384),
                                       pool_size=(12, 12), crop_pct=1.0)))
})

_NO_DOWNLOAD = (
    '{name}: no pretrained weights to download. The official STViT weights '
    'are not on the Hugging Face Hub or at any URL timm knows; get the '
    'official checkpoint (https://github.com/hhb072/STViT) and pass it: '
    "timm.create_model('{name}', pretrained=True, pretrained_cfg_overlay="
    "dict(file='path/to/{name}.pth')). A file converted by "
    'tools/model_converters/official_to_mm.py works too.')


def _create_stvit(variant: str, arch: str, pretrained: bool = False,
                  **kwargs) -> nn.Module:
    overlay = dict(kwargs.pop('pretrained_cfg_overlay', None) or {})
    # timm reads a `file` or `url` with its own loader unless custom_load is
    # set (and resets it when the overlay names a source): ours checks the
    # file and converts official keys (TimmSTViT.load_pretrained)
    overlay.setdefault('custom_load', True)
    if pretrained:
        cfg = resolve_pretrained_cfg(variant, kwargs.get('pretrained_cfg'),
                                     overlay)
        if not (cfg.has_weights or cfg.state_dict is not None):
            raise RuntimeError(_NO_DOWNLOAD.format(name=variant))
    return build_model_with_cfg(
        TimmSTViT, variant, pretrained, pretrained_cfg_overlay=overlay,
        pretrained_filter_fn=_filter_state_dict,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls='getter'),
        arch=arch, **kwargs)


@register_model
def stvit_small(pretrained: bool = False, **kwargs) -> nn.Module:
    """STViT-S: 25.5M parameters, 4.4 GFLOPs at 224 (paper top-1 83.6; 85.0
    at 384)."""
    return _create_stvit('stvit_small', 's', pretrained, **kwargs)


@register_model
def stvit_base(pretrained: bool = False, **kwargs) -> nn.Module:
    """STViT-B: 51.7M parameters, 9.9 GFLOPs at 224 (paper top-1 84.8; 86.0
    at 384)."""
    return _create_stvit('stvit_base', 'b', pretrained, **kwargs)


@register_model
def stvit_large(pretrained: bool = False, **kwargs) -> nn.Module:
    """STViT-L: 95.0M parameters, 15.6 GFLOPs at 224 (paper top-1 85.3; 86.4
    at 384)."""
    return _create_stvit('stvit_large', 'l', pretrained, **kwargs)
