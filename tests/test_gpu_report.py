"""tools/gpu_report.sh and the GPU report's files, without a GPU: the
script's whole flow as a dry run (tiny sizes on the CPU), its refusal
without a CUDA device, and how runs merge and what the report says about
skipped, interrupted and failed parts."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from stvit_mm.analysis.benchmark_cuda import (DRY_RUN_SIZES, TARGET_NAMES,
                                              Report, markdown, read_junit,
                                              record_tests)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SCRIPT = osp.join(ROOT, 'tools', 'gpu_report.sh')
PNG = b'\x89PNG\r\n\x1a\n'


def _env(**extra):
    # the venv this suite runs in stands for the one install.sh makes
    return dict(os.environ, STVIT_MM_VENV=osp.dirname(osp.dirname(
        sys.executable)), PYTHON=sys.executable, **extra)


def _mmcv_ready() -> bool:
    try:
        import mmcv.ops  # noqa: F401
        import mmdet.models  # noqa: F401
    except Exception:  # noqa: BLE001  (any failure: no second phase)
        return False
    return True


def test_dry_run_writes_the_report(tmp_path):
    """Both phases on the CPU, two backbones: the table has their rows and
    the targets, the JSON parses, the chart is a PNG, and each pytest phase
    left its junit file with every CUDA test skipped. Without torch.compile:
    dynamo's capture of the two backbones alone takes a minute on 2 cores
    (``benchmark.py --dry-run --compile`` runs it)."""
    out = tmp_path / 'report'
    result = subprocess.run(
        ['bash', SCRIPT, '--dry-run', '--out', str(out)], cwd=str(tmp_path),
        capture_output=True, text=True, timeout=600,
        env=_env(STVIT_MM_GPU_REPORT_MODELS='STViT-S Swin-T',
                 STVIT_MM_GPU_REPORT_COMPILE='0',
                 OMP_NUM_THREADS='1'))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:] + \
        (out / 'benchmark.log').read_text()[-4000:]
    md = (out / 'benchmark_cuda.md').read_text()
    assert 'DRY RUN' in md
    assert '| STViT-S | 2x32x32 | inference | fp32 (as fp16) |' in md
    assert '| STViT-S | 2x64x96 | train step | fp32 (as fp16) AMP |' in md
    for name in TARGET_NAMES:
        assert f'| {name} |' in md
    results = json.loads((out / 'benchmark_cuda.json').read_text())
    assert 'in_progress' not in results and not results.get('errors')
    assert len(results['runs']) == 2 and results['dry_run']
    assert (out / 'benchmark_cuda.png').read_bytes()[:8] == PNG
    phase1 = read_junit(str(out / 'pytest_cuda_phase1.xml'))
    assert phase1['skipped'] > 0 and phase1['passed'] == 0
    assert 'no CUDA device' in (out / 'pytest_cuda_phase1.log').read_text()
    if _mmcv_ready():
        assert {r['backbone'] for r in results['rows']} == {'STViT-S',
                                                            'Swin-T'}
        assert all(t['met'] is not None for t in results['targets'])
        assert read_junit(str(out / 'pytest_cuda_phase2.xml'))['skipped'] > 0
    else:
        assert '| Swin-T | skipped: ' in md


def test_without_cuda_it_says_so(tmp_path):
    result = subprocess.run(['bash', SCRIPT, '--out', str(tmp_path)],
                            capture_output=True, text=True, timeout=120,
                            env=_env(CUDA_VISIBLE_DEVICES=''))
    assert result.returncode == 2
    assert 'no CUDA device is visible' in result.stderr
    assert '--dry-run' in result.stderr
    assert not (tmp_path / 'benchmark_cuda.json').exists()


def _report(out, merge=False):
    env = dict(device='cpu', gpu=None, torch='x', torch_cuda=None,
               mmcv=dict(version=None, compiled_cuda=None, note='absent'),
               cpu='cpu', cpu_count=2, driver=None)
    return Report.start(osp.join(out, 'benchmark_cuda.json'), merge, env,
                        DRY_RUN_SIZES, 1, dry_run=True)


def _row(name, mode='inference'):
    return dict(backbone=name, input='1x96x160', mode=mode, precision='fp32',
                latency_s=0.5, images_per_s=2.0, peak_mib=10.0, note='')


def test_runs_merge_and_the_report_says_what_is_missing(tmp_path):
    """A second run with merge=True replaces the rows of what it measured
    and the skip notes about them; measured targets are not overwritten
    by a later skip; an interrupted measurement and a failure are named."""
    first = _report(str(tmp_path))
    first.set_rows('STViT-S', [_row('STViT-S')])
    first.skip('Swin-T', 'waiting for mmcv')
    first.skip_targets('Swin-T: waiting for mmcv')
    md = markdown(first.results)
    assert '| Swin-T | skipped: waiting for mmcv |' in md
    assert f'| {TARGET_NAMES[0]} | - | - | skipped |' in md

    second = _report(str(tmp_path), merge=True)
    second.set_rows('Swin-T', [_row('Swin-T')])
    second.set_targets([dict(name=n, measured='1 vs 2', goal='<= 1',
                             met=True) for n in TARGET_NAMES])
    second.skip_targets('later: no Swin-T')  # keeps the measured ones
    second.set_compile(dict(backbone='STViT-S', mode='inference',
                            input='2x32x32', precision='fp16',
                            backend='inductor', first_call_s=61.0,
                            compiled_s=0.01, eager_s=0.02))
    second.skip('compile Swin-T inference', 'no mmdet')
    with second.measuring('backbone STViT-B'):
        raise RuntimeError('CUDA out of memory\nmore lines')
    second.results['in_progress'] = 'compile STViT-S train step'
    record_tests(second.results, ['phase 9=' + str(tmp_path / 'no.xml')])
    results = json.loads((tmp_path / 'benchmark_cuda.json').read_text())
    assert {r['backbone'] for r in results['rows']} == {'STViT-S', 'Swin-T'}
    assert [s['what'] for s in results['skipped']] == [
        'compile Swin-T inference']
    md = markdown(second.results)
    assert f'| {TARGET_NAMES[1]} | 1 vs 2 | <= 1 | yes |' in md
    assert '**Failed: backbone STViT-B**: RuntimeError: CUDA out of memory' \
        in md
    assert 'Interrupted while measuring compile STViT-S train step' in md
    assert '| phase 9 | not run (no result file) |' in md
    assert '| STViT-S | inference fp16 | 2x32x32 | inductor | 61.0 | 0.0100 ' \
        '| 0.0200 | 2.00x |' in md
    assert '| Swin-T inference | skipped: no mmdet |' in md


def test_merge_refuses_another_machine(tmp_path):
    _report(str(tmp_path))
    report = _report(str(tmp_path), merge=True)
    report.results['environment']['gpu'] = 'another GPU'
    report.save()
    with pytest.raises(ValueError, match='cannot merge'):
        _report(str(tmp_path), merge=True)


def test_read_junit(tmp_path):
    path = tmp_path / 'junit.xml'
    path.write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest" '
        'errors="1" failures="2" skipped="3" tests="10"/></testsuites>')
    assert read_junit(str(path)) == dict(passed=4, failed=2, errors=1,
                                         skipped=3)
