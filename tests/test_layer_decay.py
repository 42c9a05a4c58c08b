"""Layer-wise learning-rate decay in the three toolboxes.

The *_lrd configs build their optimizers the way the runner does (mmdet and
mmseg through stvit_mm's STViTLayerDecayOptimWrapperConstructor, mmpretrain
through its own LearningRateDecayOptimWrapperConstructor): every backbone
parameter gets the lr that STViT.get_layer_depth implies, necks and heads
the base lr, norms / biases / 1-D parameters no weight decay; the two
constructors agree on a classifier; bad settings raise ValueError naming the
problem; each config trains one iteration through the real runner (on the
tiny datasets, with a narrow STViT) with the decay kept by the lr schedule.
"""
import os.path as osp
import uuid

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

import stvit_mm
from stvit_mm import STViT, STViTLayerDecayOptimWrapperConstructor
from stvit_mm.tiny import apply_tiny_overrides
from stvit_mm.tiny_datasets import make_all

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONSTRUCTOR = 'STViTLayerDecayOptimWrapperConstructor'
RATE = 0.9
DET = 'configs/detection/mask_rcnn_stvit_s_lrd.py'
SEG = 'configs/segmentation/upernet_stvit_s_lrd.py'
CLS = 'configs/classification/stvit_s_in1k_ft_lrd.py'
# STViT-S: 3 + 5 + 9 + 3 blocks, the stem and everything after the backbone
NUM_LAYERS = 22
# (parameter, layer id) in STViT-S: the stem, a stage-3 block (3 + 5 blocks
# before it, + 1 for the stem), a last-stage block
BACKBONE_PARAMS = [
    ('backbone.patch_embed.proj.0.weight', 0),
    ('backbone.layers.2.blocks.4.mlp2.fc1.weight', 13),
    ('backbone.layers.3.blocks.2.attn.stoken_refine.qkv.weight', 20),
]
# norms (LayerNorm, block / stem BatchNorm) and biases of the backbone
BACKBONE_NO_DECAY = [
    'backbone.layers.0.blocks.0.norm1.norm.weight',
    'backbone.layers.0.blocks.0.norm1.norm.bias',
    'backbone.layers.2.blocks.4.norm2.weight',
    'backbone.patch_embed.proj.2.bias',
    'backbone.layers.2.blocks.4.mlp2.fc1.bias',
]
# per config: weights outside the backbone (base lr and weight decay), and
# their norms / biases (base lr, no weight decay)
HEADS = {
    DET: (['neck.lateral_convs.0.conv.weight',
           'rpn_head.rpn_conv.weight',
           'roi_head.bbox_head.fc_cls.weight',
           'roi_head.mask_head.convs.0.conv.weight'],
          ['neck.fpn_convs.0.conv.bias', 'roi_head.bbox_head.fc_cls.bias']),
    SEG: (['decode_head.bottleneck.conv.weight',
           'decode_head.conv_seg.weight',
           'auxiliary_head.convs.0.conv.weight'],
          ['decode_head.bottleneck.bn.weight', 'decode_head.conv_seg.bias']),
    CLS: (['neck.proj.weight', 'head.fc.weight'],
          ['neck.norm.weight', 'head.fc.bias']),
}


def _scope_registry(scope: str, name: str):
    return getattr(__import__(f'{scope}.registry', fromlist=[name]), name)


def _build(config: str):
    """(cfg, model, optim wrapper) of a config, built as the runner does
    (model from the toolbox's registry, optimizer through
    mmengine.optim.build_optim_wrapper in the config's default scope)."""
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = _scope_registry(cfg.default_scope, 'MODELS').build(cfg.model)
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    return cfg, model, wrapper


def _groups_by_name(model, optimizer) -> dict:
    """parameter name -> its parameter group (each in exactly one)."""
    group_of = {}
    for group in optimizer.param_groups:
        for param in group['params']:
            assert id(param) not in group_of, 'a parameter in two groups'
            group_of[id(param)] = group
    named = dict(model.named_parameters())
    assert len(group_of) == sum(p.requires_grad for p in named.values())
    return {name: group_of[id(p)] for name, p in named.items()}


@pytest.fixture(scope='module')
def built():
    cache = {}

    def get(config):
        if config not in cache:
            cache[config] = _build(config)
        return cache[config]
    return get


def test_constructor_is_found_in_every_toolbox():
    assert 'STViTLayerDecayOptimWrapperConstructor' in stvit_mm.__all__
    for scope in ('mmdet', 'mmseg', 'mmpretrain'):
        registry = _scope_registry(scope, 'OPTIM_WRAPPER_CONSTRUCTORS')
        with DefaultScope.overwrite_default_scope(scope):
            assert registry.get(CONSTRUCTOR) is \
                STViTLayerDecayOptimWrapperConstructor


