"""Mixed precision (AMP) numerics, proven on the CPU with CPU autocast.

On a GPU the configs train under float16 autocast (mmengine's
AmpOptimWrapper, through AutoAmpOptimWrapper); the same autocast policy
machinery runs on the CPU, so these tests run the backbone, Super Token
Attention and the detection / segmentation losses under
``torch.autocast('cpu', dtype=float16 / bfloat16)`` at activation scales a
trained network has, and compare with float32. (The CUDA kernels
themselves: tests/test_cuda.py.)
"""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from stvit_mm import STViT
from stvit_mm.models import super_token
from stvit_mm.models.backbones.stvit import SuperTokenAttention

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    """||got - want|| / ||want|| in float32."""
    got, want = got.detach().float(), want.detach().float()
    return ((got - want).norm() / want.norm()).item()


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    """One intra-op thread. Without oneDNN float16 / bfloat16 (AVX2-only
    CPUs) a half-precision depthwise conv runs as one tiny parallel region
    per channel (26k per STViT-S forward); with two threads each region
    waits for the second one, which on a busy machine costs 10-100x
    (measured, STViT-S fp16 forward + backward: 62 s with two threads while
    a build ran, 5.7 s with one; idle, 5.4 s and 5.8 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------- STViT-S at trained scale
# 96x160: the aspect ratio of 800x1344 and, like it, padded super-token grids
# in stages 1 and 2 (24x40 and 12x20 pixels in 16x16 and 8x8 super tokens:
# 2x3 grids); a multiple of 32, as mmdet pads to; the smallest size with
# more than one row of super tokens there. Half-precision GEMMs run at
# ~0.7 GFLOP/s on such CPUs, so the pixels set the time.
SIZE = (96, 160)
# Residual branches x100 (the MLP output projections) make the stage outputs
# reach magnitudes of 1e2-1e3 (measured max |x| per stage: 292, 521, 1422,
# 278), as a trained network's do; LayerNorm gains U(1, 3) as trained ones.
MLP_GAIN = 100.
LN_GAIN = (1., 3.)
# float16 training scales its loss (GradScaler, dynamic) so that activation
# gradients of ~1 / numel do not fall into float16's subnormals; a fixed
# 2^10 does that here with 16x headroom below float16's largest value (the
# largest gradient is 3.9 before scaling).
LOSS_SCALE = 2.**10
# Bounds on the relative L2 error against float32, for each stage output and
# for all parameter gradients together (per tensor, sums that cancel, as a
# LayerNorm bias gradient over all pixels, have larger relative errors).
# Rounding units: float16 2^-11 (5e-4), bfloat16 2^-8 (4e-3); the errors
# grow over the 20 blocks. Measured, worst stage output / gradients:
# float16 4.0e-3 / 5.3e-3, bfloat16 3.1e-2 / 4.2e-2. The bounds leave 3-6x
# headroom; an overflow (inf / NaN), a wrong association or a block run in
# the wrong precision is far outside.
TOLERANCES = {torch.float16: (2e-2, 3e-2), torch.bfloat16: (1e-1, 1.5e-1)}


def _trained_scale_stvit_s() -> STViT:
    """STViT-S for detection (stoken [16, 8, 2, 1], all stages out,
    norm_eval), its residual branches and LayerNorm gains scaled as above
    and its BatchNorm running statistics calibrated on the scaled
    activations (a trained network's statistics match its activations;
    unit ones would let them grow block by block)."""
    torch.manual_seed(0)
    model = STViT('s', stoken_size=[16, 8, 2, 1], out_indices=(0, 1, 2, 3),
                  norm_eval=True)
    gen = torch.Generator().manual_seed(1)
    low, high = LN_GAIN
    with torch.no_grad():
        for stage in model.layers:
            for block in stage.blocks:
                block.mlp2.fc2.weight.mul_(MLP_GAIN)
                block.mlp2.fc2.bias.mul_(MLP_GAIN)
                gain = block.norm1.norm.weight
                gain.copy_(torch.rand(gain.shape, generator=gen) *
                           (high - low) + low)
    norms = [m for m in model.modules()
             if isinstance(m, torch.nn.BatchNorm2d)]
    model.train()
    for m in norms:  # batch statistics, taken over as running ones
        m.train()
        m.momentum = 1.
    with torch.no_grad():
        model(torch.randn(2, 3, *SIZE, generator=gen))
    for m in norms:
        m.momentum = 0.1
    return model.train()  # norm_eval: the BatchNorms stay in eval mode


def _forward_backward(model, x, weights, dtype=None):
    """Stage outputs and parameter gradients of a weighted mean of all
    outputs (a loss normalised like the real ones), under autocast to
    ``dtype`` (None: float32); backward outside autocast, as in training."""
    scale = LOSS_SCALE if dtype == torch.float16 else 1.
    with torch.autocast('cpu', dtype=dtype or torch.float32,
                        enabled=dtype is not None):
        outs = model(x)
    loss = sum((o.float() * w).mean() for o, w in zip(outs, weights))
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss * scale, params)
    return [o.detach() for o in outs], [g / scale for g in grads]


@pytest.fixture(scope='module')
def trained_scale():
    model = _trained_scale_stvit_s()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 3, *SIZE, generator=gen)
    with torch.no_grad():
        shapes = [o.shape for o in model(x)]
    weights = [torch.randn(s, generator=gen) for s in shapes]
    return model, x, weights, _forward_backward(model, x, weights)


def test_trained_scale_is_reached(trained_scale):
    """The float32 reference runs at the intended scale (else the autocast
    tests below would prove little)."""
    _, _, _, (outs, _) = trained_scale
    peaks = [o.abs().max().item() for o in outs]
    print('stage output max |x|:', [f'{p:.0f}' for p in peaks])
    assert min(peaks) > 100 and max(peaks) > 500


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16],
                         ids=['fp16', 'bf16'])
def test_stvit_s_autocast_at_trained_scale(dtype, trained_scale):
    model, x, weights, (ref_outs, ref_grads) = trained_scale
    outs, grads = _forward_backward(model, x, weights, dtype)
    out_tol, grad_tol = TOLERANCES[dtype]
    errors = [_relative(o, r) for o, r in zip(outs, ref_outs)]
    flat = torch.cat([g.flatten() for g in grads])
    flat_ref = torch.cat([g.flatten() for g in ref_grads])
    grad_error = _relative(flat, flat_ref)
    print(f'{dtype}: stage output errors',
          [f'{e:.1e}' for e in errors], f'gradient error {grad_error:.1e}')
    assert all(o.dtype == dtype for o in outs)  # autocast really ran
    assert all(torch.isfinite(o).all() for o in outs)
    assert all(torch.isfinite(g).all() for g in grads)
    assert max(errors) < out_tol
    assert grad_error < grad_tol


# ------------------------------------------ the association in float32
def _outlier_features(batch, height, width, channels, outliers, gain):
    """LayerNorm-like features (zero mean, unit variance over channels per
    pixel) that vary smoothly over the image, as features do, with
    ``outliers`` channels scaled by ``gain``: the few outlier channels of
    magnitude ~100s that trained transformers carry."""
    gen = torch.Generator().manual_seed(3)
    coarse = torch.randn(batch, channels, height // 4, width // 4,
                         generator=gen)
    x = F.interpolate(coarse, (height, width), mode='bilinear',
                      align_corners=False).permute(0, 2, 3, 1)
    x = F.layer_norm(x, (channels, ))
    x[..., :outliers] *= gain
    return x


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16],
                         ids=['fp16', 'bf16'])
def test_association_is_float32_under_autocast(dtype):
    """Four outlier channels of ~150 make pixel . super token ~1e5, past
    float16's 65504 before the 1 / sqrt(C) scale applies: float16 logits
    would be inf and the softmax NaN; bfloat16 ones keep 8 bits, errors of
    tens on scaled logits of ~1e4, which flip near-ties. In float32 the
    association equals float32's and the output is finite and close.
    (Checked against the association left to autocast: float16 NaN for 93%
    of the pixels, bfloat16 another super token for 0.4% of them.)"""
    torch.manual_seed(0)
    channels = 64
    module = SuperTokenAttention(channels, 2, (8, 8), n_iter=2)
    with torch.no_grad():
        # the refine (attention over super tokens) takes no part in this:
        # its projections ignore the outlier channels
        module.stoken_refine.qkv.weight[:, :4] = 0
    x = _outlier_features(2, 24, 40, channels, outliers=4, gain=150.)
    peak = (x * x).sum(-1).max().item()
    print(f'max |x|^2 = {peak:.3g}')
    assert peak > 65504  # the float16 logits overflow without float32

    seen = []
    with super_token.association_callback(
            lambda affinity, *args: seen.append(affinity.float())):
        ref = module(x)
        with torch.autocast('cpu', dtype=dtype):
            out = module(x)
    assert torch.isfinite(out).all()
    # the input is float32 (as LayerNorm's output is under CUDA autocast):
    # the association is float32's, bit for bit
    assert torch.equal(seen[1], seen[0])
    # measured relative errors 3.5e-4 (float16) and 3.0e-3 (bfloat16), from
    # the refine and the final matmul; 5x headroom
    tolerance = {torch.float16: 2e-3, torch.bfloat16: 1.5e-2}[dtype]
    assert _relative(out, ref) < tolerance


def test_compiled_under_autocast_equals_eager():
    """torch.compile traces the switch that turns autocast off around the
    association (one graph, as without autocast) and computes what eager
    computes under float16 autocast, forward and backward."""
    from torch._dynamo.testing import CompileCounterWithBackend
    module = SuperTokenAttention(32, 4, (4, 4), 2)
    x = torch.randn(2, 15, 17, 32, requires_grad=True)
    counter = CompileCounterWithBackend('aot_eager')
    torch._dynamo.reset()
    compiled = torch.compile(module, backend=counter, fullgraph=True)
    with torch.autocast('cpu', dtype=torch.float16):
        eager, got = module(x), compiled(x)
    assert counter.frame_count == 1 and got.dtype == torch.float16
    # the compiled graph gathers and scatters by im2col / col2im: the same
    # sums in another order, a few float16 rounding units apart
    assert _relative(got, eager) < 2e-3
    grad_eager, = torch.autograd.grad(eager.float().sum(), x)
    grad_got, = torch.autograd.grad(got.float().sum(), x)
    assert _relative(grad_got, grad_eager) < 2e-3


# ------------------------------------ detection and segmentation losses
@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    from stvit_mm.tiny_datasets import make_all
    return make_all(str(tmp_path_factory.mktemp('tiny')), coco=(2, 1),
                    ade=(2, 1), imagenet=(1, 1))


@pytest.mark.parametrize('config', [
    'configs/detection/mask_rcnn_stvit_s.py',
    'configs/segmentation/upernet_stvit_s.py',
])
def test_losses_under_float16_autocast_are_finite(config, tiny_data,
                                                  tmp_path, monkeypatch):
    """The config's model (small backbone and heads, as the tiny runs) on
    one real batch of the tiny data, through the data preprocessor and the
    loss, under float16 autocast as AmpOptimWrapper's optim_context runs
    train_step: every loss finite; backward (outside autocast, as
    AmpOptimWrapper's update_params): every backbone gradient finite."""
    from mmcv.ops.nms import NMSop
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from stvit_mm.main_job import (STAGES, TINY_ARCH, TINY_HEADS,
                                   set_backbone_arch)
    from stvit_mm.tiny import apply_tiny_overrides, task_of

    cfg = Config.fromfile(osp.join(ROOT, config))
    apply_tiny_overrides(cfg, tiny_data, str(tmp_path), size=64, iters=1)
    set_backbone_arch(cfg, TINY_ARCH)
    cfg.merge_from_dict(TINY_HEADS[STAGES[task_of(cfg)].head])
    # mmcv's NMS kernels (CPU and CUDA) read the boxes as float32. On a GPU
    # the RPN's boxes are float32: CUDA autocast runs ``exp`` (in the box
    # decoder) in float32, and the boxes follow by type promotion; CPU
    # autocast has no such rule and hands NMS float16 boxes. Give NMS what
    # CUDA autocast gives it.
    nms_forward = NMSop.forward
    monkeypatch.setattr(NMSop, 'forward', staticmethod(
        lambda ctx, boxes, scores, *args: nms_forward(
            ctx, boxes.float(), scores.float(), *args)))
    scope = cfg.default_scope
    models = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = models.build(cfg.model)
        model.init_weights()
        batch = next(iter(Runner.build_dataloader(cfg.train_dataloader)))
    model.train()
    seen = set()
    model.backbone.register_forward_hook(
        lambda module, args, outs: seen.update(o.dtype for o in outs))
    with torch.autocast('cpu', dtype=torch.float16):
        data = model.data_preprocessor(batch, True)
        losses = model(**data, mode='loss')
        loss, log_vars = model.parse_losses(losses)
    assert seen == {torch.float16}  # autocast reached the backbone
    print({k: round(float(torch.as_tensor(v).detach()), 4)
           for k, v in log_vars.items()})
    assert len(log_vars) > 1
    assert all(torch.isfinite(torch.as_tensor(v)) for v in log_vars.values())
    loss.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all()
                         for g in grads)
