# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""Speed and memory of STViT beside the toolboxes' own backbones, and the
project's CPU speed targets, measured on the same inputs (CLI:
tools/analysis_tools/benchmark.py; the GPU report: :mod:`.benchmark_cuda`).

Backbones: STViT-S/B/L (this package), Swin-T/S/B (mmdet's
SwinTransformer) and ConvNeXt-T (mmpretrain's ConvNeXt), all built from their
registries. Per backbone (:func:`measure_table`): inference latency and
throughput at 224 for several batch sizes and at 800x1333, fp32 and bf16
autocast, a training step (forward + backward), and peak memory (CUDA: the
allocator's peak; CPU: the peak resident set size above the level before the
run, sampled every millisecond after returning freed memory to the OS).

:func:`run_benchmark` writes a markdown table, its numbers as JSON and a PNG
chart drawn from them; :func:`redraw` redraws the chart from a run's JSON (or
an older run's markdown table) without measuring. Timings are medians of
``repeats`` runs after one warm-up. The targets time their contenders in one
process, in alternation (round by round), and take CPU peak memory in a fresh
process per model (see :func:`train_peak_mib`); the table measures model
after model in one process.
"""
import ctypes
import importlib
import json
import multiprocessing
import os
import os.path as osp
import platform
import re
import shutil
import statistics
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Optional, Sequence

import torch

# Dense-prediction super-token sizes for the 800x1333 rows, ImageNet ones at
# 224; the other backbones are size-agnostic.
BACKBONES = {
    'STViT-S': dict(type='STViT', arch='s', out_indices=(0, 1, 2, 3)),
    'STViT-B': dict(type='STViT', arch='b', out_indices=(0, 1, 2, 3)),
    'STViT-L': dict(type='STViT', arch='l', out_indices=(0, 1, 2, 3)),
    'Swin-T': dict(type='mmdet.SwinTransformer', embed_dims=96,
                   depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                   window_size=7, out_indices=(0, 1, 2, 3)),
    'Swin-S': dict(type='mmdet.SwinTransformer', embed_dims=96,
                   depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24],
                   window_size=7, out_indices=(0, 1, 2, 3)),
    'Swin-B': dict(type='mmdet.SwinTransformer', embed_dims=128,
                   depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32],
                   window_size=7, out_indices=(0, 1, 2, 3)),
    'ConvNeXt-T': dict(type='mmpretrain.ConvNeXt', arch='tiny',
                       out_indices=(0, 1, 2, 3), gap_before_final_norm=False),
}
STOKEN_224, STOKEN_DENSE = [8, 4, 1, 1], [16, 8, 2, 1]
# The module that registers a toolbox's backbones; these toolboxes import
# mmcv, which STViT itself does not need.
_TOOLBOX_MODELS = {'mmdet': 'mmdet.models', 'mmpretrain': 'mmpretrain.models'}


def _toolbox(name: str) -> Optional[str]:
    """The toolbox scope of a backbone of :data:`BACKBONES` (None: STViT)."""
    kind = BACKBONES[name]['type']
    return kind.split('.')[0] if '.' in kind else None


def backbone_unavailable(name: str) -> Optional[str]:
    """Why backbone ``name`` cannot be built here, or None when it can.

    Swin and ConvNeXt need their toolbox (mmdet, mmpretrain), and those need
    mmcv; the reason is the import error, as the report shows it.
    """
    scope = _toolbox(name)
    if scope is None:
        return None
    try:
        importlib.import_module(_TOOLBOX_MODELS[scope])
    # Any failure (ImportError, mmdet's AssertionError on an mmcv version it
    # does not accept, a missing symbol of compiled ops) means the same to
    # the report: the backbone is not there; the message says why.
    except Exception as error:  # noqa: BLE001
        return (f'{_TOOLBOX_MODELS[scope]} does not import '
                f'({type(error).__name__}: {error})')
    return None


def build_backbone(name: str, dense: bool = False, with_cp: bool = False):
    """A backbone of :data:`BACKBONES` in eval mode; ``dense`` gives STViT
    the dense-prediction super-token sizes (the others are unaffected)."""
    # STViT is registered by importing stvit_mm, which this module's
    # package did
    from mmengine.registry import MODELS
    cfg = dict(BACKBONES[name])
    scope = _toolbox(name)
    if scope is not None:
        # registers SwinTransformer / ConvNeXt in the toolbox's registry
        importlib.import_module(_TOOLBOX_MODELS[scope])
    if cfg['type'] == 'STViT':
        cfg['stoken_size'] = STOKEN_DENSE if dense else STOKEN_224
    if with_cp:
        cfg['with_cp'] = True
    model = MODELS.build(cfg)
    model.eval()  # some toolbox backbones' train() returns None
    return model


# ----------------------------------------------------------------- memory
class PeakMemory:
    """Peak memory of the block above the level at its start, in MiB."""

    def __init__(self, device: str):
        self.device = device
        self.peak_mib = 0.

    def __enter__(self):
        if self.device == 'cuda':
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        _trim_heap()
        self._base = self._peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc):
        if self.device == 'cuda':
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - self._base
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, _rss_bytes()) - self._base
        self.peak_mib = peak / 2**20


def _rss_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _trim_heap():
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except OSError:  # not glibc: the baseline is just less tight
        pass


# ----------------------------------------------------------------- timing
def _sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def _autocast(device: str, precision: str):
    if precision == 'fp32':
        return nullcontext()
    dtype = torch.bfloat16 if device == 'cpu' else torch.float16
    return torch.autocast(device, dtype=dtype)


def time_inference(model, x, precision, repeats):
    """Median seconds per forward, peak MiB, and whether outputs are finite."""
    device = x.device.type
    with torch.no_grad(), _autocast(device, precision):
        model(x)
        _sync(device)
        times = []
        with PeakMemory(device) as mem:
            for _ in range(repeats):
                start = time.perf_counter()
                outs = model(x)
                _sync(device)
                times.append(time.perf_counter() - start)
    finite = all(torch.isfinite(o.float()).all().item() for o in outs)
    return statistics.median(times), mem.peak_mib, finite


def _train_step(model, x, precision):
    device = x.device.type
    with _autocast(device, precision):
        loss = sum(o.float().square().mean() for o in model(x))
    loss.backward()
    for p in model.parameters():
        p.grad = None


def time_train_step(model, x, precision, repeats):
    """Median seconds per forward + backward, peak MiB."""
    device = x.device.type
    model.train()
    _train_step(model, x, precision)
    _sync(device)
    times = []
    with PeakMemory(device) as mem:
        for _ in range(repeats):
            start = time.perf_counter()
            _train_step(model, x, precision)
            _sync(device)
            times.append(time.perf_counter() - start)
    model.eval()
    return statistics.median(times), mem.peak_mib


def _alternate(steps, repeats, device, inspect=None):
    """Median seconds of each zero-argument step, timed in alternation
    (after one warm-up each, every round runs every step once), so that a
    drift in the machine's speed hits all of them alike. ``inspect`` is
    given each timed step's result, outside the timing."""
    for step in steps:
        step()
    times = [[] for _ in steps]
    for _ in range(repeats):
        for step, record in zip(steps, times):
            _sync(device)
            start = time.perf_counter()
            result = step()
            _sync(device)
            record.append(time.perf_counter() - start)
            if inspect is not None:
                inspect(result)
    return [statistics.median(t) for t in times]


def compare_inference(runs, x, repeats):
    """Median seconds per forward of each (model, precision) run, timed in
    alternation (see :func:`_alternate`).

    Returns:
        tuple: (list of median seconds, whether every output was finite).
    """
    device = x.device.type
    finite = []

    def forward(model, precision):
        def step():
            with _autocast(device, precision):
                return model(x)
        return step

    with torch.no_grad():
        times = _alternate(
            [forward(model, precision) for model, precision in runs],
            repeats, device, inspect=lambda outs: finite.append(all(
                torch.isfinite(o.float()).all().item() for o in outs)))
    return times, all(finite)


def compare_train_steps(models, x, repeats):
    """Median fp32 training-step seconds of each model, timed in
    alternation (see :func:`_alternate`)."""
    for model in models:
        model.train()
    times = _alternate([partial(_train_step, model, x, 'fp32')
                        for model in models], repeats, x.device.type)
    for model in models:
        model.eval()
    return times


def _train_peak_mib(name, dense, with_cp, shape, device, threads):
    torch.set_num_threads(threads)
    model = build_backbone(name, dense=dense, with_cp=with_cp).to(device)
    x = torch.randn(*shape, device=device)
    return time_train_step(model, x, 'fp32', 2)[1]


def train_peak_mib(name, x, dense=True, with_cp=False):
    """Peak memory of a training step. On CPU it is measured in a fresh
    process per model: the resident set size also counts heap that earlier
    models left fragmented (measured: the same with_cp run read 1206 MiB
    alone and 1927 MiB after two other models)."""
    args = (name, dense, with_cp, tuple(x.shape), x.device.type,
            torch.get_num_threads())
    if x.device.type == 'cuda':
        return _train_peak_mib(*args)
    context = multiprocessing.get_context('spawn')
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_train_peak_mib, *args).result()


