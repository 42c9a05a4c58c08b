"""timm integration (stvit_mm/timm.py): registered names, an official file
loaded through the project's checked loader with the mm model's logits,
features_only at odd input sizes, the official preprocessing, and clear
errors for bad or absent weights. STViT-S at 64x64 (and 97x131 for the
features), random official-format weights made here."""
import logging
import math
import sys
from pathlib import Path

import pytest
import torch

timm = pytest.importorskip('timm')

import stvit_mm  # noqa: E402  (registers the timm models)
from reference_stvit import make_official_checkpoint  # noqa: E402
from stvit_mm import STViT  # noqa: E402
from stvit_mm.utils import (CheckpointFileError,  # noqa: E402
                            convert_checkpoint)

CONFIG = (Path(__file__).parents[1] / 'configs' / 'classification' /
          'stvit_s_in1k.py')
NUM_CLASSES = 10  # the checkpoint's head; the tail is the official 1024
# a small arch with layer scale in the last two stages
TINY = dict(embed_dims=[16, 32, 48, 64], depths=[1, 2, 1, 1],
            num_heads=[1, 2, 3, 4], layer_scale_init_values=[0, 0, 1e-6, 1e-6])


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """(official file, converted mm file, official state dict) of an STViT-S
    classifier with random weights."""
    root = tmp_path_factory.mktemp('timm')
    torch.manual_seed(0)
    checkpoint, sd = make_official_checkpoint(
        STViT('s'), num_classes=NUM_CLASSES, tail_dim=1024)
    official, converted = root / 'stvit-small.pth', root / 'stvit_s_mm.pth'
    torch.save(checkpoint, official)
    convert_checkpoint(str(official), str(converted))
    return official, converted, sd


def _timm_model(path, **kwargs):
    kwargs.setdefault('num_classes', NUM_CLASSES)
    return timm.create_model(
        'stvit_small', pretrained=True,
        pretrained_cfg_overlay=dict(file=str(path)), **kwargs).eval()


def _rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_names_and_tags_are_registered():
    assert timm.list_models('stvit*') == ['stvit_base', 'stvit_large',
                                          'stvit_small']
    tags = timm.list_models('stvit_small*', include_tags=True)
    assert tags == ['stvit_small.in1k', 'stvit_small.in1k_384']
    assert stvit_mm.timm.TimmSTViT is type(timm.create_model('stvit_small'))


def test_official_file_gives_the_mm_models_logits(files):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint
    from mmpretrain.registry import MODELS
    official, converted, _ = files
    model = _timm_model(official)

    init_default_scope('mmpretrain')
    cfg = Config.fromfile(str(CONFIG))
    cfg.model.head.num_classes = NUM_CLASSES
    mm_model = MODELS.build(cfg.model)
    load_checkpoint(mm_model, str(converted), strict=True, logger='silent')
    mm_model.eval()

    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
        expected = mm_model(x, mode='tensor')
    assert logits.shape == (1, NUM_CLASSES)
    assert _rel_err(logits, expected) < 1e-4

    # the same weights from a converted file, and through timm's own
    # checkpoint_path (a converted file has this model's key layout)
    state = model.state_dict()
    for other in (_timm_model(converted),
                  timm.create_model('stvit_small', num_classes=NUM_CLASSES,
                                    checkpoint_path=str(converted))):
        other_state = other.state_dict()
        assert other_state.keys() == state.keys()
        assert all(torch.equal(other_state[k], v) for k, v in state.items())


def test_classifier_of_another_size_is_left_at_init(files, caplog):
    official, _, sd = files
    with caplog.at_level(logging.INFO, logger='stvit_mm.timm'):
        model = _timm_model(official, num_classes=1000)
    assert 'classifier of shape (10, 1024) not loaded' in caplog.text
    state = model.state_dict()
    assert state['head.fc.weight'].shape == (1000, 1024)
    torch.testing.assert_close(state['neck.proj.weight'], sd['proj.weight'])
    torch.testing.assert_close(
        state['backbone.layers.3.blocks.2.mlp2.fc2.weight'],
        sd['layers.3.blocks.2.mlp2.fc2.weight'])


def test_features_only_at_odd_sizes(files):
    official, _, sd = files
    features = timm.create_model(
        'stvit_small', features_only=True, out_indices=(0, 1, 2, 3),
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(official))).eval()
    assert features.feature_info.channels() == [64, 128, 320, 512]
    assert features.feature_info.reduction() == [4, 8, 16, 32]
    # loaded before timm dropped the tail and classifier
    loaded = features.model.state_dict()
    assert set(loaded) == {'backbone.' + k for k in sd
                           if k.startswith(('patch_embed.', 'layers.'))
                           and not k.endswith('fold.weights')}
    assert all(torch.equal(v, sd[k[len('backbone.'):]])
               for k, v in loaded.items())

    h, w = 97, 131
    x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        maps = features(x)
    assert [tuple(m.shape) for m in maps] == [
        (1, c, math.ceil(h / s), math.ceil(w / s))
        for c, s in zip((64, 128, 320, 512), (4, 8, 16, 32))]

    # a subset: the stages after the last one asked for are dropped
    pair = timm.create_model('stvit_small', features_only=True,
                             out_indices=(1, 2)).eval()
    assert pair.feature_info.channels() == [128, 320]
    assert pair.feature_info.reduction() == [8, 16]
    assert len(pair.model.backbone.layers) == 3
    with torch.no_grad():
        assert [tuple(m.shape) for m in pair(x[..., :45, :67])] == [
            (1, 128, 6, 9), (1, 320, 3, 5)]


