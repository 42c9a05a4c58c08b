"""benchmark.py runs one tiny iteration of every measurement and writes its
table, chart and target report."""
import json
import os.path as osp
import struct
import subprocess
import sys

import pytest

from stvit_mm.analysis.benchmark import read_results

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_quick_benchmark_writes_table_chart_and_targets(tmp_path):
    result = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'analysis_tools',
                                  'benchmark.py'),
         '--quick', '--models', 'STViT-S', 'Swin-T', '--out', str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    table = (tmp_path / 'benchmark_cpu.md').read_text()
    for backbone in ('STViT-S', 'Swin-T'):
        assert f'| {backbone} | 2x64x64 | inference | bf16 |' in table
        assert f'| {backbone} | 1x96x160 | train step | fp32 |' in table
    for target in ('1. STViT-S [16,8,2,1] / Swin-T', '3c. with_cp',
                   '4. bf16 autocast'):
        assert target in table
    png = (tmp_path / 'benchmark_cpu.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n'
    results = json.loads((tmp_path / 'benchmark_cpu.json').read_text())
    assert {r['backbone'] for r in results['rows']} == {'STViT-S', 'Swin-T'}
    assert all(r['latency_s'] > 0 for r in results['rows'])


def _png_size(path):
    header = open(path, 'rb').read(24)
    assert header[:8] == b'\x89PNG\r\n\x1a\n'
    return struct.unpack('>II', header[16:24])


@pytest.mark.parametrize('source', ['md', 'json'])
def test_chart_is_redrawn_from_a_run(source, tmp_path):
    """--redraw measures nothing: it draws the chart from a run's JSON, or
    from the table of an older run's markdown (the committed one here)."""
    script = osp.join(ROOT, 'tools', 'analysis_tools', 'benchmark.py')
    md = osp.join(ROOT, 'docs', 'benchmark', 'benchmark_cpu.md')
    results = md
    if source == 'json':
        results = str(tmp_path / 'run.json')
        with open(results, 'w') as f:
            json.dump(read_results(md), f)
    result = subprocess.run(
        [sys.executable, script, '--redraw', results, '--out',
         str(tmp_path / 'out')], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    width, height = _png_size(tmp_path / 'out' / 'benchmark_cpu.png')
    assert width <= 1000 and height <= 1000  # one panel, README-sized
