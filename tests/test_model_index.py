"""The model index: every config listed once with its task, dataset, the
paper's numbers and its true parameter count; classifiers found by name
through mmpretrain (list_models, get_model, inference_model) once stvit_mm
is imported, from the repository and from a regular (wheel) install; and
pretrained=True says where the official weights are."""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml
from mmengine.config import Config
from mmengine.registry import DefaultScope

import stvit_mm  # noqa: F401  (registers the index with mmpretrain)
from stvit_mm.apis.model_index import WeightsNotHostedError, load_index

from model_configs import model_configs  # beside the tests

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAPER_CLASSIFIERS = ['stvit_b_in1k', 'stvit_b_in1k_384', 'stvit_l_in1k',
                     'stvit_l_in1k_384', 'stvit_s_in1k', 'stvit_s_in1k_384']
# the paper's, and the layer-decay fine-tuning recipe (no result of its own)
CLASSIFIERS = sorted(PAPER_CLASSIFIERS + ['stvit_s_in1k_ft_lrd'])
# configs the paper has no row for: indexed with what they cost, no Results
NOT_IN_PAPER = {
    'cascade_mask_rcnn_stvit_s_3x', 'cascade_mask_rcnn_stvit_l_3x',
    'dino_4scale_stvit_s_12e', 'dino_4scale_stvit_b_12e',
    'dino_4scale_stvit_l_12e', 'dino_5scale_stvit_l_12e',
    'mask2former_stvit_s_lsj_50e', 'mask2former_stvit_s_160k',
    'mask2former_stvit_b_160k', 'mask_rcnn_stvit_s_lrd',
    'upernet_stvit_s_lrd', 'stvit_s_in1k_ft_lrd'}
# task -> (toolbox scope, results' tasks, dataset)
TASKS = {
    'classification': ('mmpretrain', {'Image Classification'}, 'ImageNet-1k'),
    'detection': ('mmdet', {'Object Detection', 'Instance Segmentation'},
                  'COCO'),
    'segmentation': ('mmseg', {'Semantic Segmentation'}, 'ADE20K'),
}


def test_every_config_is_indexed_once():
    index = yaml.safe_load(open(osp.join(ROOT, 'model-index.yml')))
    entries = []
    for metafile in index['Import']:
        entries += yaml.safe_load(open(osp.join(ROOT, metafile)))['Models']
    assert sorted(e['Config'] for e in entries) == model_configs()
    assert len({e['Name'] for e in entries}) == len(entries)
    for entry in entries:
        task = entry['Config'].split('/')[1]
        _, tasks, dataset = TASKS[task]
        if 'Results' not in entry:  # only configs the paper has no row for
            assert entry['Name'] in NOT_IN_PAPER
            assert entry['Metadata']['Parameters'] > 1e6
            continue
        assert {r['Task'] for r in entry['Results']} == tasks
        assert {r['Dataset'] for r in entry['Results']} == {dataset}
        assert entry['Metadata']['FLOPs'] > 1e9


def test_paper_numbers():
    index = load_index()
    assert index['stvit_s_in1k']['Results'][0]['Metrics'] == \
        {'Top 1 Accuracy': 83.6}
    assert index['stvit_l_in1k_384']['Metadata']['FLOPs'] == 49.7e9
    box, mask = index['cascade_mask_rcnn_stvit_b_3x']['Results']
    assert (box['Metrics'], mask['Metrics']) == ({'box AP': 53.9},
                                                 {'mask AP': 46.8})
    assert index['upernet_stvit_b']['Results'][0]['Metrics'] == \
        {'mIoU': 50.7, 'mIoU(ms+flip)': 51.9}


@pytest.mark.parametrize('name', sorted(load_index()))
def test_parameter_counts_match_the_built_models(name):
    entry = load_index()[name]
    cfg = Config.fromfile(osp.join(ROOT, entry['Config']))
    cfg.model.backbone.init_cfg = None
    scope = cfg.default_scope
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg.model)
    assert entry['Metadata']['Parameters'] == sum(
        p.numel() for p in model.parameters())