def matmul_rate(device, size=2048, repeats=5):
    """fp32 GEMM rate of this machine in FLOP/s (2 * n^3 per product)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


# ----------------------------------------------------------------- targets
def measure_targets(device, repeats, quick=False):
    """Issue targets 1-4, each as (name, value, goal, met)."""
    rows = []
    dense_hw = (96, 160) if quick else (800, 1344)
    small_batch = 2 if quick else 16
    side = 64 if quick else 224
    reps = 1 if quick else repeats

    swin = build_backbone('Swin-T').to(device)
    stvit_dense = build_backbone('STViT-S', dense=True).to(device)
    x = torch.randn(1, 3, *dense_hw, device=device)
    (t_st, t_swin), _ = compare_inference(
        [(stvit_dense, 'fp32'), (swin, 'fp32')], x, reps)
    rows.append((f'1. STViT-S [16,8,2,1] / Swin-T, inference 1x3x'
                 f'{dense_hw[0]}x{dense_hw[1]} fp32',
                 f'{t_st:.3f}s / {t_swin:.3f}s = {t_st / t_swin:.2f}x',
                 '<= 0.80x', t_st / t_swin <= 0.8))

    stvit = build_backbone('STViT-S').to(device)
    xb = torch.randn(small_batch, 3, side, side, device=device)
    rate = matmul_rate(device, 512 if quick else 2048)
    (t_b, t_half), finite = compare_inference(
        [(stvit, 'fp32'), (stvit, 'amp')], xb, reps)
    flops_per_image = 4.4e9 * (side / 224)**2  # the FLOPs tool's count
    achieved = flops_per_image * small_batch / t_b
    # The goal is stated with the FLOPs tool's count (fvcore: one
    # multiply-add = one FLOP) against a GEMM rate of 2 FLOPs per
    # multiply-add; the same-convention ratio is printed beside it.
    rows.append((f'2. STViT-S [8,4,1,1] {small_batch}x3x{side}x{side} fp32: '
                 'model FLOP/s (FLOPs tool count) over fp32 GEMM FLOP/s '
                 '(2 per multiply-add)',
                 f'{achieved / 1e9:.1f} / {rate / 1e9:.1f} GFLOP/s = '
                 f'{achieved / rate:.0%} (same convention: '
                 f'{2 * achieved / rate:.0%})', '>= 50%',
                 achieved / rate >= 0.5))

    t_tr_st, t_tr_sw = compare_train_steps([stvit_dense, swin], x, reps)
    m_st, m_sw = (train_peak_mib('STViT-S', x), train_peak_mib('Swin-T', x))
    rows.append(('3a. training step STViT-S vs Swin-T (time)',
                 f'{t_tr_st:.2f}s vs {t_tr_sw:.2f}s', 'faster',
                 t_tr_st < t_tr_sw))
    rows.append(('3b. training step STViT-S vs Swin-T (peak memory)',
                 f'{m_st:.0f} vs {m_sw:.0f} MiB', 'lower', m_st < m_sw))
    m_cp = train_peak_mib('STViT-S', x, with_cp=True)
    cut = 1 - m_cp / m_st if m_st > 0 else 0.
    rows.append(('3c. with_cp peak-memory cut', f'{m_st:.0f} -> {m_cp:.0f} '
                 f'MiB = -{cut:.0%}', '>= 40%', cut >= 0.4))

    low = 'bf16' if device == 'cpu' else 'fp16'
    rows.append((f'4. {low} autocast inference speed-up, {small_batch}x3x'
                 f'{side}x{side}',
                 f'{t_b:.3f}s / {t_half:.3f}s = {t_b / t_half:.2f}x'
                 f'{"" if finite else " (NON-FINITE OUTPUT)"}', '>= 2x',
                 finite and t_b / t_half >= 2))

    return rows


# ---------------------------------------------------------------- compile
@contextmanager
def _cold_compile_caches():
    """Compile as on a fresh machine: dynamo reset, inductor's in-memory
    caches cleared and its on-disk caches (FX graphs, AOT autograd, compiled
    kernels; Triton's on CUDA) in a new empty folder, removed afterwards.
    Without this a second run loads what the first compiled (measured: a
    repeated Swin-T compile took 3 s instead of 110 s)."""
    import torch._dynamo
    from torch._inductor.utils import clear_inductor_caches
    keys = ('TORCHINDUCTOR_CACHE_DIR', 'TRITON_CACHE_DIR')
    saved = {key: os.environ.get(key) for key in keys}
    folder = tempfile.mkdtemp(prefix='stvit_mm_compile_')
    os.environ['TORCHINDUCTOR_CACHE_DIR'] = folder
    os.environ['TRITON_CACHE_DIR'] = osp.join(folder, 'triton')
    torch._dynamo.reset()
    clear_inductor_caches()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(folder, ignore_errors=True)


def _compile_and_time(model, x, precision, train, repeats):
    """Inductor: seconds of compile + first call, then median seconds per
    call compiled and eager (:func:`time_train_step` for forward +
    backward, :func:`time_inference` otherwise). Call it inside
    :func:`_cold_compile_caches`."""
    model.train(train)
    compiled = torch.compile(model, backend='inductor')
    device = x.device.type
    start = time.perf_counter()
    if train:
        _train_step(compiled, x, precision)
    else:
        with torch.no_grad(), _autocast(device, precision):
            compiled(x)
    _sync(device)
    first = time.perf_counter() - start
    if train:
        t_compiled, _ = time_train_step(compiled, x, precision, repeats)
        t_eager, _ = time_train_step(model, x, precision, repeats)
    else:
        t_compiled = time_inference(compiled, x, precision, repeats)[0]
        t_eager = time_inference(model, x, precision, repeats)[0]
    model.eval()
    return first, t_compiled, t_eager


def measure_compile(device, repeats, quick=False):
    """torch.compile (inductor) of STViT-S [8,4,1,1] and Swin-T, batch 2 at
    224: compile + first call, and compiled vs eager per call, inference in
    fp32 and bf16/fp16 autocast, and a training step in fp32. Rows as in
    :func:`measure_targets`; the goal is STViT-S compiling within 2x the
    time of Swin-T measured in the same run. Last, the dynamic-shape trace
    (:func:`_dynamic_trace_row`)."""
    side = 64 if quick else 224
    x = torch.randn(2, 3, side, side, device=device)
    low = 'bf16' if device == 'cpu' else 'fp16'
    rows = []
    for train, precision in ((False, 'fp32'), (False, 'amp'),
                             (True, 'fp32')):
        mode = 'train step' if train else 'inference'
        label = f'{mode} {low if precision == "amp" else precision}'
        firsts = {}
        for name in ('STViT-S', 'Swin-T'):
            model = build_backbone(name).to(device)
            with _cold_compile_caches():
                first, t_c, t_e = _compile_and_time(model, x, precision,
                                                    train, repeats)
            firsts[name] = first
            rows.append((f'compile {name}, {label}, 2x3x{side}x{side}',
                         f'compile + first call {first:.1f}s; then '
                         f'{t_c:.3f}s compiled vs {t_e:.3f}s eager '
                         f'({t_e / t_c:.2f}x)', 'reported', True))
            print(rows[-1][0], '|', rows[-1][1], flush=True)
        ratio = firsts['STViT-S'] / firsts['Swin-T']
        rows.append((f'compile time STViT-S / Swin-T, {label}',
                     f'{firsts["STViT-S"]:.1f}s / {firsts["Swin-T"]:.1f}s '
                     f'= {ratio:.2f}x', '<= 2x', ratio <= 2))
        print(rows[-1][0], '|', rows[-1][1], flush=True)
    rows.append(_dynamic_trace_row(device, quick))
    print(rows[-1][0], '|', rows[-1][1], flush=True)
    return rows


def _dynamic_trace_row(device, quick=False):
    """``torch.compile(fullgraph=True, dynamic=True)`` with aot_eager of
    STViT-S with the detection super tokens, in training mode: seconds of
    the first forward + backward (the trace), then the graphs that a
    classification size, another aspect ratio and a detection size needed
    (goal: one, traced in under 2 minutes)."""
    from torch._dynamo.testing import CompileCounterWithBackend
    sizes = ([(64, 96), (80, 128), (160, 256)] if quick else
             [(160, 224), (192, 288), (800, 1344)])
    model = build_backbone('STViT-S', dense=True).to(device).train()
    counter = CompileCounterWithBackend('aot_eager')
    first = None
    with _cold_compile_caches():
        compiled = torch.compile(model, backend=counter, fullgraph=True,
                                 dynamic=True)
        for height, width in sizes:
            start = time.perf_counter()
            _train_step(compiled,
                        torch.randn(2, 3, height, width, device=device),
                        'fp32')
            _sync(device)
            first = first or time.perf_counter() - start
    graphs = counter.frame_count
    model.eval()
    size_list = ', '.join(f'{h}x{w}' for h, w in sizes)
    return ('dynamic shapes STViT-S [16,8,2,1], train fwd+bwd, aot_eager, '
            'batch 2',
            f'first call (trace) {first:.1f}s; {graphs} graph(s) for '
            f'{size_list}', '< 120s, 1 graph', first < 120 and graphs == 1)


# ----------------------------------------------------------------- table
def measure_table(device, names, batches, repeats, quick=False):
    rows = []
    side, dense_hw = (64, (96, 160)) if quick else (224, (800, 1333))
    for name in names:
        model = build_backbone(name).to(device)
        for batch in batches:
            x = torch.randn(batch, 3, side, side, device=device)
            for precision in ('fp32', 'amp'):
                t, mem, _ = time_inference(model, x, precision, repeats)
                rows.append((name, f'{batch}x{side}x{side}', 'inference',
                             precision, t, batch / t, mem))
        x = torch.randn(batches[-1], 3, side, side, device=device)
        t, mem = time_train_step(model, x, 'fp32', repeats)
        rows.append((name, f'{batches[-1]}x{side}x{side}', 'train step',
                     'fp32', t, batches[-1] / t, mem))
        dense = build_backbone(name, dense=True).to(device)
        x = torch.randn(1, 3, *dense_hw, device=device)
        for precision in ('fp32', 'amp'):
            t, mem, _ = time_inference(dense, x, precision, repeats)
            rows.append((name, f'1x{dense_hw[0]}x{dense_hw[1]}', 'inference',
                         precision, t, 1 / t, mem))
        t, mem = time_train_step(dense, x, 'fp32', repeats)
        rows.append((name, f'1x{dense_hw[0]}x{dense_hw[1]}', 'train step',
                     'fp32', t, 1 / t, mem))
        print(f'measured {name}', flush=True)
    return rows


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else the architecture."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device):
    if device == 'cuda':
        return f'{torch.cuda.get_device_name()}, torch {torch.__version__}'
    return (f'{cpu_name()}, {torch.get_num_threads()} threads, '
            f'torch {torch.__version__}')


TABLE_KEYS = ('backbone', 'input', 'mode', 'precision', 'latency_s',
              'images_per_s', 'peak_mib')


def write_outputs(out, device, table, targets):
    """The markdown report, and for a full run its numbers as JSON (what
    the chart is drawn from, see :func:`draw_chart`) and the chart."""
    os.makedirs(out, exist_ok=True)
    low = 'bf16' if device == 'cpu' else 'fp16 AMP'
    machine = machine_description(device)
    date = time.strftime("%Y-%m-%d")
    lines = [f'Machine: {machine}; {date}; medians after one warm-up.', '']
    if targets:
        lines += ['| target | measured | goal | met |', '|---|---|---|---|']
        lines += [f'| {n} | {v} | {g} | {"yes" if ok else "NO"} |'
                  for n, v, g, ok in targets]
        lines.append('')
    if table:
        lines += ['| backbone | input | mode | precision | latency (s) | '
                  'images/s | peak memory (MiB) |',
                  '|---|---|---|---|---|---|---|']
        lines += [f'| {n} | {i} | {m} | {low if p == "amp" else p} | '
                  f'{t:.3f} | {ips:.1f} | {mem:.0f} |'
                  for n, i, m, p, t, ips, mem in table]
    # a targets-only run must not overwrite the last full table
    path = osp.join(out, f'{"benchmark" if table else "targets"}_{device}.md')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    print(f'\nwrote {path}')
    if table:
        results = dict(
            machine=machine, device=device, date=date,
            rows=[dict(zip(TABLE_KEYS, (n, i, m, low if p == 'amp' else p,
                                        t, ips, mem)))
                  for n, i, m, p, t, ips, mem in table])
        json_path = osp.join(out, f'benchmark_{device}.json')
        with open(json_path, 'w') as f:
            json.dump(results, f, indent=1)
        print(f'wrote {json_path}')
        draw_chart(results, osp.join(out, f'benchmark_{device}.png'))


def read_results(path: str) -> dict:
    """Benchmark numbers from a run's JSON, or from the table of its
    markdown report (runs older than the JSON output)."""
    if path.endswith('.json'):
        with open(path) as f:
            return json.load(f)
    with open(path) as f:
        text = f.read()
    machine = re.search(r'^Machine: (.*?); ([\d-]+);', text, re.M)
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == len(TABLE_KEYS) and re.fullmatch(r'[\d.]+',
                                                          cells[4]):
            rows.append(dict(zip(TABLE_KEYS, cells[:4] + [
                float(cells[4]), float(cells[5]), float(cells[6])])))
    if not rows:
        raise ValueError(f'{path} has no benchmark table rows')
    return dict(machine=machine.group(1) if machine else 'unknown machine',
                date=machine.group(2) if machine else '', rows=rows)


# STViT sizes beside the Swin of similar FLOPs (paper: S 4.4G ~ Swin-T 4.5G,
# B 9.9G ~ Swin-S 8.7G, L 15.6G ~ Swin-B 15.4G)
PAIRS = (('STViT-S', 'Swin-T'), ('STViT-B', 'Swin-S'), ('STViT-L', 'Swin-B'))
_PAIR_COLOURS = ('#1b6ca8', '#e08a1e', '#3a923a')


def _setting_label(row: dict) -> str:
    mode = 'training step' if row['mode'] == 'train step' else 'inference'
    shape = row['input'].split('x')
    size = f'{shape[1]}x{shape[2]}' if shape[1] != shape[2] else shape[1]
    return f'{size}, batch {shape[0]}: {mode} {row["precision"]}'


def draw_chart(results: dict, path: str) -> None:
    """One panel, legible at README width: for every measured setting (one
    row), the speed of each STViT size relative to the Swin of similar
    FLOPs (Swin's time over STViT's on the same input, > 1 = STViT faster),
    the value printed on each bar. Pairs with a missing backbone are left
    out."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    # latency, not images/s: the report rounds images/s to 0.1, which at
    # 800x1333 (under one image per second) would hide the differences
    latency = {(r['backbone'], r['input'], r['mode'], r['precision']):
               r['latency_s'] for r in results['rows']}
    # in the table's order: by input size, then inference before training
    settings = list(dict.fromkeys((r['input'], r['mode'], r['precision'])
                                  for r in results['rows']))
    pairs = [p for p in PAIRS if all(
        (name, *s) in latency for name in p for s in settings)]
    if not pairs:
        raise ValueError('the chart needs an STViT size and its Swin pair '
                         f'({PAIRS}) in the results')
    ratios = {(ours, s): latency[(theirs, *s)] / latency[(ours, *s)]
              for ours, theirs in pairs for s in settings}
    bar = 0.84 / len(pairs)
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.27 * len(settings) *
                                    len(pairs)))
    ax.axvline(1.0, color='black', linewidth=1.2, zorder=1)
    for k, (ours, theirs) in enumerate(pairs):
        ys = [i + (k - (len(pairs) - 1) / 2) * bar
              for i in range(len(settings))]
        values = [ratios[(ours, s)] for s in settings]
        ax.barh(ys, values, height=bar * 0.9, color=_PAIR_COLOURS[k],
                label=f'{ours} / {theirs}', zorder=2)
        for y, value in zip(ys, values):
            ax.text(value + 0.015, y, f'{value:.2f}x', va='center',
                    fontsize=10, zorder=3,
                    bbox=dict(facecolor='white', edgecolor='none', pad=0.5))
    ax.set_yticks(range(len(settings)),
                  [_setting_label(dict(input=s[0], mode=s[1], precision=s[2]))
                   for s in settings], fontsize=11)
    ax.invert_yaxis()  # first setting on top
    ax.set_xlim(0, max(ratios.values()) * 1.13)
    ax.set_xlabel('STViT speed / Swin speed, same input (> 1: STViT faster)',
                  fontsize=11)
    ax.tick_params(axis='x', labelsize=10)
    ax.grid(axis='x', alpha=0.3, zorder=0)
    ax.legend(loc='lower center', bbox_to_anchor=(0.5, 1.0), ncol=len(pairs),
              fontsize=11, frameon=False)
    ax.set_title('Backbone speed vs the Swin of similar FLOPs\n'
                 f'{results["machine"]}, {results.get("date", "")}',
                 fontsize=11, pad=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f'wrote {path}')


