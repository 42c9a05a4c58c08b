"""The fast STA equals the plain implementation written from the paper."""
import pytest
import torch

from reference_sta import reference_mhsa, reference_sta
from stvit_mm.models.backbones.stvit import SuperTokenAttention


def _reference(module, x):
    r = module.stoken_refine
    return reference_sta(
        x, module.stoken_size, module.n_iter,
        lambda t: reference_mhsa(t, r.qkv.weight, r.qkv.bias, r.proj.weight,
                                 r.proj.bias, r.num_heads))


@pytest.mark.parametrize('stoken_size,n_iter,hw', [
    ((8, 8), 1, (16, 24)),    # divisible
    ((4, 4), 1, (13, 19)),    # padded on both sides
    ((8, 4), 2, (17, 16)),    # non-square stoken, n_iter > 1
    ((2, 3), 3, (5, 7)),      # odd sizes, several iterations
    ((16, 16), 1, (9, 11)),   # one super token smaller than the stoken
    ((1, 1), 1, (7, 9)),      # global attention
])
@pytest.mark.parametrize('compiled', [False, True])
def test_fast_sta_matches_reference(stoken_size, n_iter, hw, compiled):
    """Eager, and compiled (torch.compile takes the im2col/col2im forms of
    gather/scatter and pads unconditionally; aot_eager: the traced graph,
    forward and backward, without code generation)."""
    module = SuperTokenAttention(40, 5, stoken_size, n_iter)
    x = torch.randn(2, 40, *hw, requires_grad=True)
    expected = _reference(module, x)
    run = module
    if compiled:
        torch._dynamo.reset()
        run = torch.compile(module, backend='aot_eager', fullgraph=True)
    actual = run(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    assert actual.shape == x.shape
    scale = expected.abs().max()
    assert (actual - expected).abs().max() / scale < 1e-5

    weights = torch.randn_like(expected)
    params = [x] + list(module.parameters())
    grads_ref = torch.autograd.grad((expected * weights).sum(), params)
    grads = torch.autograd.grad((actual * weights).sum(), params)
    for got, want in zip(grads, grads_ref):
        assert (got - want).abs().max() <= 1e-5 * want.abs().max() + 1e-7


def test_bf16_autocast_is_finite():
    module = SuperTokenAttention(32, 4, (4, 4), 2)
    x = torch.randn(2, 15, 17, 32)  # LayerNorm output scale
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = module(x)
    assert torch.isfinite(out.float()).all()
    ref = module(x)
    assert (out.float() - ref).abs().max() / ref.abs().max() < 5e-2


@pytest.mark.parametrize('rest', [(3, ), ()])
def test_gather_scatter_gradients(rest):
    """The hand-written backward of each is the other; gradcheck compares
    them with finite differences in float64."""
    from stvit_mm.models.super_token import (gather_neighbours,
                                             scatter_to_neighbours)
    grid = torch.randn(2, 3, 4, *rest, dtype=torch.float64,
                       requires_grad=True)
    values = torch.randn(2, 12, 9, *rest, dtype=torch.float64,
                         requires_grad=True)
    assert torch.autograd.gradcheck(gather_neighbours, (grid, ))
    assert torch.autograd.gradcheck(
        lambda v: scatter_to_neighbours(v, 3, 4), (values, ))
