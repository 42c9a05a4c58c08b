"""Bad checkpoint files give an error that names the file and the problem,
at every entry point (converter, backbone init_cfg, the Runner's load_from
and resume, tools/train.py --resume, tools/test.py, init_detector); nothing
from an unsafe file runs, and no message advises weights_only=False."""
import os
import os.path as osp
import re
import runpy
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner

import stvit_mm  # noqa: F401  (registers the checked loader)
from stvit_mm import STViT

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = dict(embed_dims=[8, 16, 24, 32], depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1])
CONFIG = osp.join(ROOT, 'configs', 'classification', 'stvit_s_in1k.py')


class _Payload:
    """Pickles as a call of os.system: loading it would create a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


# case -> what the message must say besides the file name
EXPECTED = {
    'missing': r'not found',
    'empty': r'is empty \(0 bytes\)',
    'text': r'is not a PyTorch checkpoint.*text file',
    'truncated': r'is truncated or corrupted',
    'unsafe': r'asks for \S*system.*may be unsafe.*Nothing from it was '
              r'executed',
    'no_stvit': r'no STViT .*weights|None of the weights',
}


@pytest.fixture
def bad_files(tmp_path):
    """case -> path of a file of that kind (and the unsafe file's marker)."""
    files = {case: str(tmp_path / f'{case}.pth') for case in EXPECTED}
    open(files['empty'], 'wb').close()
    with open(files['text'], 'w') as f:
        f.write('<html><body>Sign in to download</body></html>\n')
    good = {'state_dict': {f'backbone.{k}': v for k, v in
                           STViT(TINY).state_dict().items()}}
    torch.save(good, tmp_path / 'good.pth')
    data = (tmp_path / 'good.pth').read_bytes()
    with open(files['truncated'], 'wb') as f:
        f.write(data[:len(data) // 2])  # an interrupted download
    marker = tmp_path / 'pwned'
    torch.save({'state_dict': {}, 'meta': _Payload(marker)}, files['unsafe'])
    torch.save({'state_dict': {'backbone.conv1.weight': torch.ones(4, 3, 7, 7),
                               'head.fc.weight': torch.ones(2, 4)}},
               files['no_stvit'])
    yield files
    assert not marker.exists(), 'the unsafe pickle was executed'


def _check_message(message, path, case):
    assert path in message, message
    assert re.search(EXPECTED[case], message, re.S), message
    assert 'weights_only=False' not in message
    assert 'weights_only` set to `False' not in message


def _run_tool(monkeypatch, tool, *args):
    """Run a tool's command line in this process (no interpreter start-up
    per case); returns what it exited with: its error message."""
    monkeypatch.setattr(sys, 'argv', [tool, *args])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(osp.join(ROOT, 'tools', tool), run_name='__main__')
    assert info.value.code not in (0, None)
    return str(info.value.code)


@pytest.mark.parametrize('case', list(EXPECTED))
def test_converter(bad_files, case, tmp_path, monkeypatch):
    message = _run_tool(monkeypatch, 'model_converters/official_to_mm.py',
                        bad_files[case], str(tmp_path / 'out.pth'))
    _check_message(message, bad_files[case], case)
    assert not (tmp_path / 'out.pth').exists()


def test_converter_command_line(bad_files, tmp_path):
    """As a user runs it: a one-line error, no traceback."""
    result = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'model_converters',
                                  'official_to_mm.py'), bad_files['text'],
         str(tmp_path / 'out.pth')], capture_output=True, text=True)
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    _check_message(result.stderr, bad_files['text'], 'text')


@pytest.mark.parametrize('case', list(EXPECTED))
def test_backbone_init_cfg(bad_files, case):
    model = STViT(TINY, init_cfg=dict(type='Pretrained',
                                      checkpoint=bad_files[case]))
    with pytest.raises(Exception) as info:
        model.init_weights()
    _check_message(str(info.value), bad_files[case], case)


class _Toy(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, targets=None, mode='loss'):
        return dict(loss=self.linear(torch.stack(inputs)).sum())


@pytest.mark.parametrize('resume', [False, True])
@pytest.mark.parametrize('case', ['missing', 'empty', 'text', 'truncated',
                                  'unsafe'])
def test_runner_load_from_and_resume(bad_files, case, resume, tmp_path):
    """mmengine's own Runner (as mim and the toolboxes' tools use it) reads
    load_from / resume files through the checked loader."""
    runner = Runner(
        model=_Toy(), work_dir=str(tmp_path / 'work'),
        train_dataloader=dict(
            dataset=[dict(inputs=torch.randn(2))] * 2, batch_size=2,
            collate_fn=dict(type='pseudo_collate'),
            sampler=dict(type='DefaultSampler', shuffle=False)),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        load_from=bad_files[case], resume=resume)
    with pytest.raises(Exception) as info:
        runner.train()
    _check_message(str(info.value), bad_files[case], case)


@pytest.mark.parametrize('case', list(EXPECTED))
def test_tools_test(bad_files, case, monkeypatch):
    message = _run_tool(monkeypatch, 'test.py', CONFIG, bad_files[case],
                        '--work-dir', osp.dirname(bad_files[case]))
    _check_message(message, bad_files[case], case)


@pytest.mark.parametrize('case', list(EXPECTED))
def test_tools_train_resume(bad_files, case, monkeypatch):
    message = _run_tool(monkeypatch, 'train.py', CONFIG, '--resume',
                        bad_files[case], '--work-dir',
                        osp.dirname(bad_files[case]))
    _check_message(message, bad_files[case], case)


@pytest.mark.parametrize('case', ['text', 'unsafe'])
def test_init_detector(bad_files, case):
    from mmdet.apis import init_detector
    with pytest.raises(Exception) as info:
        init_detector(osp.join(ROOT, 'configs', 'detection',
                               'mask_rcnn_stvit_s.py'), bad_files[case],
                      device='cpu')
    _check_message(str(info.value), bad_files[case], case)
