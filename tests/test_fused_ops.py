"""The fused CPU inference kernels compute the same function as the plain
path, and step aside wherever they cannot apply."""
import logging

import pytest
import torch
from mmengine.logging import MMLogger

from stvit_mm.models import fused_ops
from stvit_mm.models.backbones.stvit import ConvMlp, STViT
from stvit_mm.models.fused_ops import fused_kernels


def _randomised(model):
    """Non-trivial BatchNorm statistics and layer scales, so that folding
    them into the GEMMs is actually exercised."""
    gen = torch.Generator().manual_seed(1)

    def uniform(t, low, high):
        t.copy_(torch.rand(t.shape, generator=gen) * (high - low) + low)

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.split('.')[-1] in ('gamma_1', 'gamma_2'):
                uniform(p, 0.5, 1.5)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                uniform(m.running_mean, -1, 1)
                uniform(m.running_var, 0.5, 2)
                uniform(m.weight, 0.5, 1.5)
                uniform(m.bias, -0.5, 0.5)
    return model


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize('arch,tile_bytes', [
    ('s', None),      # default tiles: everything fits one
    ('b', None),      # layer scale folded into fc2
    ('s', 1 << 20),   # stage 1: one image per tile
    ('s', 1 << 14),   # stage 1-2: one-row bands with halo rows
    ('s', 1 << 17),   # several-row bands, a short last band
])
def test_fused_inference_equals_plain_path(arch, tile_bytes, monkeypatch):
    if tile_bytes is not None:
        monkeypatch.setattr(fused_ops, 'MLP_TILE_BYTES', tile_bytes)
    model = _randomised(STViT(arch=arch, out_indices=(0, 1, 2, 3),
                              stoken_size=[8, 4, 2, 1])).eval()
    x = torch.randn(2, 3, 97, 130)
    with torch.no_grad():
        fused = model(x)
        with fused_kernels(False):
            plain = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(x)
    for f, p, b in zip(fused, plain, low):
        assert _rel(f, p) < 1e-5
        assert torch.isfinite(b.float()).all() and _rel(b, p) < 5e-2


def test_fused_path_only_where_it_applies():
    x = torch.randn(2, 8, 16)
    with torch.no_grad():
        assert fused_ops.compute_dtype(x) == torch.float32
        with fused_kernels(False):
            assert fused_ops.compute_dtype(x) is None
        assert fused_ops.compute_dtype(x.double()) is None
    assert fused_ops.compute_dtype(x.requires_grad_()) is None

    # BatchNorm on batch statistics (train mode) cannot be folded: the
    # block must then take the plain path and use the batch statistics.
    model = _randomised(STViT(arch='s', out_indices=(0, 1, 2, 3)))
    model.train()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        train_mode = model(images)
        with fused_kernels(False):
            plain = model(images)
        model.eval()
        eval_mode = model(images)
    for t, p, e in zip(train_mode, plain, eval_mode):
        assert _rel(t, p) < 1e-5
        assert _rel(e, p) > 1e-2  # running statistics differ from batch ones


def test_gradients_flow_through_plain_path():
    model = STViT(arch='s', out_indices=(0, 1, 2, 3)).eval()
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    sum(o.square().mean() for o in model(x)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize('with_residual,tile_bytes', [
    (True, None),          # one tile
    (False, None),
    (True, 64 * 13 * 4),   # one-row bands: a halo on both sides
    (True, 64 * 13 * 12),  # 3-row bands, a short last band
    (False, 64 * 9 * 13 * 4),  # one image per tile
])
def test_mlp_training_backward_equals_autograd(with_residual, tile_bytes,
                                               monkeypatch):
    """The MLP's hand-written, tiled backward (GELU recomputed, not stored)
    gives autograd's gradients for the input, the residual and every
    weight."""
    if tile_bytes is not None:
        monkeypatch.setattr(fused_ops, 'MLP_TILE_BYTES', tile_bytes)
    torch.manual_seed(0)
    mlp = ConvMlp(16, 64)
    x = torch.randn(2, 16, 9, 13).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    residual = torch.randn_like(x).requires_grad_() if with_residual else None
    weights = torch.randn(2, 16, 9, 13)
    inputs = [x] + ([residual] if with_residual else [])
    params = inputs + list(mlp.parameters())

    def run():
        out = mlp(x, residual=residual)
        assert out.is_contiguous(memory_format=torch.channels_last)
        return out, torch.autograd.grad((out * weights).sum(), params)

    out, grads = run()
    with fused_kernels(False):
        out_ref, grads_ref = run()
    assert _rel(out, out_ref) < 1e-5
    for got, want in zip(grads, grads_ref):
        assert got.shape == want.shape and _rel(got, want) < 1e-5


class _RefusingOps:
    """Stands in for ``torch.ops.mkldnn`` of a torch build whose private
    oneDNN ops are absent (``refuse=False``) or raise on every input."""

    def __init__(self, refuse):
        self._refuse = refuse
        self.calls = 0

    def __getattr__(self, name):
        if not self._refuse:
            raise AttributeError(f'no op {name}')
        return self

    def __call__(self, *args):
        self.calls += 1
        raise RuntimeError('mkldnn: unsupported input\nsecond line')


@pytest.mark.parametrize('refuse', [False, True])
def test_missing_or_refusing_onednn_ops_fall_back(refuse, monkeypatch):
    model = _randomised(STViT(arch='s', out_indices=(0, 1, 2, 3),
                              stoken_size=[8, 4, 2, 1])).eval()
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        expected = model(x)  # the real oneDNN kernels
    mlp = ConvMlp(16, 64)
    mlp_in = torch.randn(1, 16, 5, 7).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    mlp_expected = torch.autograd.grad(mlp(mlp_in).sum(), mlp_in)[0]

    stub = _RefusingOps(refuse)
    monkeypatch.setattr(torch.ops, 'mkldnn', stub)
    monkeypatch.setattr(fused_ops, '_unusable_ops', set())
    messages = []
    logger = MMLogger.get_current_instance()
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger.addHandler(handler)
    try:
        with torch.no_grad():
            first, second = model(x), model(x)
            with torch.autocast('cpu', dtype=torch.bfloat16):
                low = model(x)
        grad = torch.autograd.grad(mlp(mlp_in).sum(), mlp_in)[0]  # training
    finally:
        logger.removeHandler(handler)
    for got, again, want, b in zip(first, second, expected, low):
        assert _rel(got, want) < 1e-5 and torch.equal(got, again)
        assert torch.isfinite(b.float()).all() and _rel(b, want) < 5e-2
    assert _rel(grad, mlp_expected) < 1e-5
    reason = 'refused an input' if refuse else 'is not in this torch build'
    for op in ('_linear_pointwise', '_convolution_pointwise'):
        said = [m for m in messages if f'mkldnn.{op} {reason}' in m]
        assert len(said) == 1, messages  # once, not per call
        assert 'plain PyTorch path runs instead' in said[0]
    if refuse:  # each op was tried once, then left alone
        assert 0 < stub.calls <= 4
