"""torch.load stays weights-only; the allow-list covers exactly what official
and mmengine checkpoints need, and nothing that runs code."""
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader

import stvit_mm  # noqa: F401  (registers the allow-list)
from reference_stvit import make_official_checkpoint
from stvit_mm import STViT


def test_official_checkpoint_loads_weights_only(tmp_path):
    checkpoint, _ = make_official_checkpoint(
        STViT(dict(embed_dims=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                   num_heads=[1, 1, 1, 1])))
    torch.save(checkpoint, tmp_path / 'official.pth')
    loaded = torch.load(tmp_path / 'official.pth', weights_only=True)
    assert loaded['args'].model == 'stvit_small'


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f'touch {self.path}', ))


def test_checkpoint_calling_a_function_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': _Payload(marker)}, path)
    with pytest.raises(pickle.UnpicklingError, match='system'):
        torch.load(path)
    with pytest.raises(pickle.UnpicklingError):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()


@pytest.mark.parametrize('target', [HistoryBuffer.__init__,
                                    HistoryBuffer.register_statistics])
def test_getattr_is_limited_to_history_buffer_statistics(tmp_path, target):
    # protocol 2 pickles these as getattr(HistoryBuffer, name)
    path = tmp_path / 'getattr.pth'
    torch.save({'meta': target}, path)
    with pytest.raises(pickle.UnpicklingError, match='refused getattr'):
        torch.load(path)


class _Toy(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, targets, mode='loss'):
        loss = (self.linear(torch.stack(inputs)) - torch.stack(targets))
        return dict(loss=loss.square().mean())


def _runner(work_dir, max_epochs, resume):
    data = [dict(inputs=torch.randn(2), targets=torch.randn(1))
            for _ in range(8)]
    return Runner(
        model=_Toy(), work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=data, batch_size=2, collate_fn=dict(type='pseudo_collate'),
            sampler=dict(type='DefaultSampler', shuffle=True)),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1]),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        resume=resume, randomness=dict(seed=0))


def test_mmengine_checkpoint_resumes_weights_only(tmp_path):
    runner = _runner(tmp_path, max_epochs=1, resume=False)
    runner.train()
    saved = torch.load(tmp_path / 'epoch_1.pth')  # weights_only default
    assert isinstance(saved['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)
    assert isinstance(saved['meta']['seed'], (int, np.integer))
    resumed = _runner(tmp_path, max_epochs=2, resume=True)
    resumed.train()
    assert resumed.epoch == 2 and resumed.iter == 8
    assert os.path.exists(tmp_path / 'epoch_2.pth')