@pytest.mark.parametrize('config', [DET, SEG, CLS])
def test_param_groups_follow_get_layer_depth(config, built):
    cfg, model, wrapper = built(config)
    optimizer_cfg = cfg.optim_wrapper.optimizer
    base_lr, base_wd = optimizer_cfg.lr, optimizer_cfg.weight_decay
    assert cfg.optim_wrapper.constructor == (
        'LearningRateDecayOptimWrapperConstructor' if config == CLS
        else CONSTRUCTOR)
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == RATE
    assert base_wd > 0
    groups = _groups_by_name(model, wrapper.optimizer)

    for name, layer_id in BACKBONE_PARAMS:
        assert model.backbone.get_layer_depth(name, 'backbone.') == (
            layer_id, NUM_LAYERS)
        assert groups[name]['lr'] == pytest.approx(
            base_lr * RATE ** (NUM_LAYERS - 1 - layer_id))
        assert groups[name]['weight_decay'] == base_wd
    assert groups[BACKBONE_PARAMS[0][0]]['lr'] == pytest.approx(
        base_lr * 0.10941898913151243)  # 0.9 ** 21: the stem
    for name in BACKBONE_NO_DECAY:
        assert groups[name]['weight_decay'] == 0
        assert groups[name]['lr'] < base_lr * RATE
    weights, no_decay = HEADS[config]
    for name in weights:
        assert groups[name]['lr'] == pytest.approx(base_lr)
        assert groups[name]['weight_decay'] == base_wd
    for name in no_decay:
        assert groups[name]['lr'] == pytest.approx(base_lr)
        assert groups[name]['weight_decay'] == 0

    # every parameter: STViT-S's 1-D ones are exactly its norms and biases
    for name, param in model.named_parameters():
        if name.startswith('backbone.'):
            layer_id, num_layers = model.backbone.get_layer_depth(
                name, 'backbone.')
            lr = base_lr * RATE ** (num_layers - 1 - layer_id)
        else:
            lr = base_lr
        assert groups[name]['lr'] == pytest.approx(lr), name
        assert groups[name]['weight_decay'] == (
            0 if param.ndim == 1 else base_wd), name


def test_agrees_with_mmpretrain_on_a_classifier(built):
    """Same lr and weight decay per parameter as mmpretrain's constructor
    with the same paramwise_cfg (no lr_mult, which mmpretrain ignores)."""
    _, model, theirs = built(CLS)
    cfg = Config.fromfile(osp.join(ROOT, CLS))
    cfg.optim_wrapper.constructor = CONSTRUCTOR
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ours = build_optim_wrapper(model, cfg.optim_wrapper)
    theirs = _groups_by_name(model, theirs.optimizer)
    ours = _groups_by_name(model, ours.optimizer)
    for name in theirs:
        assert ours[name]['lr'] == pytest.approx(theirs[name]['lr']), name
        assert ours[name]['weight_decay'] == theirs[name]['weight_decay']


class _Detector(nn.Module):
    """A backbone and a head, the shape of an mm detector or segmentor."""

    def __init__(self, backbone=None):
        super().__init__()
        self.backbone = backbone or STViT(dict(
            embed_dims=[8, 8, 8, 8], depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1]))
        self.head = nn.Linear(8, 2)


def _optimizer(model, lr=1e-3, weight_decay=0.05, **paramwise_cfg):
    constructor = STViTLayerDecayOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(
            type='AdamW', lr=lr, weight_decay=weight_decay)),
        paramwise_cfg)
    return _groups_by_name(model, constructor(model).optimizer)


def test_paramwise_options_compose_with_the_decay():
    model = _Detector()  # 4 blocks: 6 layers, the stem at 0.5 ** 5
    stem = 'backbone.patch_embed.proj.0.weight'
    stem_norm = 'backbone.patch_embed.proj.2.weight'
    groups = _optimizer(model, layer_decay_rate=0.5, custom_keys={
        'patch_embed.proj.0.': dict(lr_mult=0.1)})
    assert groups[stem]['lr'] == pytest.approx(1e-3 * 0.1 * 0.5 ** 5)
    assert groups['head.weight']['lr'] == pytest.approx(1e-3)
    assert groups['head.bias']['weight_decay'] == 0
    # rate 1: no decay; an explicit norm_decay_mult overrides the default
    groups = _optimizer(model, layer_decay_rate=1.0, norm_decay_mult=1.0)
    assert groups[stem]['lr'] == pytest.approx(1e-3)
    assert groups[stem_norm]['weight_decay'] == 0.05


def test_position_tables_get_no_weight_decay():
    class TableBackbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.relative_position_bias_table = nn.Parameter(
                torch.zeros(9, 2))
            self.proj = nn.Linear(8, 8)

        def get_layer_depth(self, param_name, prefix=''):
            return 0, 2

    model = _Detector(TableBackbone())
    table = 'backbone.relative_position_bias_table'
    groups = _optimizer(model, layer_decay_rate=0.5)
    assert groups[table]['weight_decay'] == 0
    assert groups[table]['lr'] == pytest.approx(5e-4)
    assert groups['backbone.proj.weight']['weight_decay'] == 0.05
    # a custom key that names the table decides instead
    groups = _optimizer(model, layer_decay_rate=0.5, custom_keys={
        'position_bias': dict(decay_mult=0.5)})
    assert groups[table]['weight_decay'] == pytest.approx(0.025)


