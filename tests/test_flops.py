"""FLOP counting: the paper's STViT-S figure, attention included."""
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.analysis import FlopAnalyzer

from stvit_mm.analysis import count_flops, get_flops

CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                      'configs', 'classification', 'stvit_s_in1k.py')


class _SDPA(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


class _ExplicitAttention(nn.Module):
    def forward(self, q, k, v):
        attn = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(-1)
        return attn @ v


def test_sdpa_counted_like_its_two_matmuls():
    # (B, heads, Nq, d), (B, heads, Nk, d), (B, heads, Nk, dv)
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), \
        torch.randn(2, 3, 7, 4)
    report = count_flops(_SDPA(), (q, k, v))
    assert report.flops == 2 * 3 * 5 * 7 * (8 + 4)
    assert 'aten::scaled_dot_product_attention' not in report.uncounted
    explicit = FlopAnalyzer(_ExplicitAttention(), (q, k, v))
    explicit.unsupported_ops_warnings(False)
    assert report.flops == explicit.total()


def test_stvit_s_classifier_matches_paper():
    report = get_flops(CONFIG,
                       shape=(224, 224))
    assert report.input_shape == (1, 3, 224, 224)
    assert abs(report.flops / 4.4e9 - 1) < 0.02, report.flops
    assert abs(report.params / 25.50e6 - 1) < 0.005, report.params
    assert not any('scaled_dot_product_attention' in op
                   for op in report.uncounted), report.uncounted
    # the super-token self-attention is a real share of the total
    assert report.by_operator['scaled_dot_product_attention'] > 0.2e9
    assert report.by_module['backbone'] > 0.98 * report.flops


@pytest.mark.parametrize('kwargs,match', [
    (dict(shape=(0, 224)), 'two positive ints'),
    (dict(shape=(224, 224), protocol='fast'), 'protocol'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_flops(CONFIG, **kwargs)


def test_mask2former_segmentor_is_counted_with_its_head():
    """mmseg's mode='tensor' calls a decode head without the data samples
    that Mask2Former's needs; the count runs backbone, neck and head with
    them."""
    report = get_flops(os.path.join(
        os.path.dirname(CONFIG), '..', 'segmentation',
        'mask2former_stvit_s_160k.py'), shape=(64, 64))
    assert report.toolbox == 'mmseg'
    assert report.by_module['backbone'] > 0
    assert report.by_module['decode_head'] > 0.3 * report.flops
