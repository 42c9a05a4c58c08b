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


def _plain_linear(x: torch.Tensor, weight: torch.Tensor,
                  bias: Optional[torch.Tensor],
                  residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """x @ weight.T + bias (+ residual) without addmm's bias-broadcast
    copy; no autograd (used inside :class:`_ConvMlpFunction`)."""
    if torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled:
        if residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(
                x.contiguous(), residual.contiguous(), weight, bias, 'add')
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight,
                                                  bias, 'none', [], '')
    out = F.linear(x, weight, bias)
    return out if residual is None else out.add_(residual)


class _ConvMlpFunction(torch.autograd.Function):
    """fc1, GELU, residual depthwise 3x3, fc2 with a hand-written backward.

    Saves x, the fc1 output z and the conv-branch sum u, and recomputes
    GELU(z) in backward instead of keeping it: 4C of the 13C values per
    pixel autograd would keep. Also avoids addmm's bias copies and does the
    residual's gradient sum in place.
    """

    @staticmethod
    def forward(ctx, x, w1, b1, conv_weight, conv_bias, w2, b2, residual,
                hw):
        height, width = hw
        batch = x.shape[0]
        z = _plain_linear(x, w1, b1)  # (B, HW, rC)
        hidden = z.shape[-1]

        def image(t):  # (B, HW, rC) -> (B, rC, H, W) channels-last view
            return t.view(batch, height, width, hidden).permute(0, 3, 1, 2)

        y = F.gelu(z)
        u = F.conv2d(image(y), conv_weight, conv_bias, 1, 1, 1, hidden)
        u = u.permute(0, 2, 3, 1).reshape(batch, height * width, hidden)
        u.add_(y)
        del y  # recomputed in backward
        out = _plain_linear(u, w2, b2, residual)
        ctx.has_residual = residual is not None
        ctx.save_for_backward(x, w1, z, conv_weight, u, w2)
        ctx.hw = hw
        ctx.has_bias = (b1 is not None, conv_bias is not None,
                        b2 is not None)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, w1, z, conv_weight, u, w2 = ctx.saved_tensors
        height, width = ctx.hw
        batch, hidden = z.shape[0], z.shape[-1]
        grad_out = grad_out.contiguous()
        g2 = grad_out.reshape(-1, grad_out.shape[-1])
        grad_w2 = g2.t() @ u.reshape(-1, hidden)
        grad_b2 = g2.sum(0) if ctx.has_bias[2] else None
        grad_u = grad_out @ w2  # (B, HW, rC)

        def image(t):
            return t.view(batch, height, width, hidden).permute(0, 3, 1, 2)

        y = F.gelu(z)
        grad_y, grad_cw, grad_cb = torch.ops.aten.convolution_backward(
            image(grad_u), image(y), conv_weight,
            [hidden] if ctx.has_bias[1] else None, [1, 1], [1, 1], [1, 1],
            False, [0, 0], hidden, [True, True, ctx.has_bias[1]])
        del y
        grad_y = grad_y.permute(0, 2, 3, 1).reshape(batch, height * width,
                                                     hidden)
        grad_z = torch.ops.aten.gelu_backward(grad_y.add_(grad_u), z)
        del grad_y, grad_u
        g1 = grad_z.reshape(-1, hidden)
        grad_w1 = g1.t() @ x.reshape(-1, x.shape[-1])
        grad_b1 = g1.sum(0) if ctx.has_bias[0] else None
        grad_x = grad_z @ w1
        grad_residual = grad_out if ctx.has_residual else None
        return (grad_x, grad_w1, grad_b1, grad_cw, grad_cb, grad_w2, grad_b2,
                grad_residual, None)


def conv_mlp_train(x: torch.Tensor, fc1: nn.Conv2d, conv: nn.Conv2d,
                   fc2: nn.Conv2d, hw,
                   residual: Optional[torch.Tensor] = None
                   ) -> Optional[torch.Tensor]:
    """``residual + mlp(x)`` with the memory-lean backward of
    :class:`_ConvMlpFunction`, or None where it does not apply (only CPU
    fp32 without autocast and outside tracing/compiling; elsewhere
    autograd's own path runs).

    Args:
        x: (B, H * W, C), NHWC pixels. hw: (H, W).
        residual: (B, H * W, C) or None.

    Returns:
        torch.Tensor: (B, H * W, C).
    """
    if (not _enabled or x.device.type != 'cpu' or x.dtype != torch.float32
            or torch.is_autocast_enabled('cpu') or _symbolic()):
        return None
    return _ConvMlpFunction.apply(x, fc1.weight.flatten(1), fc1.bias,
                                  conv.weight, conv.bias,
                                  fc2.weight.flatten(1), fc2.bias, residual,
                                  tuple(hw))
