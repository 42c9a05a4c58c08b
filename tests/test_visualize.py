"""Super-token visualisation: label mapping, hook, and the script's PNG."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from stvit_mm import STViT
from stvit_mm.analysis.super_tokens import association_labels, \
    block_association
from stvit_mm.models.super_token import association_callback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, 'configs', 'classification', 'stvit_s_in1k.py')
TINY = dict(embed_dims=[16, 32, 48, 64], depths=[1, 2, 1, 1],
            num_heads=[1, 2, 3, 4])


def test_labels_map_neighbour_slots_to_absolute_super_tokens():
    hh, ww, h, w = 2, 3, 2, 2
    affinity = torch.zeros(1, hh * ww, h * w, 9)
    affinity[..., 4] = 1.  # every pixel prefers its own cell
    affinity[0, 4, 0, 0] = 5.  # cell (1, 1), first pixel -> cell (0, 0)
    affinity[0, 0, 1, 8] = 5.  # cell (0, 0), second pixel -> cell (1, 1)
    affinity[0, 0, 2, 0] = 9.  # slot 0 of cell (0, 0) is outside: ignored
    labels = association_labels(affinity, (hh, ww), (h, w), (3, 5))
    assert labels.shape == (1, 3, 5)  # padding rows and columns cropped
    expected = torch.tensor([[0, 4, 1, 1, 2],
                             [0, 0, 1, 1, 2],
                             [3, 3, 0, 4, 5]])
    assert torch.equal(labels[0], expected)


def test_callback_is_scoped_and_block_association_shapes():
    model = STViT(TINY, stoken_size=(4, 2, 1, 1)).eval()
    calls = []
    with association_callback(lambda *args: calls.append(args[1])):
        with torch.no_grad():
            model(torch.randn(1, 3, 70, 90))
    assert calls == [(5, 6), (5, 6), (5, 6)]  # stage 0: 1 block, 1: 2
    with torch.no_grad():
        model(torch.randn(1, 3, 70, 90))  # outside the context: no call
    assert len(calls) == 3
    labels, grid = block_association(model, torch.randn(1, 3, 70, 90), 1, 1)
    assert grid == (5, 6) and labels.shape == (1, 9, 12)
    assert 0 <= labels.min() and labels.max() < 30
    with pytest.raises(ValueError, match='global self-attention'):
        block_association(model, torch.randn(1, 3, 64, 64), 2, 0)


def test_script_writes_png_of_input_size(tmp_path):
    rng = np.random.default_rng(0)
    image = np.full((150, 210, 3), 110, np.uint8)
    cv2.rectangle(image, (15, 20), (95, 130), (40, 60, 220), -1)
    cv2.circle(image, (155, 75), 45, (60, 200, 40), -1)
    image = np.clip(image + rng.normal(0, 8, image.shape), 0,
                    255).astype(np.uint8)
    src, out = tmp_path / 'in.png', tmp_path / 'out.png'
    cv2.imwrite(str(src), image)
    script = os.path.join(ROOT, 'tools', 'visualize_super_tokens.py')
    proc = subprocess.run(
        [sys.executable, script, str(src), '--config', CONFIG, '--stage',
         '0', '--block', '1', '--out', str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    drawing = cv2.imread(str(out))
    assert drawing.shape == image.shape
    # the coloured overlay differs from the input, with several region hues
    hues = cv2.cvtColor(drawing, cv2.COLOR_BGR2HSV)[..., 0] // 10
    assert len(np.unique(hues)) > 3
    assert np.abs(drawing.astype(int) - image).mean() > 5

    proc = subprocess.run(
        [sys.executable, script, str(src), '--config', CONFIG, '--stage',
         '3', '--out', str(tmp_path / 'global.png')],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode != 0
    assert 'super-token size 1x1' in proc.stderr
