"""The GPU code paths that the CPU suite cannot reach: Super Token Attention
with CUDA kernels (SDPA, cuDNN, col2im) against the CPU reference, fp16 and
bf16 autocast, activation checkpointing with the CUDA RNG, inductor's Triton
code, AmpOptimWrapper's GradScaler through the toolboxes' runners, and
mmcv's CUDA ops.

Every test is marked ``cuda`` and skips without a CUDA device. Those that
need mmcv (and the toolboxes, which import it) are also marked ``mmcv``:
tools/gpu_report.sh runs ``-m "cuda and not mmcv"`` while mmcv builds and
``-m "cuda and mmcv"`` after. Nothing at module level imports mmcv.
"""
import copy
import math
import os.path as osp
import uuid

import pytest
import torch

from reference_sta import reference_mhsa, reference_sta
from stvit_mm.main_job import TINY_ARCH
from stvit_mm.models import STViT
from stvit_mm.models.backbones.stvit import SuperTokenAttention

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason='no CUDA device'),
]


@pytest.fixture
def exact_fp32():
    """fp32 as fp32: no TF32 in matmuls and cuDNN convolutions (cuDNN's is
    on by default and rounds inputs to a 10-bit mantissa, ~1e-3)."""
    saved = (torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    (torch.backends.cuda.matmul.allow_tf32,
     torch.backends.cudnn.allow_tf32) = saved


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    """||got - want|| / ||want||, both in fp32 on the CPU."""
    got, want = got.detach().float().cpu(), want.detach().float().cpu()
    return ((got - want).norm() / want.norm()).item()


# ------------------------------------------------- Super Token Attention
@pytest.mark.parametrize('channels,heads,stoken_size,n_iter,hw', [
    (40, 5, (8, 8), 1, (16, 24)),    # divisible
    (40, 5, (4, 4), 1, (13, 19)),    # padded on both sides
    (40, 5, (8, 4), 2, (17, 16)),    # non-square stoken, n_iter > 1
    (40, 5, (2, 3), 3, (5, 7)),      # odd sizes, several iterations
    (40, 5, (16, 16), 1, (9, 11)),   # one super token smaller than a stoken
    (40, 5, (1, 1), 1, (7, 9)),      # global attention
    (64, 1, (8, 8), 1, (56, 56)),    # STViT-S stage 1 at 224
])
def test_sta_on_cuda_matches_cpu_reference(channels, heads, stoken_size,
                                           n_iter, hw, exact_fp32):
    """Outputs and gradients (input and weights) of the fast STA on CUDA in
    fp32 equal the plain CPU reference (tests/reference_sta.py) within 1e-4
    of the largest value."""
    module = SuperTokenAttention(channels, heads, stoken_size, n_iter)
    x = torch.randn(2, channels, *hw, requires_grad=True)
    r = module.stoken_refine
    expected = reference_sta(
        x, module.stoken_size, n_iter,
        lambda t: reference_mhsa(t, r.qkv.weight, r.qkv.bias, r.proj.weight,
                                 r.proj.bias, r.num_heads))
    weights = torch.randn_like(expected)
    grads_ref = torch.autograd.grad((expected * weights).sum(),
                                    [x] + list(module.parameters()))

    gpu = copy.deepcopy(module).cuda()
    x_gpu = x.detach().cuda().requires_grad_()
    actual = gpu(x_gpu.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    assert actual.is_cuda and actual.shape == x.shape
    error = (actual.detach().cpu() - expected).abs().max()
    assert error <= 1e-4 * expected.abs().max()
    grads = torch.autograd.grad((actual * weights.cuda()).sum(),
                                [x_gpu] + list(gpu.parameters()))
    for got, want in zip(grads, grads_ref):
        assert (got.cpu() - want).abs().max() <= \
            1e-4 * want.abs().max() + 1e-7


# ------------------------------------------------------- mixed precision
# Bounds on the relative L2 error of autocast against fp32 (each output;
# the input gradient; all weight gradients together). The same comparison
# on the CPU (2x3x128x160) measured, outputs / gradients: fp16 2.4e-3 /
# 2.3e-3, bf16 1.9e-2 / 1.8e-2 (rounding units 2^-11 and 2^-8, grown
# through the 20 blocks). The bounds leave 4-13x (fp16) and 2.5-5x (bf16)
# headroom; an overflow or a wrong dtype path is far outside.
AMP_TOLERANCES = {torch.float16: (1e-2, 3e-2), torch.bfloat16: (5e-2, 1e-1)}


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16],
                         ids=['fp16', 'bf16'])
