"""ONNX export: one graph serves every input size (Super Token Attention's
padding and reshapes stay dynamic) and matches PyTorch."""
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

from stvit_mm.apis.onnx_export import (build_export_module,  # noqa: E402
                                       export_onnx, max_relative_errors)
from stvit_mm.models import super_token  # noqa: E402
from stvit_mm.models.backbones.stvit import SuperTokenAttention  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(ROOT, 'configs', 'classification', 'stvit_s_in1k.py')
TINY_ARCH = dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                 num_heads=[1, 2, 3, 4])
# 224: no padding at stoken 8 / 4 / 2; 256x320: none either but another
# grid; 200x232 and 97x131: padding in every super-token stage.
SHAPES = [(224, 224), (256, 320), (200, 232), (97, 131)]


def _tiny_config(stoken_size=(8, 4, 2, 1)):
    cfg = Config.fromfile(BASE)
    cfg.model.backbone.update(arch=TINY_ARCH, stoken_size=list(stoken_size),
                              out_indices=(0, 1, 2, 3))
    cfg.model.neck.in_channels = 64
    cfg.model.head.num_classes = 10
    return cfg


def test_backbone_graph_is_dynamic(tmp_path):
    module, names = build_export_module(_tiny_config(), backbone_only=True)
    assert names == ['stage0', 'stage1', 'stage2', 'stage3']
    out = str(tmp_path / 'backbone.onnx')
    export_onnx(module, out, (224, 224), names)
    graph_input = onnx.load(out).graph.input[0]
    dims = [d.dim_param or d.dim_value
            for d in graph_input.type.tensor_type.shape.dim]
    assert dims == ['batch', 3, 'height', 'width']
    results = max_relative_errors(module, out, SHAPES, batch=2)
    assert [shape for shape, _ in results] == SHAPES
    for shape, errors in results:
        assert len(errors) == 4
        assert max(errors) <= 1e-4, (shape, errors)


def test_classifier_logits_cli(tmp_path):
    """The script end to end on a tiny classifier config, with its own
    verification at a size that pads (exit status 0 only if both pass)."""
    config = tmp_path / 'tiny_cls.py'
    config.write_text(
        f'_base_ = {BASE!r}\n'
        'model = dict(backbone=dict(arch=dict(_delete_=True, '
        f'**{TINY_ARCH!r})), '
        'neck=dict(in_channels=64), head=dict(num_classes=10))\n')
    out = tmp_path / 'cls.onnx'
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'deployment',
                                      'export_onnx.py'), str(config),
         '--shape', '224', '224', '--verify-shape', '200', '232',
         '--out', str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'at 2x3x200x232: logits=' in proc.stdout
    assert out.exists()
    output = onnx.load(str(out)).graph.output[0]
    dims = [d.dim_param or d.dim_value
            for d in output.type.tensor_type.shape.dim]
    assert dims == ['batch', 10]


def test_whole_detector_export_is_refused():
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'detection',
                                       'mask_rcnn_stvit_s.py'))
    with pytest.raises(ValueError, match='--backbone-only'):
        build_export_module(cfg, backbone_only=False)


def test_tracing_path_is_bit_identical(monkeypatch):
    """While tracing, STA pads unconditionally and scatters with padded
    copies instead of in-place slice adds; both must change nothing."""
    module = SuperTokenAttention(32, 4, (4, 4), 2)
    cases = [torch.randn(2, 15, 17, 32), torch.randn(1, 16, 8, 32)]
    with torch.no_grad():
        eager = [module(x) for x in cases]
        monkeypatch.setattr(super_token, '_tracing', lambda: True)
        traced_path = [module(x) for x in cases]
    for want, got in zip(eager, traced_path):
        assert torch.equal(want, got)
