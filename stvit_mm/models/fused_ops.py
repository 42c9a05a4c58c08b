# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Fused oneDNN kernels and a tiled MLP for the CPU, with plain-PyTorch
fallbacks.

On CPU a large share of the backbone's time is not arithmetic but passes over
memory: the bias broadcast that ``addmm`` copies into its output, a separate
GELU over the 4C-wide MLP activation, a residual add, and the page faults of
every freshly allocated full-size tensor. oneDNN applies bias, GELU and a
residual add in the GEMM's (or conv's) epilogue, so those passes vanish.

The fused kernels have no autograd formula, so they are used only where no
gradient is needed, on CPU tensors in fp32 or bf16 (autocast); training on
CPU in fp32 gets the MLP as one autograd Function with a hand-written, tiled
backward (:class:`_ConvMlpFunction`). Nothing here runs while tracing,
exporting or compiling (those see, and may fuse, the plain ops), nor on GPU.
Everything else takes the plain path, which computes the same function.

The oneDNN kernels are private torch ops (``torch.ops.mkldnn.*``): another
torch build or version may lack them or refuse an input. Each call goes
through :func:`_call_fused`, which then logs once and returns None, and the
caller runs the plain path instead.
"""
import logging
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log

_enabled = True
# private ops found missing or refusing an input: not tried again
_unusable_ops = set()


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


def symbolic() -> bool:
    """True while the shapes are symbolic (ONNX / jit tracing, torch.export,
    torch.compile): a Python ``if`` on a size would then be frozen into the
    graph (or guarded on, and recompiled for other sizes), and the fused
    kernels step aside."""
    return (torch.jit.is_tracing() or torch.compiler.is_exporting()
            or torch.compiler.is_compiling())


def compiling() -> bool:
    """True inside torch.compile (not torch.export, whose graphs keep the
    tracing forms, which every ONNX opset can express)."""
    return torch.compiler.is_compiling() and \
        not torch.compiler.is_exporting()


def _onednn_enabled() -> bool:
    return torch.backends.mkldnn.is_available() and \
        torch.backends.mkldnn.enabled


def _give_up(op_name: str, reason: str) -> None:
    _unusable_ops.add(op_name)
    print_log(f'stvit_mm: torch.ops.mkldnn.{op_name} {reason}; the plain '
              'PyTorch path runs instead (same results, slower on CPU)',
              logger='current', level=logging.WARNING)


def _fused_op(op_name: str):
    """``torch.ops.mkldnn.<op_name>`` (``name.overload`` allowed), or None
    when this torch build has no such op or it refused an input before."""
    if op_name in _unusable_ops:
        return None
    op = torch.ops.mkldnn
    try:
        for part in op_name.split('.'):
            op = getattr(op, part)
    except (AttributeError, RuntimeError):  # RuntimeError: unknown overload
        _give_up(op_name, 'is not in this torch build')
        return None
    return op


def _call_fused(op_name: str, *args) -> Optional[torch.Tensor]:
    """The private oneDNN op's result, or None (logged once per op) when it
    is missing or raises; the caller then runs the plain path, which also
    reports any error that lies in the input itself."""
    op = _fused_op(op_name)
    if op is None:
        return None
    try:
        return op(*args)
    except RuntimeError as error:
        _give_up(op_name, f'refused an input ({str(error).splitlines()[0]})')
        return None


def _bf16_kernels_supported() -> bool:
    return bool(_call_fused('_is_mkldnn_bf16_supported'))


def compute_dtype(x: torch.Tensor) -> Optional[torch.dtype]:
    """The dtype a fused kernel should run ``x`` in, or None when the plain
    path must run (GPU, gradients, tracing, unsupported dtype, no oneDNN)."""
    if not _enabled or x.device.type != 'cpu' or symbolic():
        return None
    if torch.is_grad_enabled() and x.requires_grad:
        return None
    if not _onednn_enabled():
        return None
    dtype = (torch.get_autocast_dtype('cpu')
             if torch.is_autocast_enabled('cpu') else x.dtype)
    if dtype == torch.float32:
        return dtype
    if dtype == torch.bfloat16 and _bf16_kernels_supported():
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
        xd, wd = x.to(dtype).contiguous(), weight.to(dtype)
        bd = None if bias is None else bias.to(dtype)
        if residual is not None:
            out = _call_fused('_linear_pointwise.binary', xd,
                              residual.to(dtype).contiguous(), wd, bd, 'add')
        else:
            out = _call_fused('_linear_pointwise', xd, wd, bd,
                              'gelu' if gelu else 'none', [],
                              'none' if gelu else '')
        if out is not None:
            return out
    out = F.linear(x, weight, bias)
    if gelu:
        return F.gelu(out)
    if residual is not None:
        # in place on the fresh GEMM output, whose backward does not need it
        return out.add_(residual)
    return out


def conv2d_gelu(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``gelu(conv(x))`` for a zero-padded ``nn.Conv2d``;
    (B, C_in, H, W) -> (B, C_out, H', W'), memory format of ``x`` kept."""
    dtype = compute_dtype(x)
    if (dtype is not None and conv.padding_mode == 'zeros'
            and not isinstance(conv.padding, str)
            and _no_grad_needed(conv.weight, conv.bias)):
        bias = None if conv.bias is None else conv.bias.to(dtype)
        out = _call_fused(
            '_convolution_pointwise', x.to(dtype), conv.weight.to(dtype),
            bias, list(conv.padding), list(conv.stride), list(conv.dilation),
            conv.groups, 'gelu', [], 'none')
        if out is not None:
            return out
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
    if _onednn_enabled():
        if residual is not None:
            out = _call_fused('_linear_pointwise.binary', x.contiguous(),
                              residual.contiguous(), weight, bias, 'add')
        else:
            out = _call_fused('_linear_pointwise', x.contiguous(), weight,
                              bias, 'none', [], '')
        if out is not None:
            return out
    out = F.linear(x, weight, bias)
    return out if residual is None else out.add_(residual)


