"""torch.compile: mmengine's ``compile`` option in all three toolboxes, and
one dynamic-shape graph of the backbone for classification- and
detection-sized inputs, equal to eager in outputs and input gradients.
(STA exactness under compile: tests/test_super_token_attention.py; compile
time and speed of STViT-S vs Swin-T: tools/analysis_tools/benchmark.py
--compile, recorded in README.)"""
import math
import os.path as osp
import uuid

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from torch._dynamo.testing import CompileCounterWithBackend
from torch._dynamo.utils import counters

import stvit_mm  # noqa: F401
from stvit_mm.main_job import TINY_ARCH, set_backbone_arch
from stvit_mm.models import STViT
from stvit_mm.models.backbones.stvit import BatchNorm2d
from stvit_mm.tiny import apply_tiny_overrides
from stvit_mm.tiny_datasets import make_all

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    return make_all(str(tmp_path_factory.mktemp('tiny')), coco=(4, 2),
                    ade=(4, 2), imagenet=(8, 4))


@pytest.mark.parametrize('config', [
    'configs/classification/stvit_s_in1k.py',
    'configs/detection/mask_rcnn_stvit_s.py',
    'configs/segmentation/upernet_stvit_s.py',
])
def test_mmengine_compile_option_trains(config, tiny_data, tmp_path):
    """The config with ``compile`` set trains through the toolbox's runner:
    train_step is compiled (dynamo captures graphs), the loss is finite and
    the backbone's weights move. The 'eager' backend keeps the suite cheap
    (dynamo's capture, no code generation); the small arch and one
    iteration likewise (a second iteration retraced the detector's graph
    breaks for new image sizes: 139 -> 77 s for Mask R-CNN)."""
    cfg = Config.fromfile(osp.join(ROOT, config))
    apply_tiny_overrides(cfg, tiny_data, str(tmp_path), iters=1)
    set_backbone_arch(cfg, TINY_ARCH)
    cfg.compile = dict(backend='eager')
    cfg.experiment_name = f'test_{uuid.uuid4().hex[:8]}'
    runner = Runner.from_cfg(cfg)
    before = {name: p.detach().clone() for name, p in
              runner.model.backbone.named_parameters()}
    torch._dynamo.reset()
    counters.clear()
    runner.train()
    assert counters['stats']['unique_graphs'] > 0  # dynamo really ran
    # mmengine replaced train_step by its compiled form
    assert hasattr(runner.model.train_step, '_torchdynamo_orig_callable')
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 1 and all(math.isfinite(v) for v in losses)
    moved = [name for name, p in runner.model.backbone.named_parameters()
             if not torch.equal(p.detach(), before[name])]
    assert len(moved) > len(before) // 2


def test_dynamic_shapes_one_graph_equal_to_eager():
    """``torch.compile(fullgraph=True, dynamic=True)`` serves a
    classification size, another aspect ratio and a detection-sized
    800x1344 input with one graph (no recompile), forward and backward, and
    gives eager's outputs and input gradients. The detection super-token
    sizes pad in stages 1-3 at some of these sizes and not at others: no
    size-dependent branch may specialise the graph.

    Batch 2, as detection trains: at batch 1 ATen picks a non-oneDNN
    kernel for dense convs of at most 20480 input values (with another
    output layout), and the stride-2 convs of a 160x224 image are that
    small, which guards the graph on their size.
    """
    torch.manual_seed(0)
    model = STViT(arch=TINY_ARCH, stoken_size=[16, 8, 2, 1],
                  out_indices=(0, 1, 2, 3)).train()
    counter = CompileCounterWithBackend('aot_eager')
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=counter, fullgraph=True,
                             dynamic=True)
    for hw in [(160, 224), (192, 288), (800, 1344)]:
        x = torch.randn(2, 3, *hw)
        weights = None
        results = []
        for run in (model, compiled):
            xi = x.clone().requires_grad_()
            outs = run(xi)
            if weights is None:
                weights = [torch.randn_like(o) for o in outs]
            loss = sum((o * w).sum() for o, w in zip(outs, weights))
            loss.backward()
            results.append(([o.detach() for o in outs], xi.grad))
        (eager, eager_grad), (got, got_grad) = results
        for e, g in zip(eager, got):
            assert g.shape == e.shape
            assert (g - e).abs().max() <= 1e-4 * e.abs().max()
        assert (got_grad - eager_grad).abs().max() <= \
            1e-4 * eager_grad.abs().max()
    # one graph, handed to the backend once: no recompile for the other
    # sizes, and no restart of the capture (dynamo restarts when a float
    # module attribute, e.g. a norm's eps, was traced as a symbolic input
    # that batch_norm / layer_norm cannot take: twice the trace time)
    assert counter.frame_count == 1
    assert len(counter.graphs[0].graph.nodes) > 0


@pytest.mark.parametrize('training,track', [(True, True), (False, True),
                                            (True, False)])
def test_batch_norm_compiled_equals_eager(training, track):
    """The backbone's BatchNorm2d hands torch.compile its eps and momentum
    as constants and calls F.batch_norm itself: outputs, running statistics
    and the batch counter equal nn.BatchNorm2d's in every mode."""
    torch.manual_seed(0)
    eager = torch.nn.BatchNorm2d(8, eps=1e-3, momentum=0.3,
                                 track_running_stats=track)
    ours = BatchNorm2d(8, eps=1e-3, momentum=0.3, track_running_stats=track)
    with torch.no_grad():
        for m in (eager, ours):
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-1, 1)
            if track:
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    ours.load_state_dict(eager.state_dict())
    eager.train(training)
    ours.train(training)
    torch._dynamo.reset()
    compiled = torch.compile(ours, backend='aot_eager', fullgraph=True,
                             dynamic=True)
    for hw in [(5, 7), (6, 9)]:
        x = torch.randn(2, 8, *hw) * 3 + 1
        torch.testing.assert_close(compiled(x), eager(x))
    for name, buffer in eager.named_buffers():
        torch.testing.assert_close(dict(ours.named_buffers())[name], buffer)
