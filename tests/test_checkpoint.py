"""Official checkpoints: conversion to the mm format, loading into the
classifier and into a bare backbone, and clear errors on mismatches."""
import copy
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.runner import load_checkpoint

from reference_stvit import make_official_checkpoint, official_forward
from stvit_mm import STViT
from stvit_mm.utils import official_to_mm, pick_state_dict

TINY = dict(embed_dims=[16, 32, 48, 64], depths=[1, 2, 1, 1],
            num_heads=[1, 2, 3, 4], layer_scale_init_values=[0, 0, 1e-6, 1e-6])
STOKENS = (4, 2, 1, 1)
CONVERTER = (Path(__file__).parents[1] / 'tools' / 'model_converters' /
             'official_to_mm.py')


def _convert(tmp_path, **kwargs):
    """Write an official-format file and convert it with the real CLI."""
    checkpoint, sd = make_official_checkpoint(STViT(TINY), **kwargs)
    src, dst = tmp_path / 'official.pth', tmp_path / 'converted.pth'
    torch.save(checkpoint, src)
    result = subprocess.run(
        [sys.executable, str(CONVERTER), str(src), str(dst)],
        capture_output=True, text=True, check=True)
    assert 'Saved' in result.stdout
    return src, dst, sd


def _classifier():
    from mmpretrain.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    return MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='STViT', arch=TINY, stoken_size=STOKENS),
        neck=dict(type='STViTClsNeck', in_channels=64, out_channels=24),
        head=dict(type='LinearClsHead', num_classes=7, in_channels=24)))


@pytest.mark.parametrize('ddp', [False, True])
def test_converted_checkpoint_gives_official_logits(tmp_path, ddp):
    _, dst, sd = _convert(tmp_path, ddp=ddp)
    converted = torch.load(dst)  # weights-only by default: tensors only
    assert set(converted) == {'state_dict'}
    keys = converted['state_dict']
    assert {k.split('.')[0] for k in keys} == {'backbone', 'neck', 'head'}
    assert not any('unfold' in k or '.fold.' in k for k in keys)

    model = _classifier()
    load_checkpoint(model, str(dst), strict=True)
    model.eval()
    x = torch.randn(2, 3, 45, 53)
    with torch.no_grad():
        logits = model(x, mode='tensor')
        expected = official_forward(sd, x, TINY['depths'], TINY['num_heads'],
                                    STOKENS)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('which', ['official', 'converted'])
def test_backbone_pretrained_init_cfg(tmp_path, which):
    src, dst, sd = _convert(tmp_path)
    path = src if which == 'official' else dst
    model = STViT(TINY, stoken_size=STOKENS, init_cfg=dict(
        type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    model.init_weights()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, sd[key], msg=key)


def test_no_match_fails_loudly(tmp_path):
    _, dst, _ = _convert(tmp_path)
    model = STViT(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(dst),
                                      prefix='neck.'))
    with pytest.raises(ValueError, match='None of the weights'):
        model.init_weights()
    other = STViT(dict(TINY, embed_dims=[8, 16, 24, 32]),
                  init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    with pytest.raises(RuntimeError, match='size mismatch'):
        other.init_weights()


def test_partial_match_is_reported(tmp_path):
    checkpoint, _ = make_official_checkpoint(STViT(TINY))
    del checkpoint['model']['layers.3.blocks.0.norm2.weight']
    checkpoint['model']['layers.9.extra'] = torch.zeros(1)
    path = tmp_path / 'partial.pth'
    torch.save(checkpoint, path)
    logger = MMLogger.get_current_instance()
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger.addHandler(handler)
    try:
        STViT(TINY, init_cfg=dict(type='Pretrained',
                                  checkpoint=str(path))).init_weights()
    finally:
        logger.removeHandler(handler)
    assert any('Missing keys' in m and 'layers.3.blocks.0.norm2.weight' in m
               for m in messages)
    assert any('Unexpected keys' in m and 'layers.9.extra' in m
               for m in messages)


def test_pick_state_dict_formats():
    checkpoint, sd = make_official_checkpoint(STViT(TINY))
    bare = pick_state_dict(checkpoint['model'])
    assert set(bare) == set(sd)
    ema = dict(checkpoint, model_ema=copy.deepcopy(checkpoint['model']))
    ema['model_ema']['head.bias'] = torch.full_like(sd['head.bias'], 3.)
    assert torch.all(pick_state_dict(ema, use_ema=True)['head.bias'] == 3.)
    assert torch.equal(pick_state_dict(ema)['head.bias'], sd['head.bias'])
    with pytest.raises(ValueError, match='holds no tensors'):
        pick_state_dict({'epoch': 3})
    with pytest.raises(KeyError, match='not part of an official STViT'):
        official_to_mm({'layers.0.blocks.0.norm1.norm.weight': torch.ones(1),
                        'pos_drop.weight': torch.ones(1)})


def test_bad_init_cfg_keys_raise(tmp_path):
    _, dst, _ = _convert(tmp_path)
    model = STViT(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(dst),
                                      prefx='backbone.'))
    with pytest.raises(ValueError, match='prefx'):
        model.init_weights()
