# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""STViT backbone: "Vision Transformer with Super Token Sampling" (CVPR 2023).

One class serves mmpretrain, mmdet and mmseg: it is registered in mmengine's
root MODELS registry, which every toolbox registry falls back to.

Layout: every tensor between blocks is NCHW in shape and channels-last in
memory, so that the LayerNorm, the attention projections and the 1x1 convs all
run as plain GEMMs over (pixels, channels) without transposing copies.
"""
from contextlib import contextmanager, nullcontext
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from stvit_mm.models import fused_ops
from stvit_mm.models.super_token import (multi_head_self_attention,
                                          super_token_attention)
from stvit_mm.utils.checkpoint import load_pretrained_backbone


@torch.compiler.assume_constant_result
def _fixed(module: nn.Module, name: str):
    """``getattr(module, name)`` for a float hyper-parameter (norm eps, BN
    momentum, drop-path rate), read by torch.compile as a constant.

    With ``dynamic=True`` torch.compile traces every float module attribute
    as a symbolic input, cannot keep eps and momentum symbolic inside
    batch_norm / layer_norm, and then restarts the whole capture with them
    specialised: twice the trace time (STViT-S forward + backward 171 s ->
    72 s here, benchmark.py --compile). They are fixed once the model is
    built: after changing one on a compiled model, call
    ``torch._dynamo.reset()``.
    """
    return getattr(module, name)


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose eps and momentum torch.compile sees as
    constants (see :func:`_fixed`); eager runs the parent's forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        momentum = _fixed(self, 'momentum')
        # momentum None: a cumulative average, left to the parent
        if not fused_ops.compiling() or momentum is None:
            return super().forward(x)
        update_stats = self.training and self.track_running_stats
        if update_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        # as the parent: batch statistics in training or without buffers;
        # buffers passed where they are used or updated
        use_buffers = not self.training or self.track_running_stats
        return F.batch_norm(
            x, self.running_mean if use_buffers else None,
            self.running_var if use_buffers else None, self.weight, self.bias,
            self.training or (self.running_mean is None
                              and self.running_var is None),
            momentum, _fixed(self, 'eps'))


class DropPath(nn.Module):
    """Stochastic depth per sample (identity when not training or rate 0)."""

    def __init__(self, drop_prob: float = 0.):
        super().__init__()
        self.drop_prob = float(drop_prob)

    @property
    def active(self) -> bool:
        """Whether forward drops anything (training with a rate above 0)."""
        return self.training and _fixed(self, 'drop_prob') > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return x
        keep = 1. - _fixed(self, 'drop_prob')
        mask = x.new_empty((x.shape[0], ) + (1, ) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


class ResidualDWConv(nn.Module):
    """x + depthwise 3x3 conv(x); used as conditional position embedding and
    inside the MLP. Keeps the official key name ``conv``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place on the fresh conv output (its backward does not need it):
        # saves allocating and faulting in one more full-size tensor
        return self.conv(x).add_(x)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of an NCHW tensor.

    Returns the normalised tensor as NHWC (B, H, W, C), the layout the
    attention consumes; key name ``norm`` as in the official checkpoints.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.norm
        return F.layer_norm(x.permute(0, 2, 3, 1), norm.normalized_shape,
                            norm.weight, norm.bias, _fixed(norm, 'eps'))


