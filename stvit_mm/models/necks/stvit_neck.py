# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
from typing import Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.registry import MODELS


@MODELS.register_module()
class STViTClsNeck(BaseModule):
    """The official STViT classification tail before the linear classifier:
    1x1 conv to ``out_channels``, BatchNorm, swish, global average pooling.

    Key names (``proj``, ``norm``) match the official checkpoint's tail.

    Args:
        in_channels (int): channels of the last backbone stage.
        out_channels (int): Defaults to 1024.

    Shapes:
        input: tuple of (B, C, H, W), the last one is used ->
        tuple of one (B, out_channels).
    """

    def __init__(self, in_channels: int, out_channels: int = 1024,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.proj = nn.Conv2d(in_channels, out_channels, 1)
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = nn.SiLU()  # swish: x * sigmoid(x)

    def forward(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor]:
        if isinstance(inputs, torch.Tensor):
            inputs = (inputs, )
        x = self.act(self.norm(self.proj(inputs[-1])))
        return (x.mean(dim=(2, 3)), )
