# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""ONNX export of an STViT backbone or classifier, with dynamic batch,
height and width, and a check of onnxruntime against PyTorch.

The exported graph takes the normalised image, i.e. what the config's data
preprocessor produces ((x - mean) / std, RGB); normalisation is not part of
the graph. Super Token Attention pads each feature map to a multiple of the
super-token size and reshapes by the padded size over it; while tracing it
pads and crops unconditionally, so one graph serves every input size, and
sums onto the super-token grid with padded copies instead of in-place slice
adds, which keeps the graph small (STViT-S: 10k instead of 34k nodes,
onnxruntime session start 2 s instead of 27 s). Both are bit-identical to
the eager path (see ``stvit_mm.models.super_token``).

We use torch's TorchScript-based exporter (``dynamo=False``): it needs only
``onnx``, while the newer exporter also needs ``onnxscript``.
"""
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config

from stvit_mm.utils.checkpoint import (is_official_state_dict,
                                       load_checkpoint_file,
                                       load_pretrained_backbone,
                                       official_to_mm, pick_state_dict)

DEFAULT_OPSET = 17  # first opset with LayerNormalization


class ClassifierLogits(nn.Module):
    """An mmpretrain classifier as ``(B, 3, H, W) -> (B, num_classes)``
    logits (the ``mode='tensor'`` forward: backbone, neck, head, no
    softmax)."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.classifier(inputs, mode='tensor')


def build_export_module(config: Config, checkpoint: Optional[str] = None,
                        backbone_only: bool = False
                        ) -> Tuple[nn.Module, List[str]]:
    """The module to export and its output names.

    Args:
        config: a loaded config of this repository.
        checkpoint: mm-format or official checkpoint; random weights if None.
        backbone_only: export ``model.backbone`` (one output per
            ``out_indices`` entry); otherwise the config must be a
            classifier, exported as logits.

    Returns:
        tuple: (module in eval mode, output names).
    """
    from stvit_mm.analysis.flops import build_model_from_config
    model, toolbox = build_model_from_config(config)
    if not backbone_only and toolbox != 'mmpretrain':
        raise ValueError(f'whole-model export supports classifiers only; '
                         f'this config is a {toolbox} model: pass '
                         '--backbone-only to export its backbone')
    if backbone_only:
        module = model.backbone
        if checkpoint:
            load_pretrained_backbone(module, checkpoint, prefix='backbone.')
        names = [f'stage{i}' for i in module.out_indices]
    else:
        if checkpoint:
            state_dict = pick_state_dict(load_checkpoint_file(checkpoint),
                                         source=checkpoint)
            if is_official_state_dict(state_dict):
                state_dict = official_to_mm(state_dict)
            missing, unexpected = model.load_state_dict(state_dict,
                                                        strict=False)
            if missing or unexpected:
                raise KeyError(f'{checkpoint} does not fit the classifier: '
                               f'missing {missing[:5]}, unexpected '
                               f'{unexpected[:5]}')
        module = ClassifierLogits(model)
        names = ['logits']
    return module.eval(), names


def export_onnx(module: nn.Module, out_file: str, shape: Tuple[int, int],
                output_names: Sequence[str], in_channels: int = 3,
                opset: int = DEFAULT_OPSET) -> None:
    """Export ``module`` traced at (1, in_channels, H, W) with dynamic batch,
    height and width on the input and every output's leading axes."""
    dummy = torch.randn(1, in_channels, *shape)
    dynamic_axes: Dict[str, Dict[int, str]] = {
        'input': {0: 'batch', 2: 'height', 3: 'width'}}
    for name in output_names:
        # feature maps also get dynamic spatial axes; logits have only batch
        dynamic_axes[name] = {0: 'batch'} if name == 'logits' else {
            0: 'batch', 2: f'{name}_height', 3: f'{name}_width'}
    with torch.no_grad(), warnings.catch_warnings():
        # the backbone's input-channel check is a constant in the trace
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        # dynamo=False is deprecated in favour of the onnxscript exporter
        warnings.filterwarnings('ignore', category=DeprecationWarning)
        torch.onnx.export(module, (dummy, ), out_file, dynamo=False,
                          opset_version=opset, input_names=['input'],
                          output_names=list(output_names),
                          dynamic_axes=dynamic_axes,
                          do_constant_folding=True)


def max_relative_errors(module: nn.Module, onnx_file: str,
                        shapes: Sequence[Tuple[int, int]], batch: int = 2,
                        in_channels: int = 3, seed: int = 0
                        ) -> List[Tuple[Tuple[int, int], List[float]]]:
    """Run PyTorch and onnxruntime (CPU) on the same random batch at every
    (H, W) in ``shapes``.

    Returns:
        list: per shape, (shape, [max |ort - torch| / max |torch| for each
        output]).
    """
    import onnxruntime as ort
    session = ort.InferenceSession(onnx_file,
                                   providers=['CPUExecutionProvider'])
    generator = torch.Generator().manual_seed(seed)
    results = []
    for shape in shapes:
        x = torch.randn(batch, in_channels, *shape, generator=generator)
        with torch.no_grad():
            expected = module(x)
        if isinstance(expected, torch.Tensor):
            expected = (expected, )
        actual = session.run(None, {'input': x.numpy()})
        if len(actual) != len(expected):
            raise RuntimeError(f'onnxruntime returned {len(actual)} outputs, '
                               f'PyTorch {len(expected)}')
        errors = []
        for got, want in zip(actual, expected):
            want = want.numpy()
            if got.shape != want.shape:
                raise RuntimeError(f'at input {shape}: onnxruntime output '
                                   f'shape {got.shape} != PyTorch '
                                   f'{want.shape}')
            errors.append(float(np.abs(got - want).max() /
                                max(float(np.abs(want).max()), 1e-12)))
        results.append((tuple(shape), errors))
    return results