def test_stvit_s_autocast_matches_fp32(dtype, exact_fp32):
    """STViT-S [16,8,2,1], training mode, 2x3x256x320: forward under CUDA
    autocast is finite and within :data:`AMP_TOLERANCES` of fp32, and so
    are the input and weight gradients of a weighted sum of all outputs
    (random weights: gradients of order one, no loss scaling needed)."""
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip('this GPU has no bf16')
    out_tol, grad_tol = AMP_TOLERANCES[dtype]
    model = STViT('s', stoken_size=[16, 8, 2, 1],
                  out_indices=(0, 1, 2, 3)).cuda().train()
    x = torch.randn(2, 3, 256, 320, device='cuda')
    params = [x] + list(model.parameters())
    seen = set()
    # the MLP's GELU: its input comes from a 1x1 conv's GEMM
    model.layers[0].blocks[0].mlp2.act.register_forward_hook(
        lambda module, args, out: seen.add(out.dtype))

    def run(autocast: bool):
        inputs = x.clone().requires_grad_()
        seen.clear()
        with torch.autocast('cuda', dtype=dtype, enabled=autocast):
            outs = model(inputs)
        assert seen == {dtype if autocast else torch.float32}
        torch.manual_seed(1)
        weights = [torch.randn(o.shape, device='cuda') for o in outs]
        loss = sum((o.float() * w).sum() for o, w in zip(outs, weights))
        grads = torch.autograd.grad(loss, [inputs] + params[1:])
        return outs, grads

    ref_outs, ref_grads = run(autocast=False)
    outs, grads = run(autocast=True)
    for out, ref in zip(outs, ref_outs):
        assert torch.isfinite(out).all()
        assert _relative(out, ref) < out_tol
    assert all(torch.isfinite(g).all() for g in grads)
    assert _relative(grads[0], ref_grads[0]) < grad_tol
    flat = torch.cat([g.flatten() for g in grads[1:]])
    flat_ref = torch.cat([g.flatten() for g in ref_grads[1:]])
    assert _relative(flat, flat_ref) < grad_tol


# --------------------------------------------------------------- with_cp
def test_with_cp_matches_plain_on_cuda(exact_fp32):
    """Activation checkpointing on CUDA: the recomputation restores the
    CUDA RNG (stochastic depth draws the same masks), so outputs and
    gradients equal the plain run's; BatchNorm statistics are updated once;
    and the training peak memory is lower."""
    plain = STViT('s', stoken_size=[16, 8, 2, 1], out_indices=(0, 1, 2, 3),
                  drop_path_rate=0.2).cuda().train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.with_cp = True
    x = torch.randn(2, 3, 256, 320, device='cuda')

    def run(model):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        torch.cuda.manual_seed(0)
        outs = model(x)
        loss = sum(o.square().mean() for o in outs)
        grads = torch.autograd.grad(loss, list(model.parameters()))
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        return [o.detach() for o in outs], grads, peak

    outs, grads, peak = run(plain)
    outs_cp, grads_cp, peak_cp = run(checkpointed)
    for got, want in zip(outs_cp, outs):
        assert _relative(got, want) < 1e-6
    for got, want in zip(grads_cp, grads):
        # cuDNN may pick another weight-gradient algorithm: not bitwise
        assert (got - want).abs().max() <= 1e-5 * want.abs().max() + 1e-12
    # the first forward updated them alike; the recomputation restored them
    buffers_cp = dict(checkpointed.named_buffers())
    for name, buffer in plain.named_buffers():
        assert torch.equal(buffers_cp[name], buffer), name
    assert peak_cp < peak, (peak_cp, peak)