@pytest.mark.parametrize('rate', [0, -0.5, 1.5, 'x', True, None])
def test_decay_rate_outside_0_1_raises(rate):
    with pytest.raises(ValueError, match='layer_decay_rate must be a number'):
        _optimizer(_Detector(), layer_decay_rate=rate)


@pytest.mark.parametrize('paramwise_cfg,message', [
    (dict(), 'needs paramwise_cfg.layer_decay_rate'),
    (dict(layer_decay_rate=0.9, layer_decay=0.8),
     r"unknown paramwise_cfg key\(s\) \['layer_decay'\]"),
])
def test_bad_paramwise_cfg_raises(paramwise_cfg, message):
    with pytest.raises(ValueError, match=message):
        _optimizer(_Detector(), **paramwise_cfg)


def test_optimizer_without_lr_raises():
    with pytest.raises(ValueError, match='needs an lr'):
        STViTLayerDecayOptimWrapperConstructor(
            dict(optimizer=dict(type='AdamW')), dict(layer_decay_rate=0.9))


def test_model_without_layered_backbone_raises():
    with pytest.raises(ValueError, match='Sequential has no backbone'):
        _optimizer(nn.Sequential(nn.Linear(2, 2)), layer_decay_rate=0.9)
    with pytest.raises(ValueError,
                       match='backbone Conv2d has no get_layer_depth'):
        _optimizer(_Detector(nn.Conv2d(3, 8, 1)), layer_decay_rate=0.9)


def test_bad_rate_in_a_config_raises_through_the_registry():
    """What a config's user sees: mmengine's build_optim_wrapper, in the
    mmdet scope, re-raises the ValueError with the class named."""
    optim_wrapper = dict(
        type='OptimWrapper', constructor=CONSTRUCTOR,
        optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
        paramwise_cfg=dict(layer_decay_rate=1.2))
    # the constructor is built, and refuses, before the model is looked at
    with DefaultScope.overwrite_default_scope('mmdet'), \
            pytest.raises(ValueError, match=f'{CONSTRUCTOR}.*got 1.2'):
        build_optim_wrapper(nn.Linear(1, 1), optim_wrapper)


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    return make_all(str(tmp_path_factory.mktemp('tiny_lrd')), coco=(2, 1),
                    ade=(2, 1), imagenet=(2, 1))


def _narrow(cfg: Config) -> None:
    """A narrow, shallow STViT and lighter heads: a training step in seconds
    on a CPU. The optimizer settings stay the config's."""
    cfg.model.backbone.arch = dict(embed_dims=[16] * 4, depths=[1, 1, 2, 1],
                                   num_heads=[1] * 4)
    if 'decode_head' in cfg.model:  # UperNet
        cfg.model.decode_head.update(in_channels=[16] * 4, channels=32)
        cfg.model.auxiliary_head.update(in_channels=16, channels=32)
    elif cfg.model.type == 'ImageClassifier':
        cfg.model.neck.in_channels = 16
    else:  # Mask R-CNN: fewer proposals and sampled RoIs
        cfg.model.neck.in_channels = [16] * 4
        cfg.model.train_cfg.rpn_proposal.max_per_img = 32
        cfg.model.train_cfg.rcnn.sampler.num = 8


@pytest.fixture
def one_thread():
    """The step's tensors are small: one thread runs it in a fraction of
    the time that two take when the cores are shared with other work
    (measured: Mask R-CNN 2 s vs 12 s under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize('config', [DET, SEG, CLS])
def test_one_training_iteration_through_the_runner(config, tiny_data,
                                                   tmp_path, one_thread):
    cfg = Config.fromfile(osp.join(ROOT, config))
    apply_tiny_overrides(cfg, tiny_data, str(tmp_path), size=64, iters=1)
    _narrow(cfg)
    # training only: no validation loop, no checkpoint to write
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator',
                'test_dataloader', 'test_cfg', 'test_evaluator'):
        cfg[key] = None
    cfg.default_hooks.checkpoint = None
    cfg.experiment_name = f'test_lrd_{uuid.uuid4().hex[:8]}'
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1

    model = runner.model
    groups = _groups_by_name(model, runner.optim_wrapper.optimizer)
    stem, head = BACKBONE_PARAMS[0][0], HEADS[config][0][0]
    _, num_layers = model.backbone.get_layer_depth(stem, 'backbone.')
    assert num_layers == 7  # 5 blocks, the stem, the rest
    # the schedule (warm-up) scales every group alike: the decay stays
    assert groups[stem]['lr'] / groups[head]['lr'] == pytest.approx(
        RATE ** (num_layers - 1))
    # the stem took its step, at its small but non-zero lr
    state = runner.optim_wrapper.optimizer.state[
        dict(model.named_parameters())[stem]]
    assert int(state['step']) == 1