# Bytes of hidden activation per MLP tile: well inside L3.
MLP_TILE_BYTES = 4 << 20
# From this width up the MLP GEMMs are compute-bound (measured: tiling sped
# C = 64 and 128 up 2x and 1.6x, and slowed C = 320 down): one tile.
MLP_TILE_MAX_CHANNELS = 256


def mlp_tile_bytes(channels: int) -> int:
    """Hidden-activation bytes per tile for an MLP over ``channels``."""
    return MLP_TILE_BYTES if channels < MLP_TILE_MAX_CHANNELS else 1 << 62


def mlp_tiles(batch: int, height: int, width: int, hidden: int,
              itemsize: int, tile_bytes: int):
    """Split a (B, H, W, hidden) activation into tiles of about
    ``tile_bytes``: groups of whole images, or bands of rows of one image.

    Yields:
        tuple[slice, slice, slice]: images, rows, and the rows widened by one
        neighbouring row each side where there is one (the halo a 3x3 conv
        needs to produce ``rows`` exactly).
    """
    whole = slice(0, height)
    image_bytes = height * width * hidden * itemsize
    if batch * image_bytes <= tile_bytes:
        yield slice(0, batch), whole, whole
    elif image_bytes <= tile_bytes:
        per_tile = tile_bytes // image_bytes
        for start in range(0, batch, per_tile):
            yield slice(start, min(batch, start + per_tile)), whole, whole
    else:
        band = max(1, tile_bytes // (width * hidden * itemsize))
        for b in range(batch):
            for start in range(0, height, band):
                rows = slice(start, min(height, start + band))
                halo = slice(max(0, start - 1), min(height, rows.stop + 1))
                yield slice(b, b + 1), rows, halo


def _pad_rows(t: torch.Tensor, rows: slice, halo: slice):
    """An NHWC tile spanning ``halo`` rows, and the vertical conv padding,
    such that a 3x3 conv over it yields exactly ``rows``: zero rows stand in
    for missing neighbours (image borders); an uneven pair is padded here,
    an even one left to the conv."""
    top = 1 - (rows.start - halo.start)  # 1: no real row above
    bottom = 1 - (halo.stop - rows.stop)
    if top != bottom:
        return F.pad(t, (0, 0, 0, 0, top, bottom)), 0
    return t, top


def _dw3x3_rows(t: torch.Tensor, weight: torch.Tensor, rows: slice,
                halo: slice) -> torch.Tensor:
    """Depthwise 3x3 correlation of an NHWC tile spanning ``halo`` rows,
    evaluated on ``rows`` only (see :func:`_pad_rows`).
    (n, halo rows, W, R) -> (n, rows, W, R)."""
    t, top = _pad_rows(t, rows, halo)
    out = F.conv2d(t.permute(0, 3, 1, 2), weight, None, 1, (top, 1), 1,
                   weight.shape[0])
    return out.permute(0, 2, 3, 1)


def _dw3x3_weight_grad(grad: torch.Tensor, t: torch.Tensor,
                       weight: torch.Tensor, rows: slice, halo: slice):
    """Weight and bias gradients of :func:`_dw3x3_rows` for output gradient
    ``grad`` (n, rows, W, R) and input tile ``t`` (n, halo rows, W, R)."""
    t, top = _pad_rows(t, rows, halo)
    channels = weight.shape[0]
    _, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
        grad.permute(0, 3, 1, 2), t.permute(0, 3, 1, 2), weight, [channels],
        [1, 1], [top, 1], [1, 1], False, [0, 0], channels,
        [False, True, True])
    return grad_weight, grad_bias


