"""The paper's configs on the toolboxes' real runners, on tiny embedded data:
train, save, resume, test; mim entry points; every config builds its model
in its toolbox. (A killed main-job run resuming: tests/test_main_job.py.)"""
import os
import os.path as osp
import re
import subprocess
import sys
import uuid

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

import stvit_mm  # noqa: F401
from stvit_mm.tiny import apply_tiny_overrides, task_of
from stvit_mm.tiny_datasets import make_all

from model_configs import model_configs  # beside the tests

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
VENV_BIN = osp.dirname(sys.executable)

CASES = [
    ('configs/detection/mask_rcnn_stvit_s.py', 'coco/bbox_mAP'),
    ('configs/segmentation/upernet_stvit_s.py', 'mIoU'),
    ('configs/classification/stvit_s_in1k.py', 'accuracy/top1'),
]


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    return make_all(str(tmp_path_factory.mktemp('tiny')), coco=(8, 4),
                    ade=(8, 4), imagenet=(12, 6))


def _tiny_cfg(config, data_root, work_dir, iters, **kwargs):
    cfg = Config.fromfile(osp.join(ROOT, config))
    apply_tiny_overrides(cfg, data_root, str(work_dir), iters=iters,
                         **kwargs)
    cfg.default_hooks.logger.interval = 1
    cfg.experiment_name = f'test_{uuid.uuid4().hex[:8]}'
    return cfg


def _log_text(runner):
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        return f.read()


@pytest.mark.parametrize('config,metric', CASES)
def test_train_resume_test(config, metric, tiny_data, tmp_path):
    cfg = _tiny_cfg(config, tiny_data, tmp_path, iters=2, val_interval=4,
                    checkpoint_interval=2)
    Runner.from_cfg(cfg).train()
    assert osp.isfile(tmp_path / 'iter_2.pth')

    cfg = _tiny_cfg(config, tiny_data, tmp_path, iters=4,
                    checkpoint_interval=2)
    cfg.resume = True  # picks work_dir/last_checkpoint (iter_2.pth)
    runner = Runner.from_cfg(cfg)
    runner.train()
    log = _log_text(runner)
    assert 'resumed' in log.lower() and 'iter_2.pth' in log
    assert re.search(r'Iter\(train\) \[3/4\]', log)
    assert not re.search(r'Iter\(train\) \[1/4\]', log)
    assert runner.iter == 4

    cfg = _tiny_cfg(config, tiny_data, tmp_path, iters=4)
    cfg.load_from = str(tmp_path / 'iter_4.pth')  # weights-only load
    metrics = Runner.from_cfg(cfg).test()
    assert metric in metrics
    assert 0 <= metrics[metric] <= 100


@pytest.mark.parametrize('config,metric', CASES)
def test_mim_train_and_test(config, metric, tiny_data, tmp_path):
    cfg = _tiny_cfg(config, tiny_data, tmp_path / 'work', iters=2)
    cfg_file = tmp_path / 'tiny_config.py'
    cfg.dump(str(cfg_file))
    package = {'detection': 'mmdet', 'segmentation': 'mmseg',
               'classification': 'mmpretrain'}[task_of(cfg)]
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ['PATH'])
    train = subprocess.run(
        [osp.join(VENV_BIN, 'mim'), 'train', package, str(cfg_file),
         '--gpus', '0', '--work-dir', str(tmp_path / 'work')],
        capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    checkpoint = tmp_path / 'work' / 'iter_2.pth'
    assert checkpoint.is_file()
    test = subprocess.run(
        [osp.join(VENV_BIN, 'mim'), 'test', package, str(cfg_file),
         '--checkpoint', str(checkpoint), '--gpus', '0',
         '--work-dir', str(tmp_path / 'test')],
        capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-3000:]
    assert metric in test.stdout + test.stderr


@pytest.mark.parametrize('config', model_configs())
def test_every_config_builds_its_model(config):
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.model.backbone.init_cfg = None
    scope = cfg.default_scope
    registry = {
        'mmdet': 'mmdet.registry', 'mmseg': 'mmseg.registry',
        'mmpretrain': 'mmpretrain.registry'}[scope]
    models = __import__(registry, fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = models.build(cfg.model)
    assert type(model.backbone).__name__ == 'STViT'
    assert model.backbone.arch_zoo[cfg.model.backbone.arch]['embed_dims'] == \
        model.backbone.embed_dims


def test_readme_custom_imports_example(tiny_data, tmp_path, monkeypatch):
    """README's snippet (mmdet's own Mask R-CNN R-50 config with only
    custom_imports and a backbone swap) trains from a checkpoint converted
    from an official-format file, through the runner."""
    from reference_stvit import make_official_checkpoint
    from stvit_mm import STViT
    import torch

    readme = open(osp.join(ROOT, 'README.md')).read()
    snippet = re.search(r'<!-- custom-imports-example -->\s*```python\n(.*?)'
                        r'```', readme, re.S).group(1)
    config = tmp_path / 'mask_rcnn_r50_to_stvit.py'
    config.write_text(snippet)

    monkeypatch.chdir(tmp_path)  # the snippet's checkpoint path is relative
    official, _ = make_official_checkpoint(STViT('s'), num_classes=1000,
                                           tail_dim=1024)
    torch.save(official, tmp_path / 'official.pth')
    os.makedirs(tmp_path / 'checkpoints')
    subprocess.run([sys.executable, osp.join(
        ROOT, 'tools', 'model_converters', 'official_to_mm.py'),
        'official.pth', 'checkpoints/stvit_s_in1k_mm.pth'], check=True)

    cfg = Config.fromfile(str(config))
    assert cfg.model.backbone.type == 'STViT'
    apply_tiny_overrides(cfg, tiny_data, str(tmp_path / 'work'), iters=2,
                         from_scratch=False)
    cfg.experiment_name = f'test_{uuid.uuid4().hex[:8]}'
    runner = Runner.from_cfg(cfg)
    runner.train()
    converted = torch.load('checkpoints/stvit_s_in1k_mm.pth')['state_dict']
    # the converted weights reached the backbone: norm_eval keeps BN running
    # statistics fixed during training, so they still equal the file's
    bn_mean = runner.model.backbone.patch_embed.proj[2].running_mean
    torch.testing.assert_close(
        bn_mean, converted['backbone.patch_embed.proj.2.running_mean'])
    assert 'Loaded' in _log_text(runner)


def test_two_process_cpu_training(tiny_data, tmp_path):
    """tools/dist_train.sh with 2 processes (gloo on CPU) trains, saves and
    evaluates Mask R-CNN through the runner."""
    cfg = _tiny_cfg(CASES[0][0], tiny_data, tmp_path / 'work', iters=4)
    cfg_file = tmp_path / 'tiny_dist.py'
    cfg.dump(str(cfg_file))
    env = dict(os.environ, PORT=str(29500 + os.getpid() % 1000),
               OMP_NUM_THREADS='1')
    result = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), str(cfg_file), '2',
         '--work-dir', str(tmp_path / 'work')],
        capture_output=True, text=True, env=env, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert (tmp_path / 'work' / 'iter_4.pth').is_file()
    assert re.search(r'world_size: 2|world size: 2|"world_size": 2', output,
                     re.I) or 'Distributed launcher: pytorch' in output \
        or 'distributed: True' in output
    assert 'coco/bbox_mAP' in output