class ConvMlp(nn.Module):
    """1x1 conv (C -> rC), GELU, residual depthwise 3x3, 1x1 conv (rC -> C).

    Fused CPU forms of this MLP (training with a memory-lean backward,
    inference with BatchNorm and layer scale folded in) live in
    :mod:`fused_ops`; this module holds the weights and the plain form.
    """

    def __init__(self, channels: int, hidden_channels: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden_channels, 1)
        self.act = nn.GELU()
        self.conv = ResidualDWConv(hidden_channels)
        self.fc2 = nn.Conv2d(hidden_channels, channels, 1)

    def forward(self, x: torch.Tensor,
                residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W), channels-last memory in and out;
        plus ``residual`` (same shape) when given.

        The 1x1 convs run as GEMMs on the NHWC view: torch's CPU conv picks
        a slow im2col path for them (measured: 37% of the backbone's time at
        800x1344), while F.linear on contiguous NHWC is one MKL GEMM.
        """
        batch, _, height, width = x.shape

        def flat(t):  # (B, C, H, W) channels-last -> (B, HW, C), a view
            return t.permute(0, 2, 3, 1).reshape(batch, height * width, -1)

        if torch.is_grad_enabled():
            y = fused_ops.conv_mlp_train(
                x.permute(0, 2, 3, 1), self.fc1, self.conv.conv, self.fc2,
                None if residual is None else residual.permute(0, 2, 3, 1))
            if y is not None:
                return y.permute(0, 3, 1, 2)
        res = None if residual is None else flat(residual)
        # 3D (B, HW, C) inputs take torch's fused addmm path; 4D ones a
        # matmul plus copies.
        y = F.linear(flat(x), self.fc1.weight.flatten(1), self.fc1.bias)
        y = self.act(y).view(batch, height, width, -1).permute(0, 3, 1, 2)
        y = F.linear(flat(self.conv(y)), self.fc2.weight.flatten(1),
                     self.fc2.bias)
        if res is not None:
            y = y.add_(res)  # in place: the GEMM output is fresh
        return y.view(batch, height, width, -1).permute(0, 3, 1, 2)


class TokenMixer(nn.Module):
    """Multi-head self-attention whose projections are stored as 1x1 convs
    (the official ``stoken_refine`` keys) but run as linear layers on NHWC."""

    def __init__(self, channels: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if channels % num_heads != 0:
            raise ValueError(f'channels ({channels}) must be divisible by '
                             f'num_heads ({num_heads})')
        self.num_heads = num_heads
        self.qkv = nn.Conv2d(channels, channels * 3, 1, bias=qkv_bias)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, ..., C) -> (B, ..., C); attention runs over all middle axes."""
        return multi_head_self_attention(tokens, self.qkv.weight, self.qkv.bias,
                                         self.proj.weight, self.proj.bias,
                                         self.num_heads)


