"""DINO (mmdet) and Mask2Former (mmseg) with STViT: their configs train
through the toolboxes' real runners on the tiny data (finite losses, the
backbone learns, the evaluators run), their optimisers follow the heads'
recipes, and the main job takes them with --detector / --segmentor."""
import dataclasses
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

import stvit_mm  # noqa: F401
from stvit_mm import main_job
from stvit_mm.tiny_datasets import make_all

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
NEW_CONFIGS = [
    'configs/detection/dino-4scale_stvit_s_12e.py',
    'configs/detection/dino-4scale_stvit_b_12e.py',
    'configs/detection/dino-4scale_stvit_l_12e.py',
    'configs/detection/dino-5scale_stvit_l_12e.py',
    'configs/detection/mask2former_stvit_s_lsj_50e.py',
    'configs/segmentation/mask2former_stvit_s_160k.py',
    'configs/segmentation/mask2former_stvit_b_160k.py',
]


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return make_all(str(tmp_path_factory.mktemp('tiny')), coco=(4, 2),
                    ade=(4, 2), imagenet=(4, 2), size=96, imagenet_size=32)


@pytest.fixture(autouse=True)
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, before))
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize('config', NEW_CONFIGS)
def test_config_is_a_short_diff_on_the_toolbox_recipe(config):
    """The backbone is STViT with the channels its head reads; the rest is
    the toolbox's recipe (queries, schedule, backbone lr 0.1x)."""
    cfg = Config.fromfile(osp.join(ROOT, config))
    from stvit_mm.models.backbones.stvit import STViT
    channels = STViT.arch_zoo[cfg.model.backbone.arch]['embed_dims']
    used = [channels[i] for i in cfg.model.backbone.out_indices]
    if cfg.model.type == 'Mask2Former':  # mmdet, instances
        assert cfg.model.panoptic_head.in_channels == used == channels
        assert cfg.model.panoptic_head.num_things_classes == 80
        assert cfg.train_cfg.max_iters == 368750
    elif cfg.default_scope == 'mmdet':
        assert cfg.model.type == 'DINO'
        assert cfg.model.neck.in_channels == used
        # the ChannelMapper adds one level: 4 or 5 scales in all
        levels = cfg.model.num_feature_levels if 'num_feature_levels' in \
            cfg.model else 4
        assert cfg.model.neck.num_outs == levels == len(used) + 1
        assert cfg.model.num_queries == 900
        assert cfg.train_cfg.max_epochs == 12
    else:
        assert cfg.model.decode_head.type == 'Mask2FormerHead'
        assert cfg.model.decode_head.in_channels == used == channels
        assert cfg.train_cfg.max_iters == 160000
        assert cfg.crop_size == (512, 512)
    keys = cfg.optim_wrapper.paramwise_cfg.custom_keys
    assert keys['backbone']['lr_mult'] == 0.1
    assert cfg.optim_wrapper.type == 'AutoAmpOptimWrapper'


def _tiny_stage(head, size=96):
    # images of 96 px: DINO's 100 tiny queries pick from the 193 tokens of
    # its four levels (strides 8-64)
    return dataclasses.replace(main_job.HEAD_STAGES[head], size=size,
                               batch_size=2)


@pytest.mark.parametrize('head,metric', [('dino', 'coco/bbox_mAP'),
                                         ('mask2former', 'mIoU')])
def test_trains_through_the_runner(head, metric, data_root, tmp_path):
    cfg = main_job.stage_config(_tiny_stage(head), main_job.TINY_ARCH,
                                data_root, str(tmp_path), iters=2)
    cfg.experiment_name = f'test_{head}'
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        runner = Runner.from_cfg(cfg)
        model = runner.model
        before = {name: p.detach().clone()
                  for name, p in model.backbone.named_parameters()}
        runner.train()
        loss = runner.message_hub.get_scalar('train/loss').current()
        assert math.isfinite(loss) and loss > 0
        changed = [name for name, p in model.backbone.named_parameters()
                   if not torch.equal(p.detach(), before[name])]
        # every backbone tensor is used and trained (stage 1 too: DINO
        # reads stages 2-4, which are computed from it)
        assert len(changed) == len(before)
        metrics = runner.val_loop.run()
    assert metric in metrics or head == 'dino'  # an empty COCO result
    assert osp.isfile(osp.join(tmp_path, 'iter_2.pth'))


def _groups_of(cfg):
    """(model, {parameter name: its optimizer param group})."""
    from mmengine.optim import build_optim_wrapper
    scope = cfg.default_scope
    models = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(scope):
        model = models.build(cfg.model)
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    return model, {names[id(p)]: group
                   for group in wrapper.optimizer.param_groups
                   for p in group['params']}


def test_mask2former_optimizer_keeps_backbone_norms_out_of_decay():
    """mmseg's Mask2Former recipe: backbone at 0.1x lr, its norms (and the
    heads' queries and level embeddings) without weight decay."""
    cfg = Config.fromfile(osp.join(
        ROOT, 'configs/segmentation/mask2former_stvit_s_160k.py'))
    model, groups = _groups_of(cfg)
    lr = cfg.optim_wrapper.optimizer.lr
    decay = cfg.optim_wrapper.optimizer.weight_decay
    backbone_norms = [
        f'backbone.{module_name}.{name}'
        for module_name, module in model.backbone.named_modules()
        if isinstance(module, (torch.nn.LayerNorm, torch.nn.BatchNorm2d))
        for name, _ in module.named_parameters()]
    # STViT-S: 20 blocks with a LayerNorm and a BatchNorm each, 4 BatchNorms
    # in the stem, 3 in the downsamplings; weight and bias each
    assert len(backbone_norms) == (20 * 2 + 4 + 3) * 2
    for name in backbone_norms:
        assert groups[name]['lr'] == pytest.approx(0.1 * lr), name
        assert groups[name]['weight_decay'] == 0, name
    conv = 'backbone.layers.2.blocks.4.mlp2.fc1.weight'
    assert groups[conv]['lr'] == pytest.approx(0.1 * lr)
    assert groups[conv]['weight_decay'] == pytest.approx(decay)
    query = 'decode_head.query_embed.weight'
    assert groups[query]['lr'] == pytest.approx(lr)
    assert groups[query]['weight_decay'] == 0


def test_main_job_takes_the_new_heads():
    import importlib.util
    stages = main_job.chain_stages('dino', 'mask2former')
    assert stages['detection'].config.endswith('dino-4scale_stvit_s_12e.py')
    assert stages['detection'].metrics == ('coco/bbox_mAP', )
    assert stages['segmentation'].head == 'mask2former'
    assert main_job.chain_stages()['detection'] is main_job.STAGES[
        'detection']
    with pytest.raises(ValueError, match="unknown detector 'detr'"):
        main_job.chain_stages('detr')
    spec = importlib.util.spec_from_file_location(
        'train_tiny', osp.join(ROOT, 'tools', 'train_tiny.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    args = cli.parse_args(['--detector', 'dino', '--segmentor',
                           'mask2former'])
    assert (args.detector, args.segmentor) == ('dino', 'mask2former')
    with pytest.raises(SystemExit):
        cli.parse_args(['--detector', 'detr'])