# --------------------------------------------------------------- inductor
def test_inductor_on_cuda_matches_eager(exact_fp32):
    """torch.compile with inductor (Triton kernels, the GPU code generator)
    of a small STViT with the detection super tokens, padded in stages 1-3
    at this size: forward and input gradients equal eager's."""
    torch._dynamo.reset()
    model = STViT(arch=TINY_ARCH, stoken_size=[16, 8, 2, 1],
                  out_indices=(0, 1, 2, 3)).cuda().train()
    compiled = torch.compile(model, backend='inductor')
    x = torch.randn(2, 3, 136, 200, device='cuda')

    def run(module):
        inputs = x.clone().requires_grad_()
        outs = module(inputs)
        loss = sum(o.square().mean() for o in outs)
        return [o.detach() for o in outs], torch.autograd.grad(loss, inputs)

    # the same batch statistics: BatchNorm's running buffers do not feed
    # training-mode outputs
    outs, (grad, ) = run(model)
    outs_c, (grad_c, ) = run(compiled)
    for got, want in zip(outs_c, outs):
        assert _relative(got, want) < 1e-4
    assert _relative(grad_c, grad) < 1e-4


# ---------------------------------------------------- runners (need mmcv)
CONFIGS = [
    'configs/classification/stvit_s_in1k.py',
    'configs/detection/mask_rcnn_stvit_s.py',
    'configs/segmentation/upernet_stvit_s.py',
]


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    from stvit_mm.tiny_datasets import make_all
    return make_all(str(tmp_path_factory.mktemp('tiny')), coco=(4, 2),
                    ade=(4, 2), imagenet=(8, 4))


@pytest.mark.mmcv
@pytest.mark.parametrize('config', CONFIGS)
def test_amp_training_through_runner(config, tiny_data, tmp_path):
    """The config's AutoAmpOptimWrapper builds mmengine's AmpOptimWrapper
    on CUDA; two iterations of the toolbox's runner (the real model, STViT-S,
    on the tiny data) run the backbone in fp16 on the GPU with a GradScaler
    and finite losses, then validate."""
    from mmengine.config import Config
    from mmengine.optim import AmpOptimWrapper
    from mmengine.runner import Runner

    from stvit_mm.tiny import apply_tiny_overrides
    cfg = Config.fromfile(osp.join(ROOT, config))
    apply_tiny_overrides(cfg, tiny_data, str(tmp_path), iters=2)
    cfg.experiment_name = f'test_{uuid.uuid4().hex[:8]}'
    runner = Runner.from_cfg(cfg)
    dtypes = set()
    # the MLP's GELU: its input comes from a 1x1 conv's GEMM
    act = runner.model.backbone.layers[0].blocks[0].mlp2.act
    hook = act.register_forward_hook(
        lambda module, args, out: dtypes.add((out.dtype, out.device.type)))
    runner.train()
    hook.remove()
    assert isinstance(runner.optim_wrapper, AmpOptimWrapper)
    # torch.cuda.amp.GradScaler in mmengine 0.10, a torch.amp.GradScaler
    assert isinstance(runner.optim_wrapper.loss_scaler, torch.amp.GradScaler)
    assert (torch.float16, 'cuda') in dtypes
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)


@pytest.mark.mmcv
def test_mmcv_roi_align_and_nms_on_cuda_match_cpu():
    """mmcv's CUDA RoIAlign on STViT's stride-8 features (contiguous NCHW,
    as the backbone hands them over) and its CUDA NMS give the CPU ops'
    results."""
    from mmcv.ops import nms, roi_align
    model = STViT(arch=TINY_ARCH, stoken_size=[16, 8, 2, 1],
                  out_indices=(0, 1, 2, 3)).cuda().eval()
    with torch.no_grad():
        feats = model(torch.randn(2, 3, 256, 384, device='cuda'))[1]
    num = 64
    xy = torch.rand(num, 2) * torch.tensor([300., 200.])
    wh = 8 + torch.rand(num, 2) * 80
    rois = torch.cat([torch.randint(0, 2, (num, 1)).float(), xy, xy + wh], 1)
    expected = roi_align(feats.cpu(), rois, (7, 7), 1 / 8, 2, 'avg', True)
    actual = roi_align(feats, rois.cuda(), (7, 7), 1 / 8, 2, 'avg', True)
    torch.testing.assert_close(actual.cpu(), expected, rtol=1e-4, atol=1e-5)

    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(num)
    dets, keep = nms(boxes, scores, 0.5)
    dets_gpu, keep_gpu = nms(boxes.cuda(), scores.cuda(), 0.5)
    assert torch.equal(keep_gpu.cpu(), keep)
    torch.testing.assert_close(dets_gpu.cpu(), dets)
