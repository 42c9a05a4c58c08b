"""STViT backbone: arguments, shapes, freezing, norm_eval, with_cp."""
import math

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from stvit_mm import STViT

TINY = dict(embed_dims=[16, 32, 48, 64], depths=[1, 2, 1, 1],
            num_heads=[1, 2, 3, 4])


def test_arch_zoo_sizes():
    # facts: 23.95M / 50.14M / 93.29M with the official constant unfold/fold
    # kernels (2 x 81 values per block), which are not parameters here.
    expected = {'s': 23.95e6, 'b': 50.14e6, 'l': 93.29e6}
    for arch, params in expected.items():
        model = STViT(arch)
        constants = 162 * sum(model.depths)
        count = sum(p.numel() for p in model.parameters()) + constants
        assert abs(count - params) < 0.01e6, (arch, count)
    assert STViT('small').embed_dims == STViT('S').embed_dims


@pytest.mark.parametrize('out_indices,expected', [
    (-1, [3]), ((0, 1, 2, 3), [0, 1, 2, 3]), ((1, -1), [1, 3]), (2, [2])])
def test_out_indices(out_indices, expected):
    model = STViT(TINY, out_indices=out_indices).eval()
    outs = model(torch.randn(2, 3, 64, 64))
    assert len(outs) == len(expected)
    for out, index in zip(outs, expected):
        stride = 4 * 2 ** index
        assert out.shape == (2, TINY['embed_dims'][index], 64 // stride,
                             64 // stride)


@pytest.mark.parametrize('train', [False, True])
def test_outputs_are_standard_nchw(train):
    """Blocks run channels-last; what leaves the backbone is contiguous
    NCHW, the layout mmcv's ops index blindly."""
    model = STViT(TINY, out_indices=(0, 1, 2, 3)).train(train)
    x = torch.randn(2, 3, 64, 96, requires_grad=train)
    for out in model(x):
        assert out.is_contiguous()


def test_mask_rcnn_roi_features_match_torchvision():
    """Regression: Mask R-CNN's RoI features (mmcv RoIAlign on the FPN
    maps) equal torchvision's roi_align; with channels-last backbone outputs
    mmcv read the FPN maps as NCHW and returned garbage, and the detector
    could not learn its classes."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from torchvision.ops import roi_align
    register_all_modules()
    cfg = Config.fromfile('configs/detection/mask_rcnn_stvit_s.py')
    cfg.model.backbone.update(arch=TINY, init_cfg=None)
    cfg.model.neck.in_channels = TINY['embed_dims']
    model = MODELS.build(cfg.model).eval()
    rois = torch.tensor([[0, 4., 6., 50., 40.], [1, 10., 3., 60., 62.]])
    with torch.no_grad():
        feats = model.neck(model.backbone(torch.randn(2, 3, 64, 64)))
        ours = model.roi_head.bbox_roi_extractor(feats[:1], rois)
    expected = roi_align(feats[0], rois, (7, 7), 1 / 4, 0, aligned=True)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('hw', [(257, 389), (112, 137), (511, 511), (33, 31)])
@pytest.mark.parametrize('stoken_size', [(8, 4, 1, 1), (16, 8, 2, 1)])
def test_odd_input_sizes(hw, stoken_size):
    model = STViT(TINY, stoken_size=stoken_size, out_indices=(0, 1, 2, 3))
    with torch.no_grad():
        outs = model.eval()(torch.randn(1, 3, *hw))
    for i, out in enumerate(outs):
        stride = 4 * 2 ** i
        assert out.shape[2:] == (math.ceil(hw[0] / stride),
                                 math.ceil(hw[1] / stride))
        assert torch.isfinite(out).all()


@pytest.mark.parametrize('arch', ['s', 'b', 'l'])
def test_released_archs_forward(arch):
    model = STViT(arch, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 96, 96))
    assert [o.shape[1] for o in outs] == model.embed_dims
    assert [o.shape[2] for o in outs] == [24, 12, 6, 3]


def test_layer_scale_only_where_configured():
    model = STViT('b')
    assert not hasattr(model.layers[1].blocks[0], 'gamma_1')
    gamma = model.layers[2].blocks[0].gamma_1
    assert gamma.shape == (1, 384, 1, 1) and torch.all(gamma == 1e-6)


def test_frozen_stages():
    model = STViT(TINY, frozen_stages=2, out_indices=(0, 1, 2, 3))
    model.train()
    frozen = [model.patch_embed, model.layers[0], model.layers[1]]
    for module in frozen:
        assert not module.training
        assert all(not p.requires_grad for p in module.parameters())
    for module in model.layers[2:]:
        assert module.training
        assert all(p.requires_grad for p in module.parameters())
    # frozen BN statistics do not move in training
    before = model.patch_embed.proj[2].running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    assert torch.equal(before, model.patch_embed.proj[2].running_mean)
    assert all(not p.requires_grad
               for p in STViT(TINY, frozen_stages=0).patch_embed.parameters())


def test_norm_eval():
    model = STViT(TINY, norm_eval=True).train()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert norms and all(not m.training for m in norms)
    assert model.layers[0].blocks[0].pos_embed.conv.training
    stats = [m.running_mean.clone() for m in norms]
    model(torch.randn(2, 3, 32, 32))
    assert all(torch.equal(a, m.running_mean) for a, m in zip(stats, norms))
    assert model.train() is model


def test_with_cp_matches_plain_path():
    torch.manual_seed(1)
    plain = STViT(TINY, out_indices=(0, 1, 2, 3), drop_path_rate=0.)
    ckpt = STViT(TINY, out_indices=(0, 1, 2, 3), with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 48, 40)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    outs1, outs2 = plain(x1), ckpt(x2)
    for a, b in zip(outs1, outs2):
        torch.testing.assert_close(a, b)
    sum(o.square().mean() for o in outs1).backward()
    sum(o.square().mean() for o in outs2).backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    for (name, p1), p2 in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, msg=name)
    # the recomputation must not update BatchNorm statistics a second time
    for (name, b1), b2 in zip(plain.named_buffers(), ckpt.buffers()):
        torch.testing.assert_close(b1, b2, msg=name)


def test_drop_path_rates_rise_linearly():
    model = STViT(TINY, drop_path_rate=0.5)
    rates = [b.drop_path.drop_prob for s in model.layers for b in s.blocks]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.5)
    assert rates == sorted(rates)


def test_layer_depth_for_layer_decay():
    model = STViT(TINY)
    total = sum(TINY['depths']) + 2
    assert model.get_layer_depth('backbone.patch_embed.proj.0.weight',
                                 'backbone.') == (0, total)
    assert model.get_layer_depth('backbone.layers.1.blocks.1.attn.x',
                                 'backbone.') == (3, total)
    assert model.get_layer_depth('head.fc.weight', 'backbone.') == (
        total - 1, total)


@pytest.mark.parametrize('kwargs,message', [
    (dict(arch='tiny'), 'Unknown STViT arch'),
    (dict(arch=dict(embed_dims=[1, 2, 3, 4], depths=[1, 1, 1, 1])),
     'missing keys'),
    (dict(arch=dict(TINY, depth=[1, 1, 1, 1])), 'unknown keys'),
    (dict(arch=dict(TINY, depths=[1, 1, 1])), 'needs 4 entries'),
    (dict(arch=TINY, stoken_size=[8, 4, 1]), 'stoken_size needs 4'),
    (dict(arch=TINY, stoken_size=[8, 4, 0, 1]), 'stoken_size'),
    (dict(arch=TINY, n_iter=[1, 1]), 'n_iter'),
    (dict(arch=TINY, out_indices=(4, )), 'out_indices'),
    (dict(arch=TINY, frozen_stages=7), 'frozen_stages'),
    (dict(arch=dict(TINY, num_heads=[3, 2, 3, 4])), 'divisible'),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        STViT(**kwargs)


def test_misspelt_option_raises():
    with pytest.raises(TypeError, match='drop_path_rte'):
        STViT(TINY, drop_path_rte=0.1)


def test_bad_tensors_raise():
    model = STViT(TINY).eval()
    with pytest.raises(ValueError, match='4D'):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match='3 input channels.*got a tensor '
                       'with 1'):
        model(torch.randn(1, 1, 32, 32))
