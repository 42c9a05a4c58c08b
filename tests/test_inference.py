"""tools/inference.py on the three tasks' real configs and toolbox
inferencers, one process per task as a user runs it, on images of the tiny
datasets, with checkpoints made here whose answer is known: their
classifier biases make one class win everywhere, so the printed predictions
prove the checkpoint was loaded and read correctly."""
import glob
import json
import os.path as osp
import re
import subprocess
import sys

import cv2
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import stvit_mm  # noqa: F401
from stvit_mm.tiny_datasets import make_all

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(ROOT, 'tools', 'inference.py')


DET = 'configs/detection/mask_rcnn_stvit_s.py'
SEG = 'configs/segmentation/upernet_stvit_s.py'
CLS = 'configs/classification/stvit_s_in1k.py'


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    return make_all(str(tmp_path_factory.mktemp('tiny')))


@pytest.fixture(scope='module')
def coco_names(tiny_data):
    ann, = glob.glob(osp.join(tiny_data, 'coco', 'annotations',
                              '*val*.json'))
    return [c['name'] for c in json.load(open(ann))['categories']]


@pytest.fixture(scope='module')
def det_checkpoint(tmp_path_factory, coco_names):
    def bias(model):  # every RoI is the second category, masks all on
        fc_cls = model.roi_head.bbox_head.fc_cls
        fc_cls.weight.zero_()  # the bias alone decides
        fc_cls.bias.fill_(-10.)
        fc_cls.bias[1] = 10.
        model.roi_head.mask_head.conv_logits.bias.fill_(10.)

    path = str(tmp_path_factory.mktemp('ckpt') / 'det.pth')
    _checkpoint(DET, path, bias, meta={'classes': coco_names})
    return path


@pytest.fixture(scope='module')
def seg_checkpoint(tmp_path_factory):
    from mmseg.datasets import ADE20KDataset

    def bias(model):  # every pixel is class 7
        conv_seg = model.decode_head.conv_seg
        conv_seg.weight.zero_()  # the bias alone decides
        conv_seg.bias.fill_(-10.)
        conv_seg.bias[7] = 10.

    path = str(tmp_path_factory.mktemp('ckpt') / 'seg.pth')
    _checkpoint(SEG, path, bias, meta=dict(ADE20KDataset.METAINFO))
    return path


@pytest.fixture(scope='module')
def cls_checkpoint(tmp_path_factory):
    def bias(model):  # ranks classes 3 > 5 > 8 > 13 > 21 > the rest
        model.head.fc.weight.zero_()  # the bias alone decides
        model.head.fc.bias.fill_(-20.)
        for rank, label in enumerate((3, 5, 8, 13, 21)):
            model.head.fc.bias[label] = 10. - rank

    path = str(tmp_path_factory.mktemp('ckpt') / 'cls.pth')
    _checkpoint(CLS, path, bias)
    return path


def _first_image(root):
    images = sorted(glob.glob(osp.join(root, '**', '*.jpg'), recursive=True))
    assert images, f'no image under {root}'
    return images[0]


def _checkpoint(config, path, bias, meta=None):
    """Save the config's model (random weights) with ``bias(model)``
    applied; returns the model."""
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.model.backbone.init_cfg = None
    scope = cfg.default_scope
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg.model)
    with torch.no_grad():
        bias(model)
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': meta} if meta else {}}, path)


# rich draws the inferencers' progress bar on stdout; where it thinks it has a
# terminal (FORCE_COLOR, TTY_INTERACTIVE, a CI runner's pty) the bar comes
# with colour codes, is redrawn after the snippet's print, or has no newline
# before it.
_ANSI = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')
_PROGRESS = re.compile(r'Inference [━ ]*\d+%\s*(?:\d+:\d\d:\d\d|-:--:--)')


def _printed_lines(stdout):
    """The snippet's own printed lines, without the progress bars."""
    lines = (_PROGRESS.sub('', _ANSI.sub('', line)).rstrip()
             for line in stdout.splitlines())
    return [line for line in lines if line.strip()]


