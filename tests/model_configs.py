"""The model configs of the three task folders, for the tests that go over
all of them: configs/_base_ holds shared pieces and configs/deployment
mmdeploy's configs, neither of which is a model."""
import glob
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TASK_FOLDERS = ('classification', 'detection', 'segmentation')


def model_configs() -> list:
    """Sorted paths relative to the repository root, e.g.
    ``configs/detection/mask_rcnn_stvit_s.py``."""
    return sorted(osp.relpath(path, ROOT) for task in TASK_FOLDERS
                  for path in glob.glob(osp.join(ROOT, 'configs', task,
                                                 '*.py')))