def run_benchmark(device: str, out: str, models: Sequence[str],
                  batches: Sequence[int] = (1, 16), repeats: int = 5,
                  table: bool = True, targets: bool = True,
                  compile: bool = False, quick: bool = False):
    """Measure and write the report (see :func:`write_outputs`).

    Args:
        models: names of :data:`BACKBONES` for the table.
        batches: batch sizes of the 224 rows (``quick``: 1 and 2).
        table, targets: measure the table / the targets 1-4.
        compile: also time torch.compile (:func:`measure_compile`).
        quick: tiny inputs and one repetition: checks that the tool runs.

    Returns:
        tuple: (target rows, table rows).
    """
    unknown = [name for name in models if name not in BACKBONES]
    if unknown:
        raise ValueError(f'unknown backbones {unknown}; choose from '
                         f'{list(BACKBONES)}')
    repeats = 1 if quick else repeats
    target_rows = measure_targets(device, repeats, quick=quick) \
        if targets else []
    if compile:
        target_rows += measure_compile(device, repeats, quick=quick)
    table_rows = measure_table(
        device, list(models), [1, 2] if quick else list(batches), repeats,
        quick=quick) if table else []
    write_outputs(out, device, table_rows, target_rows)
    return target_rows, table_rows


def redraw(results_path: str, out: str, device: str) -> None:
    """Measure nothing: draw the chart of a run's JSON (or of the table of
    its markdown report) into ``out`` as ``benchmark_<device>.png``; the
    run's own device wins over ``device``."""
    results = read_results(results_path)
    os.makedirs(out, exist_ok=True)
    device = results.get('device', device)
    draw_chart(results, osp.join(out, f'benchmark_{device}.png'))