def _run(image, config, checkpoint, out, *options):
    result = subprocess.run(
        [sys.executable, TOOL, image, osp.join(ROOT, config), checkpoint,
         '--out', out, *options], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    picture = cv2.imread(out)
    assert picture is not None and picture.std() > 0, 'no picture written'
    return '\n'.join(_printed_lines(result.stdout)) + '\n', picture


def test_detection(tiny_data, coco_names, det_checkpoint, tmp_path):
    image = _first_image(osp.join(tiny_data, 'coco'))
    out, picture = _run(image, DET, det_checkpoint,
                        str(tmp_path / 'det.png'), '--score-thr', '0.5')
    assert f'\ndetection: {image}\n' in out
    count = int(re.search(r'^(\d+) detections with score >= 0.5', out,
                          re.M).group(1))
    rows = re.findall(rf'^  {re.escape(coco_names[1])}\s+([\d.]+)  '
                      r'box \[([\d, ]+)\]  mask (\d+) px$', out, re.M)
    assert count > 0 and len(rows) == min(count, 20), out
    height, width = cv2.imread(image).shape[:2]
    for score, box, mask in rows:
        x1, y1, x2, y2 = map(int, box.split(', '))
        assert float(score) > 0.99 and 0 <= x1 <= x2 <= width \
            and 0 <= y1 <= y2 <= height
        # all-on mask logits fill the box (a box under a pixel wide: none)
        assert int(mask) <= (x2 - x1 + 2) * (y2 - y1 + 2)
    assert sum(int(mask) for _, _, mask in rows) > 0
    assert picture.shape[:2] == (height, width)


def test_segmentation(tiny_data, seg_checkpoint, tmp_path):
    from mmseg.datasets import ADE20KDataset
    classes = ADE20KDataset.METAINFO['classes']
    image = _first_image(osp.join(tiny_data, 'ade'))
    out, picture = _run(image, SEG, seg_checkpoint, str(tmp_path / 'seg.png'))
    height, width = cv2.imread(image).shape[:2]
    assert f'1 classes in the segmentation map ({height}x{width} pixels)' \
        in out
    assert re.search(rf'^  {re.escape(classes[7])}\s+100.00%$', out,
                     re.M), out
    assert picture.shape[:2] == (height, width)


def test_classification(tiny_data, cls_checkpoint, tmp_path):
    from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
    image = _first_image(osp.join(tiny_data, 'imagenet'))
    out, picture = _run(image, CLS, cls_checkpoint, str(tmp_path / 'cls.png'))
    assert 'top-5 of 1000 classes' in out
    ranked = re.findall(r'^  (\d)\. (.+?)\s+([\d.]+)$', out, re.M)
    assert [name for _, name, _ in ranked] == \
        [IMAGENET_CATEGORIES[i] for i in (3, 5, 8, 13, 21)]
    scores = [float(s) for _, _, s in ranked]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.5
    assert min(picture.shape[:2]) == 384  # small images are enlarged


def _readme_snippet(marker):
    readme = open(osp.join(ROOT, 'README.md')).read()
    return re.search(rf'<!-- {marker} -->\s*```python\n(.*?)```', readme,
                     re.S).group(1)


@pytest.mark.parametrize('toolbox', ['mmdet', 'mmseg', 'mmpretrain'])
def test_readme_python_runs(toolbox, tiny_data, det_checkpoint,
                            seg_checkpoint, cls_checkpoint, tmp_path):
    """README's inferencer snippets, as written, with only the image, the
    checkpoint and the output folder pointed at this test's files."""
    image = _first_image(osp.join(tiny_data, 'coco'))
    code = _readme_snippet(f'inference-{toolbox}')
    for old, new in [
            ('work_dirs/mask_rcnn_stvit_s/epoch_12.pth', det_checkpoint),
            ('work_dirs/upernet_stvit_s/iter_160000.pth', seg_checkpoint),
            ('checkpoints/stvit_s_in1k_mm.pth', cls_checkpoint),
            ("'demo.jpg'", repr(image)),
            ("'outputs'", repr(str(tmp_path / 'outputs')))]:
        code = code.replace(old, new)
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = _printed_lines(result.stdout)[-1]  # after the logs
    if toolbox == 'mmpretrain':
        from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
        assert printed == IMAGENET_CATEGORIES[3]
    else:
        assert (tmp_path / 'outputs' / 'vis' / osp.basename(image)).is_file()
    if toolbox == 'mmseg':
        height, width = cv2.imread(image).shape[:2]
        assert printed == str((height, width))
    if toolbox == 'mmdet':
        assert printed.startswith('[1, 1, 1')  # labels: the second class


def test_readme_model_index_python_runs(tiny_data, cls_checkpoint):
    image = _first_image(osp.join(tiny_data, 'imagenet'))
    code = _readme_snippet('model-index-python').replace(
        'checkpoints/stvit_s_in1k_mm.pth', cls_checkpoint).replace(
        "'demo.jpg'", repr(image))
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
    lines = _printed_lines(result.stdout)
    assert "['stvit_b_in1k', 'stvit_b_in1k_384', 'stvit_l_in1k', " \
        "'stvit_l_in1k_384', 'stvit_s_in1k', 'stvit_s_in1k_384', " \
        "'stvit_s_in1k_ft_lrd']" in lines
    assert lines[-1] == IMAGENET_CATEGORIES[3]


def test_bad_input_is_named(tmp_path):
    result = subprocess.run(
        [sys.executable, TOOL, str(tmp_path / 'missing.jpg'),
         osp.join(ROOT, CLS),
         '--out', str(tmp_path / 'x.png')], capture_output=True, text=True)
    assert result.returncode != 0
    assert f'image not found: {tmp_path / "missing.jpg"}' in result.stderr
    assert 'Traceback' not in result.stderr
