# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Which super token each pixel belongs to, and a Figure-4 style drawing.

The association is read from one block's Super Token Attention through
:func:`stvit_mm.models.super_token.association_callback`; nothing of the
attention math is repeated here.
"""
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config

from stvit_mm.models.super_token import association_callback


def association_labels(affinity: torch.Tensor, grid_size: Tuple[int, int],
                       stoken_size: Tuple[int, int],
                       size: Tuple[int, int]) -> torch.Tensor:
    """Hard super-token label of every pixel.

    Args:
        affinity: (B, hh * ww, h * w, 9), as handed to the association
            callback (slot k = 3 * dy + dx is the super token at
            (i + dy - 1, j + dx - 1) of cell (i, j)).
        grid_size: (hh, ww). stoken_size: (h, w). size: (H, W) unpadded.

    Returns:
        torch.Tensor: (B, H, W) int64, the row-major index i * ww + j of the
        super token with the strongest association; neighbours outside the
        grid (zero vectors) are never chosen.
    """
    hh, ww = grid_size
    h, w = stoken_size
    batch = affinity.shape[0]
    if affinity.shape[1:] != (hh * ww, h * w, 9):
        raise ValueError(f'affinity of shape {tuple(affinity.shape)} does not'
                         f' fit a {hh}x{ww} grid of {h}x{w} super tokens')
    rows = torch.arange(hh).view(hh, 1, 1) + torch.arange(3).view(1, 3, 1) - 1
    cols = torch.arange(ww).view(ww, 1, 1) + torch.arange(3).view(1, 1, 3) - 1
    rows = rows.view(hh, 1, 3, 1).expand(hh, ww, 3, 3)
    cols = cols.view(1, ww, 1, 3).expand(hh, ww, 3, 3)
    valid = (rows >= 0) & (rows < hh) & (cols >= 0) & (cols < ww)
    index = (rows * ww + cols).reshape(hh * ww, 9).to(affinity.device)
    valid = valid.reshape(1, hh * ww, 1, 9).to(affinity.device)
    slot = affinity.float().masked_fill(~valid, float('-inf')).argmax(-1)
    labels = torch.gather(index.unsqueeze(0).expand(batch, -1, -1), 2, slot)
    labels = labels.view(batch, hh, ww, h, w).transpose(2, 3).reshape(
        batch, hh * h, ww * w)
    return labels[:, :size[0], :size[1]]


class _Stop(Exception):
    """Ends the backbone forward once the wanted block's input is known."""


def block_association(backbone: nn.Module, inputs: torch.Tensor, stage: int,
                      block: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Super-token labels of one STViT block for ``inputs``.

    Args:
        backbone: an :class:`stvit_mm.STViT` (eval mode recommended).
        inputs: (B, 3, H, W) normalised images.
        stage, block: which block's attention to read.

    Returns:
        tuple: labels (B, H_s, W_s) at that stage's resolution, and the
        super-token grid (hh, ww).
    """
    num_stages = len(backbone.layers)
    if not 0 <= stage < num_stages:
        raise ValueError(f'stage must be in [0, {num_stages - 1}], got '
                         f'{stage}')
    depth = len(backbone.layers[stage].blocks)
    if not 0 <= block < depth:
        raise ValueError(f'stage {stage} has {depth} blocks; block must be '
                         f'in [0, {depth - 1}], got {block}')
    attn = backbone.layers[stage].blocks[block].attn
    if tuple(attn.stoken_size) == (1, 1):
        usable = [i for i, layer in enumerate(backbone.layers)
                  if tuple(layer.blocks[0].attn.stoken_size) != (1, 1)]
        raise ValueError(
            f'stage {stage} uses super-token size 1x1, i.e. plain global '
            'self-attention over pixels: it has no super tokens to show. '
            f'Stages with super tokens here: {usable}')

    captured = {}

    def grab_input(module, args):
        captured['x'] = args[0]
        raise _Stop  # later blocks and stages are not needed

    handle = attn.register_forward_pre_hook(grab_input)
    try:
        with torch.no_grad():
            backbone(inputs)
    except _Stop:
        pass
    finally:
        handle.remove()
    if 'x' not in captured:
        raise RuntimeError(f'block {block} of stage {stage} was not run')

    result = {}

    def record(affinity, grid_size, stoken_size, size):
        result['labels'] = association_labels(affinity, grid_size,
                                              stoken_size, size)
        result['grid'] = grid_size

    with torch.no_grad(), association_callback(record):
        attn(captured['x'])
    return result['labels'], result['grid']


def palette(num: int, seed: int = 0) -> np.ndarray:
    """(num, 3) uint8 BGR colours, saturated and shuffled so that
    neighbouring super tokens differ."""
    rng = np.random.default_rng(seed)
    hues = (np.arange(num) * 180 / max(num, 1)).astype(np.uint8)
    hsv = np.stack([rng.permutation(hues),
                    rng.integers(150, 256, num).astype(np.uint8),
                    rng.integers(170, 256, num).astype(np.uint8)], 1)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2BGR)[0]


def draw_regions(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45,
                 boundary_colour: Sequence[int] = (255, 255, 255)
                 ) -> np.ndarray:
    """Colour each region over the image and draw region boundaries.

    Args:
        image: (H, W, 3) uint8 BGR.
        labels: (h, w) int region map, resized here (nearest) to (H, W).

    Returns:
        np.ndarray: (H, W, 3) uint8 BGR.
    """
    height, width = image.shape[:2]
    labels = cv2.resize(labels.astype(np.int32), (width, height),
                        interpolation=cv2.INTER_NEAREST)
    colours = palette(int(labels.max()) + 1)[labels]
    out = cv2.addWeighted(image, 1 - alpha, colours, alpha, 0)
    edge = np.zeros((height, width), bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    thickness = max(1, round(min(height, width) / 400))
    if thickness > 1:
        edge = cv2.dilate(edge.astype(np.uint8),
                          np.ones((thickness, thickness), np.uint8)) > 0
    out[edge] = boundary_colour
    return out


def preprocess(image: np.ndarray, cfg: Config,
               short_side: Optional[int] = None) -> torch.Tensor:
    """Resize (keeping the aspect ratio) and normalise a BGR image as the
    config's data preprocessor does.

    Args:
        image: (H, W, 3) uint8 BGR.
        short_side: target shorter side; default: the task's test size
            (classifier crop, 800 for detection, 512 for segmentation).

    Returns:
        torch.Tensor: (1, 3, H', W') float32.
    """
    from stvit_mm.analysis.flops import default_shape, toolbox_of
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'expected an (H, W, 3) colour image, got shape '
                         f'{image.shape}')
    if short_side is None:
        short_side = min(default_shape(cfg, toolbox_of(cfg)))
    if short_side < 1:
        raise ValueError(f'short_side must be positive, got {short_side}')
    height, width = image.shape[:2]
    scale = short_side / min(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    prep = cfg.model.get('data_preprocessor') or \
        cfg.get('data_preprocessor') or {}
    if prep.get('to_rgb', False) or prep.get('bgr_to_rgb', False):
        resized = resized[..., ::-1]
    mean = np.array(prep.get('mean', (0., 0., 0.)), np.float32)
    std = np.array(prep.get('std', (1., 1., 1.)), np.float32)
    normalised = (resized.astype(np.float32) - mean) / std
    return torch.from_numpy(
        np.ascontiguousarray(normalised.transpose(2, 0, 1)))[None]
