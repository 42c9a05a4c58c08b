"""benchmark.py runs one tiny iteration of every measurement and writes its
table, chart and target report."""
import os.path as osp
import subprocess
import sys

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