def test_list_models_finds_the_classifiers():
    import mmpretrain
    assert mmpretrain.list_models('*stvit*') == CLASSIFIERS
    assert mmpretrain.list_models('stvit_s') == [
        'stvit_s_in1k', 'stvit_s_in1k_384', 'stvit_s_in1k_ft_lrd']
    assert set(PAPER_CLASSIFIERS) <= set(mmpretrain.list_models(
        task='Image Classification'))


def test_get_model_by_name_loads_weights_and_infers(tmp_path):
    import mmpretrain
    from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
    model = mmpretrain.get_model('stvit_s_in1k')
    with torch.no_grad():
        model.head.fc.bias.fill_(-5.)
        model.head.fc.bias[417] = 20.  # the checkpoint's answer
    path = tmp_path / 'stvit_s_in1k_mm.pth'
    torch.save({'state_dict': model.state_dict()}, path)

    loaded = mmpretrain.get_model('stvit_s_in1k', pretrained=str(path))
    torch.testing.assert_close(loaded.head.fc.bias, model.head.fc.bias)
    image = tmp_path / 'image.jpg'
    cv2.imwrite(str(image), np.random.default_rng(0).integers(
        0, 255, (160, 200, 3), dtype=np.uint8))
    result = mmpretrain.inference_model(loaded, str(image))
    assert result['pred_label'] == 417 and result['pred_score'] > 0.99
    assert result['pred_class'] == IMAGENET_CATEGORIES[417]


def test_pretrained_true_says_where_the_weights_are():
    import mmpretrain
    with pytest.raises(WeightsNotHostedError) as info:
        mmpretrain.get_model('stvit_b_in1k_384', pretrained=True)
    message = str(info.value)
    assert 'No weights are hosted for stvit_b_in1k_384' in message
    assert 'stvit-base-384.pth' in message
    assert 'https://drive.google.com/drive/folders/' in message
    assert ('python tools/model_converters/official_to_mm.py stvit-base-384.pth'
            ' checkpoints/stvit_b_in1k_384_mm.pth') in message
    assert "pretrained='checkpoints/stvit_b_in1k_384_mm.pth'" in message


def test_regular_install_carries_the_index(tmp_path):
    """A wheel (not editable) holds the index and configs under
    stvit_mm/.mim, and mmpretrain finds the models from it."""
    src = tmp_path / 'src'
    src.mkdir()
    for name in ('setup.py', 'README.md', 'model-index.yml'):
        shutil.copy(osp.join(ROOT, name), src / name)
    for name in ('stvit_mm', 'configs'):
        shutil.copytree(osp.join(ROOT, name), src / name,
                        ignore=shutil.ignore_patterns('__pycache__'))
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check']
    subprocess.run(pip + ['wheel', '-q', '--no-deps', '--no-build-isolation',
                          '-w', str(tmp_path / 'dist'), str(src)],
                   check=True, capture_output=True)
    wheel, = glob.glob(str(tmp_path / 'dist' / '*.whl'))
    subprocess.run(pip + ['install', '-q', '--no-deps', '--target',
                          str(tmp_path / 'site'), wheel],
                   check=True, capture_output=True)
    site = tmp_path / 'site'
    assert (site / 'stvit_mm' / '.mim' / 'model-index.yml').is_file()
    assert (site / 'stvit_mm' / '.mim' / 'configs' / '_base_' /
            'stvit_backbones.py').is_file()
    script = ('import stvit_mm, mmpretrain; print(stvit_mm.__file__); '
              "print(mmpretrain.list_models('*stvit*')); "
              "m = mmpretrain.get_model('stvit_s_in1k'); "
              'print(type(m.backbone).__name__)')
    result = subprocess.run(
        [sys.executable, '-c', script], capture_output=True, text=True,
        cwd=str(tmp_path), env=dict(__import__('os').environ,
                                    PYTHONPATH=str(site)))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(str(site))
    assert lines[1] == str(CLASSIFIERS)
    assert lines[-1] == 'STViT'


def test_import_without_mmpretrain():
    """Detection and segmentation users need no mmpretrain: the index is
    then simply not registered."""
    result = subprocess.run([sys.executable, '-c', (
        "import sys; sys.modules['mmpretrain'] = None\n"
        'import stvit_mm\n'
        'from stvit_mm.apis.model_index import register_model_index\n'
        'print(register_model_index())')], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == 'False'