class SuperTokenAttention(nn.Module):
    """Super Token Attention: sample super tokens from pixels, refine them with
    self-attention and map them back (plain MHSA when the stoken size is 1x1).

    Args:
        channels (int): C.
        num_heads (int): heads of the super-token self-attention.
        stoken_size (tuple[int, int]): (h, w) pixels per super token.
        n_iter (int): association iterations.
        qkv_bias (bool): bias of the qkv projection.
    """

    def __init__(self, channels: int, num_heads: int,
                 stoken_size: Tuple[int, int], n_iter: int = 1,
                 qkv_bias: bool = True):
        super().__init__()
        self.stoken_size = tuple(stoken_size)
        self.n_iter = n_iter
        self.stoken_refine = TokenMixer(channels, num_heads, qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        if self.stoken_size == (1, 1):
            return self.stoken_refine(x)
        return super_token_attention(x, self.stoken_size, self.n_iter,
                                     self.stoken_refine)

    def extra_repr(self) -> str:
        return f'stoken_size={self.stoken_size}, n_iter={self.n_iter}'


class STViTBlock(nn.Module):
    """Residual DW-conv position embedding, STA and conv MLP.

    Key names follow the official ``StokenAttentionLayer`` so checkpoints
    convert by renaming prefixes only.
    """

    def __init__(self, channels: int, num_heads: int,
                 stoken_size: Tuple[int, int], n_iter: int, mlp_ratio: float,
                 qkv_bias: bool, drop_path: float,
                 layer_scale_init_value: float):
        super().__init__()
        self.pos_embed = ResidualDWConv(channels)
        self.norm1 = ChannelLayerNorm(channels)
        self.attn = SuperTokenAttention(channels, num_heads, stoken_size,
                                        n_iter, qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = BatchNorm2d(channels)
        self.mlp2 = ConvMlp(channels, int(channels * mlp_ratio))
        self.layer_scale = layer_scale_init_value > 0
        if self.layer_scale:
            self.gamma_1 = nn.Parameter(
                torch.full((1, channels, 1, 1), float(layer_scale_init_value)))
            self.gamma_2 = nn.Parameter(
                torch.full((1, channels, 1, 1), float(layer_scale_init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        x = self.pos_embed(x)
        # Residual adds go in place into the branch output, a fresh tensor
        # that no backward formula needs (autograd's version check would
        # raise otherwise).
        attn = self.attn(self.norm1(x)).permute(0, 3, 1, 2)
        if self.layer_scale:
            attn = self.gamma_1 * attn
        x = self.drop_path(attn).add_(x)
        if self._inference_mlp(x):
            return fused_ops.conv_mlp_inference(
                x, self.norm2, self.mlp2.fc1, self.mlp2.conv.conv,
                self.mlp2.fc2, self.gamma_2 if self.layer_scale else None)
        if not self.layer_scale and not self.drop_path.active:
            return self.mlp2(self.norm2(x), residual=x)
        mlp = self.mlp2(self.norm2(x))
        if self.layer_scale:
            mlp = self.gamma_2 * mlp
        return self.drop_path(mlp).add_(x)

    def _inference_mlp(self, x: torch.Tensor) -> bool:
        """Whether the MLP branch can take its fused inference form: no
        gradients, BatchNorm on running statistics, no stochastic depth."""
        return (fused_ops.compute_dtype(x) is not None
                and not self.norm2.training
                and self.norm2.track_running_stats and self.norm2.affine
                and not self.drop_path.active
                and not (torch.is_grad_enabled() and any(
                    p.requires_grad for p in self.parameters())))


class ConvStem(nn.Sequential):
    """Four (3x3 conv, GELU, BatchNorm) triples, strides 2, 1, 2, 1; a
    Sequential so that the official keys ``proj.<i>.*`` load unchanged.
    Each conv + GELU runs as one fused kernel in CPU inference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C, H / 4, W / 4) (rounded up)."""
        for i in range(0, len(self), 3):
            x = self[i + 2](fused_ops.conv2d_gelu(self[i], x))
        return x


@contextmanager
def _frozen_bn_statistics(module: nn.Module):
    """During activation-checkpoint recomputation the blocks run forward a
    second time; keep BatchNorm running statistics from being updated twice.
    The buffers are restored rather than momentum set to 0: under
    torch.compile momentum is a constant of the graph (see :func:`_fixed`)."""
    saved = []
    for m in module.modules():
        if isinstance(m, _BatchNorm) and m.training and m.track_running_stats:
            buffers = (m.running_mean, m.running_var, m.num_batches_tracked)
            saved.append((buffers, [b.clone() for b in buffers]))
    try:
        yield
    finally:
        for buffers, copies in saved:
            for buffer, copy in zip(buffers, copies):
                buffer.copy_(copy)


class STViTStage(nn.Module):
    """``depth`` blocks, then (except for the last stage) a stride-2 conv + BN
    downsample. The stage output is taken before the downsample."""

    def __init__(self, channels: int, out_channels: Optional[int], depth: int,
                 drop_paths: Sequence[float], **block_kwargs):
        super().__init__()
        self.blocks = nn.ModuleList([
            STViTBlock(channels, drop_path=drop_paths[j], **block_kwargs)
            for j in range(depth)
        ])
        if out_channels is not None:
            self.downsample = nn.Module()
            self.downsample.proj = nn.Sequential(
                nn.Conv2d(channels, out_channels, 3, 2, 1),
                BatchNorm2d(out_channels))
        else:
            self.downsample = None


@MODELS.register_module()
class STViT(BaseModule):
    """STViT backbone.

    "Vision Transformer with Super Token Sampling", Huang et al., CVPR 2023
    (https://arxiv.org/abs/2211.11167).

    Args:
        arch (str | dict): 's', 'b', 'l' (or 'small', 'base', 'large'), or a
            dict with ``embed_dims``, ``depths``, ``num_heads`` (4 entries
            each) and optionally ``layer_scale_init_values`` (4 entries,
            0 = off).
        in_channels (int): input channels. Defaults to 3.
        stoken_size (Sequence): super-token size per stage, each an int or an
            (h, w) pair; 1 means global self-attention. Defaults to
            (8, 4, 1, 1), the ImageNet setting; dense prediction uses
            (16, 8, 2, 1).
        n_iter (int | Sequence[int]): association iterations per stage.
        mlp_ratio (float): MLP hidden width over C. Defaults to 4.
        qkv_bias (bool): Defaults to True.
        drop_path_rate (float): stochastic depth, rising linearly over blocks.
        out_indices (int | Sequence[int]): stages whose outputs are returned
            (negative counts from the end). Defaults to -1 (last stage).
        frozen_stages (int): -1 freezes nothing, 0 the stem, k > 0 the stem
            and the first k stages (with their downsample). Defaults to -1.
        norm_eval (bool): keep every BatchNorm in eval mode while training.
        with_cp (bool): activation checkpointing per block.
        init_cfg (dict | list[dict], optional): mmengine init config, e.g.
            ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')``.

    Shapes:
        input (B, in_channels, H, W) -> tuple of (B, C_i, ceil(H / s_i),
        ceil(W / s_i)) for the stages in ``out_indices``, s_i = 4, 8, 16, 32.
    """

    arch_zoo: Dict[str, dict] = {
        **dict.fromkeys(['s', 'small'], dict(
            embed_dims=[64, 128, 320, 512], depths=[3, 5, 9, 3],
            num_heads=[1, 2, 5, 8], layer_scale_init_values=[0, 0, 0, 0])),
        **dict.fromkeys(['b', 'base'], dict(
            embed_dims=[96, 192, 384, 512], depths=[4, 6, 14, 6],
            num_heads=[2, 3, 6, 8],
            layer_scale_init_values=[0, 0, 1e-6, 1e-6])),
        **dict.fromkeys(['l', 'large'], dict(
            embed_dims=[96, 192, 448, 640], depths=[4, 7, 19, 8],
            num_heads=[2, 3, 7, 10],
            layer_scale_init_values=[0, 0, 1e-6, 1e-6])),
    }
    num_stages = 4

    def __init__(self,
                 arch: Union[str, dict] = 's',
                 in_channels: int = 3,
                 stoken_size: Sequence = (8, 4, 1, 1),
                 n_iter: Union[int, Sequence[int]] = 1,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 drop_path_rate: float = 0.,
                 out_indices: Union[int, Sequence[int]] = -1,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg=init_cfg)
        arch = self._parse_arch(arch)
        self.embed_dims: List[int] = list(arch['embed_dims'])
        self.depths: List[int] = list(arch['depths'])
        self.num_heads: List[int] = list(arch['num_heads'])
        layer_scales = list(arch.get('layer_scale_init_values', [0] * 4))
        self.in_channels = in_channels
        self.stoken_size = self._per_stage_sizes(stoken_size)
        self.n_iter = self._per_stage_ints(n_iter, 'n_iter')
        self.out_indices = self._parse_out_indices(out_indices)
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages must be in [-1, {self.num_stages}]'
                             f', got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp

        stem_dims = (in_channels, self.embed_dims[0] // 2,
                     self.embed_dims[0] // 2, self.embed_dims[0],
                     self.embed_dims[0])
        stem = []
        for i, stride in enumerate((2, 1, 2, 1)):
            stem += [nn.Conv2d(stem_dims[i], stem_dims[i + 1], 3, stride, 1),
                     nn.GELU(), BatchNorm2d(stem_dims[i + 1])]
        self.patch_embed = nn.Module()
        self.patch_embed.proj = ConvStem(*stem)

        total_depth = sum(self.depths)
        rates = torch.linspace(0, drop_path_rate, total_depth).tolist()
        self.layers = nn.ModuleList()
        start = 0
        for i in range(self.num_stages):
            self.layers.append(STViTStage(
                channels=self.embed_dims[i],
                out_channels=(self.embed_dims[i + 1]
                              if i < self.num_stages - 1 else None),
                depth=self.depths[i],
                drop_paths=rates[start:start + self.depths[i]],
                num_heads=self.num_heads[i],
                stoken_size=self.stoken_size[i],
                n_iter=self.n_iter[i],
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                layer_scale_init_value=layer_scales[i]))
            start += self.depths[i]
        self._freeze_stages()

    # ----------------------------------------------------------- arguments
    def _parse_arch(self, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in self.arch_zoo:
                raise ValueError(f'Unknown STViT arch {arch!r}; choose one of '
                                 f'{sorted(self.arch_zoo)} or pass a dict')
            return self.arch_zoo[key]
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch)}')
        required = {'embed_dims', 'depths', 'num_heads'}
        allowed = required | {'layer_scale_init_values'}
        missing, unknown = required - set(arch), set(arch) - allowed
        if missing or unknown:
            raise ValueError(f'Invalid STViT arch dict: missing keys '
                             f'{sorted(missing)}, unknown keys '
                             f'{sorted(unknown)}; expected {sorted(allowed)}')
        for key, value in arch.items():
            if len(value) != self.num_stages:
                raise ValueError(f'arch[{key!r}] needs {self.num_stages} '
                                 f'entries (one per stage), got {value}')
        return arch

    def _per_stage_sizes(self, sizes: Sequence) -> List[Tuple[int, int]]:
        if isinstance(sizes, int) or len(sizes) != self.num_stages:
            raise ValueError(f'stoken_size needs {self.num_stages} entries '
                             f'(one per stage), got {sizes}')
        parsed = []
        for size in sizes:
            pair = (size, size) if isinstance(size, int) else tuple(size)
            if len(pair) != 2 or not all(
                    isinstance(v, int) and v >= 1 for v in pair):
                raise ValueError('each stoken_size entry must be a positive '
                                 f'int or an (h, w) pair, got {size!r}')
            parsed.append(pair)
        return parsed

    def _per_stage_ints(self, value, name: str) -> List[int]:
        values = [value] * self.num_stages if isinstance(value, int) else \
            list(value)
        if len(values) != self.num_stages or not all(
                isinstance(v, int) and v >= 1 for v in values):
            raise ValueError(f'{name} must be a positive int or '
                             f'{self.num_stages} positive ints, got {value}')
        return values

    def _parse_out_indices(self, out_indices) -> List[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        parsed = []
        for index in out_indices:
            if not -self.num_stages <= index < self.num_stages:
                raise ValueError(f'out_indices entry {index} is out of range '
                                 f'for {self.num_stages} stages')
            parsed.append(index % self.num_stages)
        return sorted(set(parsed))

    # ------------------------------------------------------------- weights
    def init_weights(self):
        """Official init (PyTorch defaults for convs and BN, LayerNorm (1, 0),
        no nn.Linear in the backbone), or a Pretrained ``init_cfg``.

        Pretrained files may be official (converted on the fly) or mm-format
        (selected by ``prefix``); a file matching nothing raises, a partial
        match is reported, instead of mmengine's silent strict=False load.
        """
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            unknown = set(cfg) - {'type', 'checkpoint', 'prefix',
                                  'map_location'}
            if unknown or 'checkpoint' not in cfg:
                raise ValueError(
                    'STViT Pretrained init_cfg takes checkpoint, prefix and '
                    f'map_location; got {sorted(cfg)}')
            load_pretrained_backbone(self, cfg['checkpoint'],
                                     prefix=cfg.get('prefix', 'backbone.'),
                                     map_location=cfg.get('map_location',
                                                          'cpu'))
            self._is_init = True
            return
        super().init_weights()

    def _freeze_stages(self):
        modules = []
        if self.frozen_stages >= 0:
            modules.append(self.patch_embed)
        modules += list(self.layers[:max(self.frozen_stages, 0)])
        for module in modules:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # ------------------------------------------------------------- forward
    def _run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Run a block, a stem or a downsample, checkpointed under with_cp
        when anything in it needs gradients."""
        # with_cp first: the parameter scan stays off the plain path
        if self.with_cp and torch.is_grad_enabled() and (
                x.requires_grad
                or any(p.requires_grad for p in block.parameters())):
            return cp.checkpoint(
                block, x, use_reentrant=False,
                context_fn=lambda: (nullcontext(),
                                    _frozen_bn_statistics(block)))
        return block(x)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, in_channels, H, W) -> tuple of stage features (see class)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x)
            raise ValueError('STViT expects a 4D (B, C, H, W) tensor, got '
                             f'{shape}')
        if x.shape[1] != self.in_channels:
            raise ValueError(f'STViT was built for {self.in_channels} input '
                             f'channels, got a tensor with {x.shape[1]} '
                             f'(shape {tuple(x.shape)})')
        x = x.contiguous(memory_format=torch.channels_last)
        # the stem's full- and half-resolution activations are a large
        # share of what training keeps for backward
        x = self._run_block(self.patch_embed.proj, x)
        outs = []
        for i, stage in enumerate(self.layers):
            for block in stage.blocks:
                x = self._run_block(block, x)
            if i in self.out_indices:
                # Blocks run channels-last; hand the necks and heads the
                # standard NCHW layout. mmcv's RoIAlign (Mask R-CNN's RoI
                # features) indexes its input as contiguous NCHW whatever
                # the strides, and read garbage from channels-last maps.
                outs.append(x.contiguous())
            if stage.downsample is not None:
                x = self._run_block(stage.downsample.proj, x)
        return tuple(outs)

    def get_layer_depth(self, param_name: str, prefix: str = ''):
        """Layer id for mmpretrain's layer-wise learning-rate decay.

        Returns:
            tuple[int, int]: (layer id, number of layers); the stem is 0,
            block j of stage i is 1 + (blocks before it), anything after the
            backbone is the last layer.
        """
        num_layers = sum(self.depths) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):]
        if name.startswith('patch_embed'):
            return 0, num_layers
        if name.startswith('layers'):
            parts = name.split('.')
            stage = int(parts[1])
            before = sum(self.depths[:stage])
            if parts[2] == 'blocks':
                return before + int(parts[3]) + 1, num_layers
            # a downsample belongs with the last block of its stage
            return before + self.depths[stage], num_layers
        return num_layers - 1, num_layers
