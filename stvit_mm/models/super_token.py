# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Super Token Attention as plain tensor functions on NHWC tensors.

The official code expresses "the 9 super tokens around a cell" (unfold) and
"sum back onto those 9 super tokens" (fold) as convolutions with fixed
identity kernels. Here both are 9 shifted views of a zero-padded super-token
grid: no parameters, no convolution, and exactly the same arithmetic,
including the zero neighbours outside the grid, which take part in the
softmax with logit 0 and whose weight is then dropped.
"""
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F

from stvit_mm.models import fused_ops

# Observer of the final association, for visualisation (see
# :func:`association_callback`); None costs one comparison per call.
_association_callback: Optional[Callable] = None


@contextmanager
def association_callback(callback: Callable) -> Iterator[None]:
    """Within the context, every :func:`super_token_attention` call hands
    its final association to ``callback(affinity, grid_size, stoken_size,
    size)``:

    - affinity: (B, hh * ww, h * w, 9), detached; entry [b, c, p, k] is the
      weight of pixel p (row-major in its h x w cell) of cell c (row-major on
      the grid) for neighbour slot k = 3 * dy + dx, i.e. the super token at
      (i + dy - 1, j + dx - 1); slots outside the grid are zero vectors.
    - grid_size: (hh, ww); stoken_size: (h, w); size: (H, W) before padding.
    """
    global _association_callback
    previous, _association_callback = _association_callback, callback
    try:
        yield
    finally:
        _association_callback = previous


def _tracing() -> bool:
    """:func:`fused_ops.symbolic`, looked up here so that a test can force
    the tracing forms of this module in eager mode."""
    return fused_ops.symbolic()


def multi_head_self_attention(tokens: torch.Tensor, qkv_weight: torch.Tensor,
                              qkv_bias, proj_weight: torch.Tensor, proj_bias,
                              num_heads: int) -> torch.Tensor:
    """Multi-head self-attention over all tokens of each sample.

    The qkv channels are laid out per head as (heads, [q, k, v], head_dim),
    the official STViT order (not timm's (3, heads, head_dim)).

    Args:
        tokens: (B, ..., C), every middle axis is a token axis.
        qkv_weight: (3C, C, 1, 1) or (3C, C). proj_weight: (C, C[, 1, 1]).

    Returns:
        torch.Tensor: (B, ..., C).
    """
    shape = tokens.shape
    batch, channels = shape[0], shape[-1]
    x = tokens.reshape(batch, -1, channels)
    num_tokens = x.shape[1]
    head_dim = channels // num_heads
    qkv = fused_ops.linear(x, qkv_weight.reshape(3 * channels, channels),
                           qkv_bias)
    qkv = qkv.view(batch, num_tokens, num_heads, 3, head_dim)
    q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)  # each (B, heads, N, d)
    if q.dtype == torch.bfloat16 and q.device.type == 'cpu' and not _tracing():
        # CPU bf16: two oneDNN GEMMs and a softmax (accumulated in fp32)
        # beat the flash kernel 1.5x (measured at 16x5x196x64)
        attn = (q * head_dim**-0.5) @ k.transpose(-1, -2)
        out = attn.softmax(-1) @ v
    else:
        out = F.scaled_dot_product_attention(q, k, v)  # scale = d ** -0.5
    out = out.transpose(1, 2).reshape(batch, num_tokens, channels)
    out = fused_ops.linear(out, proj_weight.reshape(channels, channels),
                           proj_bias)
    return out.view(shape)


def _gather_unfold(grid: torch.Tensor) -> torch.Tensor:
    """:func:`_gather` as one im2col (``F.unfold``, 3x3, zero padding 1),
    whose channel slot k = 3 * dy + dx is the same neighbour order.

    For torch.compile: one op instead of a pad, nine slices and a stack,
    each of which costs symbolic-shape reasoning when the sizes are
    dynamic (measured: most of the trace time of STViT-S).
    """
    batch, hh, ww, rest = grid.shape[0], grid.shape[1], grid.shape[2], \
        tuple(grid.shape[3:])
    columns = F.unfold(grid.reshape(batch, hh, ww, -1).permute(0, 3, 1, 2),
                       3, padding=1)  # (B, R * 9, hh * ww)
    columns = columns.view(batch, -1, 9, hh * ww).permute(0, 3, 2, 1)
    return columns.reshape((batch, hh * ww, 9) + rest)


def _scatter_fold(values: torch.Tensor, hh: int, ww: int) -> torch.Tensor:
    """:func:`_scatter` as one col2im (``F.fold``), the adjoint of
    :func:`_gather_unfold`; the same sums in another order."""
    batch, rest = values.shape[0], tuple(values.shape[3:])
    columns = values.reshape(batch, hh * ww, 9, -1).permute(0, 3, 2, 1)
    grid = F.fold(columns.reshape(batch, -1, hh * ww), (hh, ww), 3,
                  padding=1)  # (B, R, hh, ww)
    return grid.permute(0, 2, 3, 1).reshape((batch, hh * ww) + rest)


def _gather(grid: torch.Tensor) -> torch.Tensor:
    """(B, hh, ww, *rest) -> (B, hh * ww, 9, *rest), see gather_neighbours."""
    batch, hh, ww, rest = grid.shape[0], grid.shape[1], grid.shape[2], \
        tuple(grid.shape[3:])
    padded = F.pad(grid, (0, 0) * len(rest) + (1, 1, 1, 1))
    shifted = [padded[:, dy:dy + hh, dx:dx + ww]
               for dy in range(3) for dx in range(3)]
    return torch.stack(shifted, dim=3).view((batch, hh * ww, 9) + rest)


def _scatter(values: torch.Tensor, hh: int, ww: int) -> torch.Tensor:
    """(B, hh * ww, 9, *rest) -> (B, hh * ww, *rest), see
    scatter_to_neighbours."""
    batch, rest = values.shape[0], tuple(values.shape[3:])
    values = values.view((batch, hh, ww, 9) + rest)
    if _tracing():
        # In-place slice updates export as chains of ScatterND and index
        # maths (tens of thousands of ONNX nodes for STViT-S); padded copies
        # summed in the same order give bit-identical sums (x + 0 == x).
        out = None
        for k in range(9):
            dy, dx = divmod(k, 3)
            term = F.pad(values[:, :, :, k],
                         (0, 0) * len(rest) + (dx, 2 - dx, dy, 2 - dy))
            out = term if out is None else out + term
    else:
        out = values.new_zeros((batch, hh + 2, ww + 2) + rest)
        for k in range(9):
            dy, dx = divmod(k, 3)
            out[:, dy:dy + hh, dx:dx + ww] += values[:, :, :, k]
    return out[:, 1:hh + 1, 1:ww + 1].reshape((batch, hh * ww) + rest)


class _GatherNeighbours(torch.autograd.Function):
    """Gather and scatter are each other's adjoint, so each one's backward
    is the other: one pass, instead of autograd's nine zero-filled slice
    gradients (gather) or a clone per in-place slice update (scatter)."""

    @staticmethod
    def forward(ctx, grid):
        ctx.grid_size = grid.shape[1:3]
        return _gather(grid)

    @staticmethod
    def backward(ctx, grad):
        hh, ww = ctx.grid_size
        out = _scatter(grad, hh, ww)
        return out.view((out.shape[0], hh, ww) + tuple(out.shape[2:]))


class _ScatterToNeighbours(torch.autograd.Function):

    @staticmethod
    def forward(ctx, values, hh, ww):
        ctx.grid_size = (hh, ww)
        return _scatter(values, hh, ww)

    @staticmethod
    def backward(ctx, grad):
        hh, ww = ctx.grid_size
        grid = grad.view((grad.shape[0], hh, ww) + tuple(grad.shape[2:]))
        return _gather(grid), None, None


def gather_neighbours(grid: torch.Tensor) -> torch.Tensor:
    """The 3x3 neighbourhood of every cell, zeros outside the grid.

    Args:
        grid: (B, hh, ww, C) super tokens.

    Returns:
        torch.Tensor: (B, hh * ww, 9, C); slot k = 3 * dy + dx holds the
        super token at (i + dy - 1, j + dx - 1).
    """
    if fused_ops.compiling():
        return _gather_unfold(grid)
    if _tracing() or not torch.is_grad_enabled():
        return _gather(grid)
    return _GatherNeighbours.apply(grid)


def scatter_to_neighbours(values: torch.Tensor, hh: int,
                          ww: int) -> torch.Tensor:
    """Inverse of :func:`gather_neighbours`: sum slot k of every cell onto the
    super token it refers to; contributions to outside cells are dropped.

    Args:
        values: (B, hh * ww, 9, *rest).

    Returns:
        torch.Tensor: (B, hh * ww, *rest).
    """
    if fused_ops.compiling():
        return _scatter_fold(values, hh, ww)
    if _tracing() or not torch.is_grad_enabled():
        return _scatter(values, hh, ww)
    return _ScatterToNeighbours.apply(values, hh, ww)


def _float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 (float64 stays): the dtype of the association."""
    wide = torch.promote_types(t.dtype, torch.float32)
    return t if t.dtype == wide else t.to(wide)


def _autocast_off(t: torch.Tensor):
    """A context in which autocast leaves the ops on ``t``'s device alone
    (they then run in their inputs' dtype); a no-op when it is off."""
    device = t.device.type
    if torch.amp.is_autocast_available(device) and \
            torch.is_autocast_enabled(device):
        return torch.autocast(device_type=device, enabled=False)
    return nullcontext()


def _weighted_mean(affinity: torch.Tensor, pixels: torch.Tensor,
                   weight: torch.Tensor, hh: int, ww: int) -> torch.Tensor:
    """S_k = sum_p A_pk x_p / (sum_p A_pk + eps), folded onto the grid.

    Computed in the inputs' dtype, which the caller makes float32 with
    autocast off: a cell's sum runs over up to 256 pixels and then 9 cells,
    which overflows float16 at trained-network activation scale (and the
    eps vanishes in it). Returns (B, hh * ww, C).
    """
    total = scatter_to_neighbours(affinity.transpose(-1, -2) @ pixels, hh, ww)
    # eps 1e-12 as in the paper; a literal, because torch.compile traces a
    # float global as a symbolic input (and then restarts, see stvit._fixed)
    return total / (weight + 1e-12)


def super_token_attention(x: torch.Tensor, stoken_size: Tuple[int, int],
                          n_iter: int,
                          refine: Callable[[torch.Tensor], torch.Tensor]
                          ) -> torch.Tensor:
    """Super Token Attention (STViT, CVPR 2023) on an NHWC feature map.

    Args:
        x: (B, H, W, C) normalised features.
        stoken_size: (h, w) pixels per super token.
        n_iter: association iterations (>= 1).
        refine: self-attention over super tokens, (B, hh, ww, C) -> same.

    Returns:
        torch.Tensor: (B, H, W, C).
    """
    batch, height, width, channels = x.shape
    h, w = stoken_size
    # Grid size by ceiling division and the padding from it (not the padding
    # by modulo): with symbolic sizes the padded height is then literally
    # hh * h, which the (hh, h) view below needs no arithmetic to prove.
    hh, ww = (height + h - 1) // h, (width + w - 1) // w
    pad_b, pad_r = hh * h - height, ww * w - width
    # When tracing, pad (and crop) unconditionally: a zero pad is a no-op,
    # and the exported graph then serves every input size.
    padded = _tracing() or bool(pad_b or pad_r)
    if padded:
        # Padding pixels are zeros that take part like real pixels.
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    # (B, hh*ww, h*w, C): the pixels of each cell, cell by cell.
    pixels = x.view(batch, hh, h, ww, w, channels).transpose(2, 3).reshape(
        batch, hh * ww, h * w, channels)
    scale = channels ** -0.5

    # The association (logits, softmax, weight sums and weighted means) runs
    # in float32 with autocast off, whatever the input dtype or autocast
    # (AMP) asks for. A logit is pixel . super token ~ |x|^2 before the
    # scale applies: float16 overflows (65504) once |x| > 256, e.g. with
    # three LayerNorm output channels of ~150, outliers trained transformers
    # have (inf, then a NaN softmax); bfloat16 keeps 8 bits, an error of
    # ~|x|^2 / 256 that scrambles near-ties; the sums of _weighted_mean run
    # over up to 256 pixels and 9 cells. Cheap: no gradient, thin GEMMs
    # next to the MLP's. In float32 all of this is a no-op (same ops,
    # bit-identical results).
    pixels32 = _float32(pixels)
    with torch.no_grad(), _autocast_off(pixels):
        stokens = pixels32.mean(2)  # average of each cell
        for it in range(n_iter):
            neighbours = gather_neighbours(stokens.view(batch, hh, ww, -1))
            logits = pixels32 @ neighbours.transpose(-1, -2) * scale
            affinity = logits.softmax(-1)  # (B, hh*ww, h*w, 9)
            weight = scatter_to_neighbours(affinity.sum(2), hh, ww)
            weight = weight.unsqueeze(-1)  # (B, hh*ww, 1)
            if it < n_iter - 1:
                stokens = _weighted_mean(affinity, pixels32, weight, hh, ww)
        if _association_callback is not None:
            _association_callback(affinity.to(pixels.dtype), (hh, ww),
                                  (h, w), (height, width))

    # differentiable in the pixels; float32 for the same sums
    with _autocast_off(pixels):
        stokens = _weighted_mean(affinity, pixels32, weight, hh, ww)
    affinity = affinity.to(pixels.dtype)
    stokens = stokens.to(pixels.dtype)
    stokens = refine(stokens.view(batch, hh, ww, channels))
    out = affinity @ gather_neighbours(stokens)  # (B, hh*ww, h*w, C)
    out = out.view(batch, hh, ww, h, w, channels).transpose(2, 3).reshape(
        batch, hh * h, ww * w, channels)
    if padded and fused_ops.compiling():
        # A slice checks whether it is a no-op (end == size), and
        # as_strided's backward the window's geometry: guards on "padded or
        # not" that recompile for other sizes. Index selection takes the
        # first ``height`` rows and ``width`` columns without comparing.
        rows = torch.arange(height, device=out.device)
        columns = torch.arange(width, device=out.device)
        out = out.index_select(1, rows).index_select(2, columns)
    elif padded:
        out = out[:, :height, :width].contiguous()
    return out
