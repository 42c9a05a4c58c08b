"""The main job (tools/train_tiny.py, stvit_mm.main_job): the tiny datasets
share one set of categories, are deterministic and hold out their validation
images; a shortened chain hands the trained classifier's backbone to the
detector and the segmentor unchanged, writes its summary and pictures, and
resumes without training a finished stage again."""
import glob
import hashlib
import json
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

import stvit_mm  # noqa: F401
from stvit_mm import main_job
from stvit_mm.tiny_datasets import CATEGORIES, ade_labels, make_all

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SMALL = dict(coco=(6, 3), ade=(6, 3), imagenet=(16, 8), size=64,
             imagenet_size=32)


def _digests(root):
    return {osp.relpath(p, root): hashlib.sha1(open(p, 'rb').read())
            .hexdigest()
            for p in glob.glob(osp.join(root, '**', '*'), recursive=True)
            if osp.isfile(p)}


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return make_all(str(tmp_path_factory.mktemp('tiny')), **SMALL)


def test_datasets_are_deterministic(data_root, tmp_path):
    again = make_all(str(tmp_path / 'again'), **SMALL)
    first, second = _digests(data_root), _digests(again)
    assert len(first) == 56 and first == second  # 24 + 11 + 18 + 2 + 1


def test_validation_images_are_held_out(data_root):
    for train, val in (('imagenet/train', 'imagenet/val'),
                       ('coco/train2017', 'coco/val2017'),
                       ('ade/ADEChallengeData2016/images/training',
                        'ade/ADEChallengeData2016/images/validation')):
        def pixels(split):
            paths = glob.glob(osp.join(data_root, split, '**', '*.jpg'),
                              recursive=True)
            assert paths
            return {hashlib.sha1(cv2.imread(p).tobytes()).hexdigest()
                    for p in paths}
        assert not pixels(train) & pixels(val), (train, val)


def test_one_set_of_categories_in_the_toolboxes_datasets(data_root):
    """mmpretrain's ImageNet, mmdet's CocoDataset and mmseg's ADE20KDataset
    read the three sets; their labels are the same categories."""
    from mmdet.datasets import CocoDataset
    from mmpretrain.datasets import ImageNet
    from mmseg.datasets import ADE20KDataset
    k = len(CATEGORIES)
    imagenet = ImageNet(data_root=osp.join(data_root, 'imagenet'),
                        split='train', pipeline=[])
    assert len(imagenet) == SMALL['imagenet'][0]
    assert set(imagenet.get_gt_labels().tolist()) <= set(range(k))

    coco = CocoDataset(data_root=osp.join(data_root, 'coco'),
                       ann_file='annotations/instances_train2017.json',
                       data_prefix=dict(img='train2017/'), pipeline=[])
    names = coco.metainfo['classes']
    labels = {inst['bbox_label'] for i in range(len(coco))
              for inst in coco.get_data_info(i)['instances']}
    assert {names[label] for label in labels} <= \
        {c.coco_name for c in CATEGORIES}
    assert len(labels) >= 2

    background, values = ade_labels()
    ade = ADE20KDataset(
        data_root=osp.join(data_root, 'ade', 'ADEChallengeData2016'),
        data_prefix=dict(img_path='images/training',
                         seg_map_path='annotations/training'), pipeline=[])
    assert len(ade) == SMALL['ade'][0]
    seen = set()
    for i in range(len(ade)):
        seen |= set(np.unique(cv2.imread(
            ade.get_data_info(i)['seg_map_path'], cv2.IMREAD_UNCHANGED)))
    assert background in seen and seen <= {background, *values}


def _build_initialised(stage_dir):
    """The stage's model from the config the chain ran, after
    init_weights(), i.e. before any training step."""
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(osp.join(stage_dir, 'config.py'))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
        model.init_weights()
    return model


@pytest.fixture(scope='module')
def chain(data_root, tmp_path_factory):
    work = str(tmp_path_factory.mktemp('chain'))
    summary = main_job.run_chain(
        work, data_root,
        iters={'classification': 4, 'detection': 2, 'segmentation': 2},
        compare_scratch=True)
    return work, summary


def test_chain_writes_summary_and_pictures(chain):
    work, summary = chain
    with open(osp.join(work, 'summary.json')) as f:
        written = json.load(f)
    assert written['seconds'] == pytest.approx(summary['seconds'])
    assert written['seconds'] > 0
    expected = {'classification': ['accuracy/top1'],
                'detection': ['coco/bbox_mAP', 'coco/segm_mAP'],
                'segmentation': ['mIoU']}
    for task, keys in expected.items():
        for key in keys:
            assert isinstance(written[task][key], float)
            assert isinstance(written[task]['chance'][key], float)
            if task != 'classification':
                assert isinstance(written[task]['scratch'][key], float)
    # chance of a 4-way guess
    assert written['classification']['chance']['accuracy/top1'] == \
        pytest.approx(100 / len(CATEGORIES), abs=5)
    for name in ('chain.png', 'super_tokens.png'):
        picture = cv2.imread(osp.join(work, name))
        assert picture is not None and picture.std() > 10, name


