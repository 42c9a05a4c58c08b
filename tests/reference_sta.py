"""A deliberately plain Super Token Attention, written from the paper's
description (NCHW, explicit unfold/fold, explicit attention matrices), used
only to check the fast implementation in stvit_mm."""
import torch
import torch.nn.functional as F


def reference_mhsa(x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads):
    """x: (B, C, H, W) -> (B, C, H, W); per-head (q, k, v) channel order."""
    B, C, H, W = x.shape
    d = C // num_heads
    qkv = F.conv2d(x, qkv_weight, qkv_bias).reshape(B, num_heads, 3 * d, H * W)
    q, k, v = qkv[:, :, :d], qkv[:, :, d:2 * d], qkv[:, :, 2 * d:]
    attn = torch.einsum('bhdn,bhdm->bhnm', q, k) * d ** -0.5  # (queries, keys)
    attn = attn.softmax(dim=-1)
    out = torch.einsum('bhnm,bhdm->bhdn', attn, v).reshape(B, C, H, W)
    return F.conv2d(out, proj_weight, proj_bias)


def reference_sta(x, stoken_size, n_iter, refine):
    """x: (B, C, H, W) -> (B, C, H, W); refine: (B, C, hh, ww) -> same."""
    h, w = stoken_size
    if (h, w) == (1, 1):
        return refine(x)
    B, C, H0, W0 = x.shape
    pad_b, pad_r = (h - H0 % h) % h, (w - W0 % w) % w
    x = F.pad(x, (0, pad_r, 0, pad_b))
    H, W = x.shape[2:]
    hh, ww = H // h, W // w
    # (B, hh*ww, h*w, C)
    pix = x.reshape(B, C, hh, h, ww, w).permute(0, 2, 4, 3, 5, 1).reshape(
        B, hh * ww, h * w, C)

    def unfold(s):  # (B, C, hh, ww) -> (B, hh*ww, C, 9), zeros outside
        return F.unfold(s, 3, padding=1).reshape(B, C, 9, hh * ww).permute(
            0, 3, 1, 2)

    def fold(t):  # (B, hh*ww, C', 9) -> (B, C', hh, ww), summing
        c = t.shape[2]
        return F.fold(t.permute(0, 2, 3, 1).reshape(B, c * 9, hh * ww),
                      (hh, ww), 3, padding=1)

    s = F.adaptive_avg_pool2d(x, (hh, ww))
    with torch.no_grad():
        for i in range(n_iter):
            a = (pix @ unfold(s) * C ** -0.5).softmax(-1)  # (B, L, hw, 9)
            a_sum = fold(a.sum(2).unsqueeze(2))
            if i < n_iter - 1:
                s = fold(pix.transpose(-1, -2) @ a) / (a_sum + 1e-12)
    s = fold(pix.transpose(-1, -2) @ a) / (a_sum + 1e-12)
    s = refine(s)
    out = unfold(s) @ a.transpose(-1, -2)  # (B, L, C, hw)
    out = out.reshape(B, hh, ww, C, h, w).permute(0, 3, 1, 4, 2, 5).reshape(
        B, C, H, W)
    return out[:, :, :H0, :W0]