class _ConvMlpFunction(torch.autograd.Function):
    """``residual + fc2(u)``, ``u = y + dw3x3(y)``, ``y = GELU(fc1(x))``,
    with a hand-written backward, on NHWC (B, H, W, C) tensors.

    Keeps x, z = fc1(x) and u for backward, not y (recomputed from z): 4C of
    the 13C values per pixel autograd would keep. Past the fc1 GEMM, forward
    and backward run tile by tile (:func:`mlp_tiles`), so that y, the conv
    output and the hidden gradients live in cache, not in fresh full-size
    tensors; the weight gradients are summed over tiles.
    """

    @staticmethod
    def forward(ctx, x, w1, b1, conv_weight, conv_bias, w2, b2, residual,
                tile_bytes):
        batch, height, width, channels = x.shape
        z = _plain_linear(x.reshape(batch, -1, channels), w1, b1)
        hidden = z.shape[-1]
        z = z.view(batch, height, width, hidden)
        u = torch.empty_like(z)
        out = x.new_empty((batch, height, width, w2.shape[0]))
        tiles = list(mlp_tiles(batch, height, width, hidden, x.element_size(),
                               tile_bytes))
        for images, rows, halo in tiles:
            y = F.gelu(z[images, halo])
            inner = slice(rows.start - halo.start, rows.stop - halo.start)
            conv = _dw3x3_rows(y, conv_weight, rows, halo)
            if conv_bias is not None:
                conv.add_(conv_bias)
            torch.add(conv, y[:, inner], out=u[images, rows])
            n = conv.shape[0]
            res = None if residual is None else \
                residual[images, rows].reshape(n, -1, residual.shape[-1])
            out[images, rows] = _plain_linear(
                u[images, rows].reshape(n, -1, hidden), w2, b2, res).view(
                    n, rows.stop - rows.start, width, -1)
        ctx.save_for_backward(x, w1, z, conv_weight, u, w2)
        ctx.tiles = tiles
        ctx.has_bias = (b1 is not None, conv_bias is not None,
                        b2 is not None)
        ctx.has_residual = residual is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, w1, z, conv_weight, u, w2 = ctx.saved_tensors
        batch, height, width, channels = x.shape
        hidden = z.shape[-1]
        grad_out = grad_out.contiguous()
        g2 = grad_out.view(-1, grad_out.shape[-1])
        grad_w2 = g2.t() @ u.view(-1, hidden)
        grad_b2 = g2.sum(0) if ctx.has_bias[2] else None
        flipped = conv_weight.flip(-1, -2)  # correlation's adjoint
        grad_x = torch.empty_like(x)
        grad_w1 = torch.zeros_like(w1)
        grad_b1 = w1.new_zeros(hidden)
        grad_cw = torch.zeros_like(conv_weight)
        grad_cb = w1.new_zeros(hidden)
        for images, rows, halo in ctx.tiles:
            n, n_rows = images.stop - images.start, rows.stop - rows.start
            inner = slice(rows.start - halo.start, rows.stop - halo.start)
            grad_u = grad_out[images, halo] @ w2  # (n, halo rows, W, R)
            y = F.gelu(z[images, halo])
            grad_y = _dw3x3_rows(grad_u, flipped, rows, halo)
            gw, gb = _dw3x3_weight_grad(grad_u[:, inner], y, conv_weight,
                                        rows, halo)
            grad_cw += gw
            grad_cb += gb
            del y
            grad_y += grad_u[:, inner]
            grad_z = torch.ops.aten.gelu_backward(grad_y, z[images, rows])
            grad_z = grad_z.reshape(-1, hidden)
            grad_w1.addmm_(grad_z.t(), x[images, rows].reshape(-1, channels))
            grad_b1 += grad_z.sum(0)
            grad_x[images, rows] = (grad_z @ w1).view(n, n_rows, width,
                                                      channels)
        grad_residual = grad_out if ctx.has_residual else None
        return (grad_x, grad_w1, grad_b1 if ctx.has_bias[0] else None,
                grad_cw, grad_cb if ctx.has_bias[1] else None, grad_w2,
                grad_b2, grad_residual, None)