@pytest.mark.parametrize('name, size, crop_pct', [
    ('stvit_small', 224, 0.875), ('stvit_small.in1k_384', 384, 1.0),
    ('stvit_base.in1k', 224, 0.875), ('stvit_large.in1k_384', 384, 1.0)])
def test_data_config_is_the_official_preprocessing(name, size, crop_pct):
    # the official evaluation transform: bicubic resize to 256 (224 models)
    # or 384, center crop, ImageNet mean and std
    if 'small' in name:
        cfg = timm.data.resolve_data_config({}, model=timm.create_model(name))
    else:  # the same cfgs; without building the larger models
        cfg = timm.data.resolve_data_config(
            pretrained_cfg=timm.models.get_pretrained_cfg(name).to_dict())
    assert cfg == dict(input_size=(3, size, size), interpolation='bicubic',
                       mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                       crop_pct=crop_pct, crop_mode='center')


def test_bad_files_raise_the_projects_errors(files, tmp_path):
    official, _, _ = files
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    text = tmp_path / 'page.pth'
    text.write_text('<!DOCTYPE html><html>Not Found</html>\n')
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(official.read_bytes()[:100_000])
    foreign = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(2, 3, 3, 3)}},
               foreign)
    cases = [(empty, CheckpointFileError, 'is empty'),
             (text, CheckpointFileError, 'looks like a text file'),
             (truncated, CheckpointFileError, 'truncated or corrupted'),
             (tmp_path / 'absent.pth', FileNotFoundError, 'not found'),
             (foreign, ValueError, 'holds no STViT backbone weights')]
    for path, error, message in cases:
        with pytest.raises(error, match=message) as info:
            _timm_model(path)
        assert str(path) in str(info.value)
    other_arch = tmp_path / 'tiny.pth'
    torch.save(make_official_checkpoint(STViT(TINY))[0], other_arch)
    with pytest.raises(RuntimeError, match='size mismatch'):
        _timm_model(other_arch)


def test_files_go_through_the_projects_checked_loader(files, monkeypatch):
    from stvit_mm.utils import checkpoint_file
    official, _, _ = files
    read, checked = [], checkpoint_file.read_checkpoint

    def spy(filename, map_location=None):
        read.append(filename)
        return checked(filename, map_location)

    def timm_loader(*args, **kwargs):
        raise AssertionError('timm read the pretrained file itself')

    monkeypatch.setattr(checkpoint_file, 'read_checkpoint', spy)
    monkeypatch.setattr(timm.models._builder, 'load_state_dict', timm_loader)
    _timm_model(official)
    assert read == [str(official)]


def test_pretrained_without_a_file_says_there_is_no_download():
    with pytest.raises(RuntimeError, match='no pretrained weights to '
                       'download') as info:
        timm.create_model('stvit_small.in1k_384', pretrained=True)
    assert "pretrained_cfg_overlay=dict(file=" in str(info.value)


def test_timm_model_interface():
    model = timm.create_model('stvit_small', drop_path_rate=0.1)
    assert (model.num_features, model.head_hidden_size, model.num_classes) \
        == (512, 1024, 1000)
    assert model.pretrained_cfg['architecture'] == 'stvit_small'
    assert model.default_cfg is model.pretrained_cfg
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        final, stages = model.forward_intermediates(x, indices=2)
        assert [tuple(s.shape) for s in stages] == [(1, 320, 2, 2),
                                                    (1, 512, 1, 1)]
        assert model.forward_intermediates(
            x[..., :16, :16], indices=[0], output_fmt='NHWC',
            intermediates_only=True)[0].shape == (1, 4, 4, 64)
        assert model.forward_head(final).shape == (1, 1000)
        assert model.forward_head(final, pre_logits=True).shape == (1, 1024)
        model.reset_classifier(0)
        assert model.forward_head(final).shape == (1, 1024)
        model.reset_classifier(0, '')
        assert model.forward_head(final).shape == (1, 1024, 1, 1)
        model.reset_classifier(5, 'avg')
        assert model.forward_head(final).shape == (1, 5)
    with pytest.raises(ValueError, match='num_classes=0'):
        model.reset_classifier(5, '')
    model.set_grad_checkpointing()
    assert model.backbone.with_cp
    # no decay on layer-scale gammas, layer-wise lr decay: one group per
    # block (a downsample joins the block before it), stem and tail
    tiny = stvit_mm.timm.TimmSTViT(TINY, num_classes=3, head_hidden_size=8)
    assert len(tiny.no_weight_decay()) == 2 * (1 + 1)
    from timm.optim import create_optimizer_v2
    groups = create_optimizer_v2(tiny, 'adamw', lr=1e-3, weight_decay=0.05,
                                 layer_decay=0.75).param_groups
    assert len({g['lr_scale'] for g in groups}) == sum(TINY['depths']) + 2


def test_import_hook_is_silent_without_timm(monkeypatch, recwarn):
    monkeypatch.setitem(sys.modules, 'timm', None)  # "not installed"
    monkeypatch.delitem(sys.modules, 'stvit_mm.timm')
    monkeypatch.delattr(stvit_mm, 'timm')
    stvit_mm._register_timm_models()
    assert not recwarn.list and 'stvit_mm.timm' not in sys.modules
    # installed but unusable: a warning, not a broken `import stvit_mm`
    monkeypatch.setattr('importlib.util.find_spec', lambda name: object())
    with pytest.warns(UserWarning, match='STViT timm models were not '
                      'registered'):
        stvit_mm._register_timm_models()
