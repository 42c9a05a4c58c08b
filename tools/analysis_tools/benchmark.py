# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Speed and memory of STViT beside Swin (mmdet) and ConvNeXt (mmpretrain),
and the project's speed targets, measured on the same inputs.

CPU (stvit_mm.analysis.benchmark): table, targets 1-4, torch.compile rows.

    python tools/analysis_tools/benchmark.py --device cpu    # full table + targets
    python tools/analysis_tools/benchmark.py --targets-only  # just the targets
    python tools/analysis_tools/benchmark.py --quick         # one tiny iteration
    python tools/analysis_tools/benchmark.py --no-targets --targets-only --compile  # torch.compile only
    python tools/analysis_tools/benchmark.py --redraw docs/benchmark/benchmark_cpu.json

GPU (stvit_mm.analysis.benchmark_cuda): fp16 throughput at 224, fp32/fp16
latency and the AMP training step at 800x1333, the two GPU targets,
torch.compile with inductor; writes benchmark_cuda.{md,json,png}. Swin and
ConvNeXt rows are skipped (and the report says why) where mmdet/mmpretrain
do not import.

    python tools/analysis_tools/benchmark.py --device cuda --compile
    python tools/analysis_tools/benchmark.py --dry-run --out /tmp/gpu  # the same on the CPU, tiny
    python tools/analysis_tools/benchmark.py --redraw docs/benchmark/benchmark_cuda.json

tools/gpu_report.sh runs the GPU report in two phases (--merge, --skip,
--time-budget, --tests) around the mmcv CUDA build.
"""
import argparse
import json
import sys

import torch

from stvit_mm.analysis import benchmark, benchmark_cuda

DEFAULT_OUT = 'docs/benchmark'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Speed and memory of STViT beside Swin and ConvNeXt')
    parser.add_argument('--device', choices=['cpu', 'cuda'],
                        help='default: cuda when a GPU is visible; cuda runs '
                        'the GPU report')
    parser.add_argument('--models', nargs='+',
                        choices=list(benchmark.BACKBONES),
                        help='default: all but those in --skip')
    parser.add_argument('--batches', nargs='+', type=int,
                        help='CPU table: batch sizes at 224 (default 1 16)')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--targets-only', action='store_true',
                        help='no backbone table')
    parser.add_argument('--no-targets', action='store_true')
    parser.add_argument('--compile', action='store_true',
                        help='also time torch.compile (inductor) of STViT-S '
                        'and Swin-T: compile time, compiled vs eager (CPU: '
                        'about 15 minutes on 2 cores)')
    parser.add_argument('--quick', action='store_true',
                        help='tiny inputs, one iteration: checks the tool '
                        'runs')
    parser.add_argument('--out', help=f'output folder (default {DEFAULT_OUT}; '
                        'a dry run needs one)')
    parser.add_argument('--redraw', metavar='RESULTS',
                        help='measure nothing: draw the chart from a run\'s '
                        'benchmark_<device>.json (or its .md table) into '
                        '--out; a GPU report\'s JSON also gets its markdown '
                        'rewritten')
    gpu = parser.add_argument_group('GPU report')
    gpu.add_argument('--dry-run', action='store_true',
                     help='the GPU report on the CPU at tiny sizes, compile '
                     'backend "eager"; writes benchmark_cuda.* (marked DRY '
                     'RUN) into --out')
    gpu.add_argument('--merge', action='store_true',
                     help='add to the benchmark_cuda.json in --out (rows '
                     'replaced per backbone) instead of starting anew')
    gpu.add_argument('--skip', nargs='+', default=[], metavar='WHAT',
                     help='record these as skipped with --skip-reason: '
                     'backbone names (their targets and compile rows follow) '
                     'or any label')
    gpu.add_argument('--skip-reason', default='')
    gpu.add_argument('--time-budget', type=float, metavar='SECONDS',
                     help='start no measurement after this many seconds '
                     '(a compile needs 60 s left on a GPU); the rest is '
                     'recorded as skipped')
    gpu.add_argument('--note', default='', help='a line about this run for '
                     'the report')
    gpu.add_argument('--tests', nargs='+', default=[],
                     metavar='LABEL=JUNIT_XML',
                     help='pytest results to show in the report (with '
                     '--redraw: added to the JSON)')
    args = parser.parse_args(argv)

    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() and \
            not args.dry_run else 'cpu'
    gpu_report = args.device == 'cuda' or args.dry_run
    if args.dry_run and args.device == 'cuda':
        parser.error('--dry-run runs on the CPU; drop --device cuda')
    if args.dry_run and not args.out and not args.redraw:
        parser.error(f'--dry-run needs --out DIR: {DEFAULT_OUT} holds the '
                     'real GPU report')
    if args.device == 'cuda' and not torch.cuda.is_available() and \
            not args.redraw:
        parser.error('--device cuda: no CUDA device is visible to torch '
                     f'{torch.__version__} (CUDA build {torch.version.cuda}); '
                     '--dry-run checks the GPU report on the CPU')
    if gpu_report and args.batches:
        parser.error('--batches is for the CPU table; the GPU report uses '
                     'batch 64 at 224 and batch 1/2 at 800x1333')
    gpu_only = [name for name, value in (
        ('--merge', args.merge), ('--skip', args.skip),
        ('--time-budget', args.time_budget), ('--note', args.note))
        if value]
    if gpu_only and not gpu_report:
        parser.error(f'{", ".join(gpu_only)}: GPU report only (--device cuda '
                     'or --dry-run)')
    if args.skip and not args.skip_reason:
        parser.error('--skip needs --skip-reason')
    if args.tests and not (gpu_report or args.redraw):
        parser.error('--tests: GPU report only')
    args.out = args.out or DEFAULT_OUT
    args.models = args.models or [name for name in benchmark.BACKBONES
                                  if name not in args.skip]
    args.batches = args.batches or [1, 16]
    return args


def _is_gpu_report(path: str) -> bool:
    if not path.endswith('.json'):
        return False
    with open(path) as f:
        return json.load(f).get('kind') == benchmark_cuda.KIND


def main(argv=None):
    args = parse_args(argv)
    if args.redraw:
        if _is_gpu_report(args.redraw):
            return benchmark_cuda.redraw(args.redraw, args.out, args.tests)
        return benchmark.redraw(args.redraw, args.out, args.device)
    if args.device == 'cpu' and not args.dry_run:
        return benchmark.run_benchmark(
            args.device, args.out, args.models, args.batches, args.repeats,
            table=not args.targets_only, targets=not args.no_targets,
            compile=args.compile, quick=args.quick)
    if args.dry_run:
        sizes = benchmark_cuda.DRY_RUN_SIZES
    else:
        sizes = benchmark_cuda.QUICK_SIZES if args.quick else \
            benchmark_cuda.GPU_SIZES
    try:
        errors = benchmark_cuda.run_gpu_report(
            args.out, args.device, args.models, sizes,
            1 if args.quick or args.dry_run else args.repeats,
            table=not args.targets_only, targets=not args.no_targets,
            compile=args.compile, merge=args.merge, skip=args.skip,
            skip_reason=args.skip_reason, time_budget=args.time_budget,
            note=args.note, tests=args.tests, dry_run=args.dry_run)
    except ValueError as error:  # inconsistent arguments or files
        sys.exit(f'error: {error}')
    if errors:
        sys.exit(f'{errors} measurement(s) failed; see the report')
    return None


if __name__ == '__main__':
    main()