def conv_mlp_train(x: torch.Tensor, fc1: nn.Conv2d, conv: nn.Conv2d,
                   fc2: nn.Conv2d, residual: Optional[torch.Tensor] = None
                   ) -> Optional[torch.Tensor]:
    """``residual + mlp(x)`` with the tiled, memory-lean backward of
    :class:`_ConvMlpFunction`, or None where it does not apply (only CPU
    fp32 without autocast and outside tracing/compiling; elsewhere
    autograd's own path runs).

    Args:
        x: (B, H, W, C) NHWC pixels. residual: (B, H, W, C_out) or None.

    Returns:
        torch.Tensor: (B, H, W, C_out).
    """
    if (not _enabled or x.device.type != 'cpu' or x.dtype != torch.float32
            or torch.is_autocast_enabled('cpu') or symbolic()):
        return None
    return _ConvMlpFunction.apply(
        x, fc1.weight.flatten(1), fc1.bias, conv.weight, conv.bias,
        fc2.weight.flatten(1), fc2.bias, residual,
        mlp_tile_bytes(x.shape[-1]))


def conv_mlp_inference(x: torch.Tensor, norm: nn.BatchNorm2d, fc1: nn.Conv2d,
                       conv: nn.Conv2d, fc2: nn.Conv2d,
                       scale: Optional[torch.Tensor]) -> torch.Tensor:
    """``x + scale * mlp(norm(x))``, the block's MLP branch with its
    residual, for inference with ``norm`` in eval mode; ``mlp`` is fc1,
    GELU, ``u + conv(u)`` (depthwise 3x3) and fc2, as ``ConvMlp``.

    The BatchNorm is folded into fc1 and the layer scale into fc2, so fc1 +
    GELU and fc2 + residual add each run as one fused kernel. The rC-wide
    hidden activation is produced and consumed tile by tile (groups of
    images, or bands of rows with a one-row halo for the 3x3 conv), so it
    stays in cache instead of making four passes over main memory; the same
    function as the plain path.

    Args:
        x: (B, C, H, W), channels-last memory. scale: (1, C, 1, 1) or None.

    Returns:
        torch.Tensor: (B, C, H, W), channels-last memory.
    """
    batch, channels, height, width = x.shape
    hidden = fc1.out_channels
    w1, b1 = fold_batch_norm(norm, fc1.weight.flatten(1), fc1.bias)
    w2, b2 = fc2.weight.flatten(1), fc2.bias
    if scale is not None:
        scale = scale.flatten()
        w2, b2 = w2 * scale[:, None], b2 * scale
    x = x.permute(0, 2, 3, 1)  # NHWC view, contiguous

    def run(images: slice, rows: slice, halo: slice) -> torch.Tensor:
        """(n, rows, W, C): the branch on ``rows`` of ``images``; ``halo``
        adds up to one neighbouring row each side for the 3x3 conv."""
        tile = x[images, halo]
        n, tile_rows = tile.shape[0], tile.shape[1]
        y = linear(tile.reshape(n, tile_rows * width, channels), w1, b1,
                   gelu=True)
        y = y.view(n, tile_rows, width, hidden)
        # the conv pads with zeros; halo rows supply the real neighbours
        # and the rows computed from padding are dropped
        inner = slice(rows.start - halo.start, rows.stop - halo.start)
        out = conv(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        y = out[:, inner].add_(y[:, inner])
        n_rows = rows.stop - rows.start
        res = x[images, rows].reshape(n, n_rows * width, channels)
        out = linear(y.reshape(n, n_rows * width, hidden), w2, b2,
                     residual=res)
        return out.view(n, n_rows, width, channels)

    tiles = list(mlp_tiles(batch, height, width, hidden, x.element_size(),
                           mlp_tile_bytes(channels)))
    if len(tiles) == 1:
        return run(*tiles[0]).permute(0, 3, 1, 2)
    out = torch.empty_like(x)
    for images, rows, halo in tiles:
        out[images, rows] = run(images, rows, halo)
    return out.permute(0, 3, 1, 2)
