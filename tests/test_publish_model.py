"""publish_model.py: weights only, sha256-named, weights-only loadable."""
import hashlib
import os
import subprocess
import sys
import uuid

import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'tools', 'model_converters', 'publish_model.py')


class _Toy(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 2)
        self.norm = nn.BatchNorm1d(2)

    def forward(self, inputs, labels=None, mode='tensor'):
        # default_collate has stacked the batch: (B, 4), (B, 2)
        out = self.norm(self.linear(inputs))
        if mode == 'loss':
            return {'loss': (out - labels).pow(2).mean()}
        return out


def _runner_checkpoint(work_dir) -> str:
    data = [dict(inputs=torch.randn(4), labels=torch.randn(2))
            for _ in range(8)]
    runner = Runner(
        model=_Toy(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=data, batch_size=4,
                              sampler=dict(type='DefaultSampler',
                                           shuffle=False),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        param_scheduler=dict(type='LinearLR', by_epoch=False, begin=0,
                             end=2),
        train_cfg=dict(by_epoch=False, max_iters=2),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2,
                                           by_epoch=False)),
        experiment_name=f'publish_test_{uuid.uuid4().hex[:8]}')
    runner.train()
    return str(work_dir / 'iter_2.pth')


def _run(*args):
    proc = subprocess.run([sys.executable, SCRIPT, *args],
                          capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_publish_runner_checkpoint(tmp_path):
    source = _runner_checkpoint(tmp_path / 'work')
    original = torch.load(source, map_location='cpu', weights_only=False)
    assert {'optimizer', 'param_schedulers', 'message_hub'} <= set(original)

    final = _run(source, str(tmp_path / 'out' / 'toy.pth'))
    name = os.path.basename(final)
    assert os.path.dirname(final) == str(tmp_path / 'out')
    assert name.startswith('toy-') and name.endswith('.pth')
    with open(final, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert name == f'toy-{digest[:8]}.pth'
    assert not os.path.exists(tmp_path / 'out' / 'toy.pth')

    # plain torch, no allow-list: the published file holds tensors only
    published = torch.load(final, map_location='cpu', weights_only=True)
    assert set(published) == {'state_dict'}
    assert published['state_dict'].keys() == original['state_dict'].keys()
    for key, value in original['state_dict'].items():
        assert torch.equal(published['state_dict'][key], value)

    with_meta = _run(source, str(tmp_path / 'meta.pth'), '--keep-meta')
    import stvit_mm  # noqa: F401  (meta holds numpy scalars)
    kept = torch.load(with_meta, map_location='cpu', weights_only=True)
    assert set(kept) == {'state_dict', 'meta'}
    assert kept['meta']['iter'] == 2


def test_publish_plain_dict_and_missing_file(tmp_path):
    source = tmp_path / 'plain.pth'
    torch.save({'state_dict': {'w': torch.ones(3)},
                'optimizer': {'state': {}, 'param_groups': []}}, source)
    final = _run(str(source), str(tmp_path / 'plain_pub'))
    assert os.path.basename(final).startswith('plain_pub-')
    assert set(torch.load(final, weights_only=True)) == {'state_dict'}

    proc = subprocess.run([sys.executable, SCRIPT, str(tmp_path / 'no.pth'),
                           str(tmp_path / 'x.pth')], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode != 0
    assert 'checkpoint not found' in proc.stderr