def test_detector_and_segmentor_start_from_the_trained_classifier(chain):
    """All backbone tensors, by name, equal the classifier's after the
    fine-tuning configs' init_cfg has run."""
    work, _ = chain
    record = json.load(open(osp.join(work, 'classification',
                                     'record.json')))
    classifier = torch.load(record['checkpoint'])['state_dict']
    trained = {k[len('backbone.'):]: v for k, v in classifier.items()
               if k.startswith('backbone.')}
    assert len(trained) > 50
    for stage in ('detection', 'segmentation'):
        backbone = _build_initialised(osp.join(work, stage)).backbone
        state = backbone.state_dict()
        assert set(state) == set(trained), stage
        for name, value in trained.items():
            torch.testing.assert_close(state[name], value, rtol=0, atol=0,
                                       msg=f'{stage}: {name}')
        scratch = _build_initialised(osp.join(work, f'{stage}_scratch'))
        assert not torch.equal(scratch.backbone.state_dict()[
            'patch_embed.proj.0.weight'], trained['patch_embed.proj.0.weight'])


def test_resumed_chain_trains_no_finished_stage(chain, data_root, capsys):
    work, _ = chain
    before = sorted(os.listdir(osp.join(work, 'detection')))
    main_job.run_chain(
        work, data_root,
        iters={'classification': 4, 'detection': 2, 'segmentation': 2},
        compare_scratch=True, resume=True, pictures=False)
    out = capsys.readouterr().out
    for stage in ('classification', 'detection', 'segmentation',
                  'detection_scratch', 'segmentation_scratch'):
        assert f'[{stage}] finished before' in out
    # no new run (a runner makes a timestamped log folder) in any stage
    assert sorted(os.listdir(osp.join(work, 'detection'))) == before


def test_resume_names_a_corrupt_stage_checkpoint(chain, data_root,
                                                 tmp_path):
    work, _ = chain
    copy = tmp_path / 'copy'
    import shutil
    shutil.copytree(work, copy)
    stage = copy / 'segmentation'
    os.remove(stage / 'record.json')  # as if killed before its evaluation
    pointer = (stage / 'last_checkpoint').read_text().strip()
    last = str(stage / osp.basename(pointer))
    (stage / 'last_checkpoint').write_text(last)
    with open(last, 'r+b') as f:
        f.truncate(100)
    with pytest.raises(main_job.StageError, match=re.escape(last)):
        main_job.run_chain(
            str(copy), data_root,
            iters={'classification': 4, 'detection': 2, 'segmentation': 2},
            compare_scratch=True, resume=True, pictures=False)
    os.remove(copy / 'classification' / main_job.HANDOVER_NAME)
    shutil.rmtree(copy / 'detection')
    with pytest.raises(main_job.StageError,
                       match=main_job.HANDOVER_NAME):
        main_job.run_single('detection', str(copy), data_root,
                            iters=2, resume=True)


def test_killed_stage_resumes_at_its_iteration(data_root, tmp_path):
    """tools/train_tiny.py killed mid-training continues from its last
    checkpoint with --resume."""
    work = tmp_path / 'work'
    command = [sys.executable, osp.join(ROOT, 'tools', 'train_tiny.py'),
               '--task', 'classification', '--data-root', data_root,
               '--work-dir', str(work), '--iters', '12']
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    last = work / 'classification' / 'last_checkpoint'
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # killed mid-training
    proc.wait()
    assert last.exists(), 'no checkpoint was written before the kill'
    saved = int(re.search(r'iter_(\d+)\.pth', last.read_text()).group(1))
    assert 0 < saved < 12

    result = subprocess.run(command + ['--resume'], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    logs = sorted(glob.glob(str(work / 'classification' / '*' / '*.log')),
                  key=os.path.getmtime)
    log = open(logs[-1]).read()
    assert f'iter_{saved}.pth' in log and 'resumed' in log.lower()
    assert not re.search(rf'Iter\(train\) \[\s*{saved}/12\]', log)
    assert 'classification: 12 iterations' in result.stdout
    assert 'accuracy/top1' in result.stdout


def test_chain_leaves_the_callers_registry_scope(chain, data_root):
    """Runners of three toolboxes in one process: afterwards the current
    default scope is the caller's again (a later mmpretrain inferencer
    looked its transforms up in mmseg's registry)."""
    from mmengine.registry import DefaultScope
    work, _ = chain
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        main_job.run_single('segmentation', work + '_scope', data_root,
                            iters=1, scratch=True)
        assert DefaultScope.get_current_instance().scope_name == 'mmpretrain'
