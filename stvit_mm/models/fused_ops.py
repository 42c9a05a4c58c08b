# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Fused oneDNN kernels for CPU inference, with plain-PyTorch fallbacks.

On CPU a large share of the backbone's time is not arithmetic but passes over
memory: the bias broadcast that ``addmm`` copies into its output, a separate
GELU over the 4C-wide MLP activation, a residual add, and the page faults of
every freshly allocated full-size tensor. oneDNN applies bias, GELU and a
residual add in the GEMM's (or conv's) epilogue, so those passes vanish.

The fused kernels have no autograd formula, so they are used only where no
gradient is needed, on CPU tensors in fp32 or bf16 (autocast), and never while
tracing, exporting or compiling (those see, and may fuse, the plain ops).
Everything else takes the plain path, which computes the same function.
"""
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

_enabled = True


@contextmanager
def fused_kernels(enabled: bool) -> Iterator[None]:
    """Switch the fused CPU kernels on or off within the context (for
    comparisons; they are on by default)."""
    global _enabled
    previous, _enabled = _enabled, enabled
    try:
        yield
    finally:
        _enabled = previous


def _symbolic() -> bool:
    return (torch.jit.is_tracing() or torch.compiler.is_exporting()
            or torch.compiler.is_compiling())


def compute_dtype(x: torch.Tensor) -> Optional[torch.dtype]:
    """The dtype a fused kernel should run ``x`` in, or None when the plain
    path must run (GPU, gradients, tracing, unsupported dtype, no oneDNN)."""
    if not _enabled or x.device.type != 'cpu' or _symbolic():
        return None
    if torch.is_grad_enabled() and x.requires_grad:
        return None
    if not (torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled):
        return None
    dtype = (torch.get_autocast_dtype('cpu')
             if torch.is_autocast_enabled('cpu') else x.dtype)
    if dtype == torch.float32:
        return dtype
    if dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return dtype
    return None


def _no_grad_needed(*params: Optional[torch.Tensor]) -> bool:
    return not torch.is_grad_enabled() or not any(
        p is not None and p.requires_grad for p in params)


def linear(x: torch.Tensor, weight: torch.Tensor,
           bias: Optional[torch.Tensor], gelu: bool = False,
           residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``residual + act(x @ weight.T + bias)``, act = exact GELU or identity.

    Args:
        x: (B, N, C_in). weight: (C_out, C_in). bias: (C_out,) or None.
        gelu: apply GELU (erf form, as ``nn.GELU()``).
        residual: (B, N, C_out) added after the activation; only without
            ``gelu`` (the MLP's output projection).

    Returns:
        torch.Tensor: (B, N, C_out), a fresh tensor.
    """
    assert not (gelu and residual is not None)
    dtype = compute_dtype(x)
    if dtype is not None and _no_grad_needed(weight, bias, residual):
        x, weight = x.to(dtype).contiguous(), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
        if residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(
                x, residual.to(dtype).contiguous(), weight, bias, 'add')
        return torch.ops.mkldnn._linear_pointwise(
            x, weight, bias, 'gelu' if gelu else 'none', [],
            'none' if gelu else '')
    out = F.linear(x, weight, bias)
    if gelu:
        return F.gelu(out)
    if residual is not None:
        # in place on the fresh GEMM output, whose backward does not need it
        return out.add_(residual)
    return out


def conv2d_gelu(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``gelu(conv(x))`` for a zero-padded, ungrouped ``nn.Conv2d``;
    (B, C_in, H, W) -> (B, C_out, H', W'), memory format of ``x`` kept."""
    dtype = compute_dtype(x)
    if (dtype is not None and conv.padding_mode == 'zeros'
            and not isinstance(conv.padding, str)
            and _no_grad_needed(conv.weight, conv.bias)):
        bias = None if conv.bias is None else conv.bias.to(dtype)
        return torch.ops.mkldnn._convolution_pointwise(
            x.to(dtype), conv.weight.to(dtype), bias, list(conv.padding),
            list(conv.stride), list(conv.dilation), conv.groups, 'gelu', [],
            'none')
    return F.gelu(conv(x))


def fold_batch_norm(bn: nn.BatchNorm2d, weight: torch.Tensor,
                    bias: Optional[torch.Tensor]):
    """Weight and bias of ``linear(bn(x))`` as one linear layer on ``x``,
    for a BatchNorm in eval mode (a per-channel affine map).

    Args:
        weight: (C_out, C). bias: (C_out,) or None.

    Returns:
        tuple: weight (C_out, C), bias (C_out,) of the folded layer.
    """
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    # elementwise + sum, not a matmul: autocast would run that in bf16
    folded_bias = (weight * shift).sum(1)
    if bias is not None:
        folded_bias = folded_bias + bias
    return weight * scale, folded_bias
