# Copyright (c) stvit_mm authors. Licensed under the Apache License 2.0.
"""The GPU report: STViT-S/B/L beside Swin-T/S/B (mmdet) and ConvNeXt-T
(mmpretrain) on one CUDA device, and the project's two GPU targets.

Per backbone (:func:`measure_backbone`):

- throughput: fp16 autocast inference, batch 64 at 224x224 (images/s);
- latency: inference of one 800x1333 image, fp32 and fp16 autocast;
- an AMP training step at 800x1333, batch 2 (:class:`AmpTrainStep`), its
  time and the allocator's peak (``torch.cuda.max_memory_allocated``, with
  the weights, the optimizer state and the inputs counted).

Targets (:func:`measure_targets`): STViT-S against Swin-T, timed in
alternation in one process: the AMP training step at 800x1333 no slower and
with less memory; fp16 inference at 800x1333 no slower.
Compile (:func:`measure_compile`): ``torch.compile`` (inductor) of STViT-S
and Swin-T, fp16 inference at 224 and the AMP training step at 800x1333:
seconds of compile + first call, then the compiled and the eager step.

Timing: CUDA events recorded around each call (the host waits for the end
event only), median of ``repeats`` calls after a warm-up. STViT uses the
ImageNet super-token sizes at 224 and the dense ones at 800x1333.

Swin and ConvNeXt come from mmdet and mmpretrain, which import mmcv: when
they cannot be imported their rows are skipped and the report says which and
why; STViT needs only torch and mmengine.

The results are one JSON file (``benchmark_cuda.json``), saved after every
measurement so that a run stopped by a time budget keeps what it measured;
the markdown report and the chart are rendered from it (:func:`render`, also
``benchmark.py --redraw``). ``merge=True`` adds a run to an earlier run's
JSON: tools/gpu_report.sh measures STViT while mmcv builds and the rest
after.

A dry run measures all of it on the CPU at tiny sizes, with the ``eager``
compile backend, so that the reporting runs without a GPU; it writes the same
file names, and its report says DRY RUN at the top.
"""
import gc
import json
import math
import os
import os.path as osp
import shutil
import statistics
import subprocess
import time
import traceback
import xml.etree.ElementTree as ElementTree
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from stvit_mm.analysis.benchmark import (BACKBONES, PeakMemory, _alternate,
                                         _cold_compile_caches,
                                         backbone_unavailable, build_backbone,
                                         cpu_name, draw_chart)

# Mixed precision: fp16 on the GPU (the paper's recipes, AmpOptimWrapper's
# default). A CPU dry run keeps fp32 (autocast off, the GradScaler still
# in the step): fp16 convolutions have no fast CPU kernel and bf16 none
# without native support (measured on a 2-core EPYC: a 2x3x64x64 STViT-S
# forward took over a minute in fp16, 1.2 s in bf16, 0.1 s in fp32).
AMP_DTYPES = {'cuda': torch.float16, 'cpu': None}
STVIT = ('STViT-S', 'STViT-B', 'STViT-L')
TARGET_PAIR = ('STViT-S', 'Swin-T')
COMPILE_MODELS = ('STViT-S', 'Swin-T')
STEM = 'benchmark_cuda'
# a run without the backbone table must not overwrite the last full report
TARGETS_STEM = 'targets_cuda'
KIND = 'stvit_mm gpu report'
FORMAT = 1


@dataclass(frozen=True)
class Sizes:
    """Inputs of the report, and when a compile may start."""
    side: int = 224                          # throughput images: side x side
    batch: int = 64                          # throughput batch
    dense_hw: Tuple[int, int] = (800, 1333)  # latency and training step
    train_batch: int = 2
    compile_backend: str = 'inductor'
    # a compile starts only with this much of the time budget left: it
    # cannot be stopped half way (a cold inductor compile of one backbone
    # takes about a minute)
    compile_min_s: float = 60.


GPU_SIZES = Sizes()
# --quick on a GPU: the same code at tiny sizes, still inductor
QUICK_SIZES = Sizes(side=32, batch=2, dense_hw=(64, 96), compile_min_s=0.)
# --dry-run on the CPU: no code generation (dynamo's capture only)
DRY_RUN_SIZES = replace(QUICK_SIZES, compile_backend='eager')


# ------------------------------------------------------------- environment
def _nvidia_smi(query: str) -> Optional[str]:
    """First line of ``nvidia-smi --query-gpu=<query>``, or None."""
    if shutil.which('nvidia-smi') is None:
        return None
    try:
        result = subprocess.run(
            ['nvidia-smi', f'--query-gpu={query}', '--format=csv,noheader'],
            capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = result.stdout.strip().splitlines()
    return lines[0].strip() if result.returncode == 0 and lines else None


def _driver_version() -> str:
    version = _nvidia_smi('driver_version')
    if version:
        return version
    try:  # the CUDA driver API version torch sees, e.g. 12040
        api = torch._C._cuda_getDriverVersion()
    except (AttributeError, RuntimeError):
        return 'unknown (no nvidia-smi)'
    return (f'unknown (no nvidia-smi); CUDA driver API '
            f'{api // 1000}.{api % 1000 // 10}')


def mmcv_info() -> Dict[str, Optional[str]]:
    """mmcv's version and the CUDA version its ops were compiled with, or
    a note on why they are not available."""
    try:
        import mmcv
    except ImportError as error:
        return dict(version=None, compiled_cuda=None,
                    note=f'mmcv not installed ({error})')
    try:
        from mmcv.ops import get_compiling_cuda_version
        compiled = get_compiling_cuda_version()
    except (ImportError, OSError, AttributeError) as error:
        return dict(version=mmcv.__version__, compiled_cuda=None,
                    note=f'mmcv ops do not import ({error})')
    return dict(version=mmcv.__version__, compiled_cuda=compiled, note=None)


def environment(device: str) -> dict:
    """What the numbers depend on: device, driver, torch, CUDA, mmcv."""
    env = dict(device=device, torch=torch.__version__,
               torch_cuda=torch.version.cuda, mmcv=mmcv_info(),
               cpu=cpu_name(), cpu_count=os.cpu_count())
    if device == 'cuda':
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        env.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f'{props.major}.{props.minor}',
            driver=_driver_version(),
            cudnn=torch.backends.cudnn.version(),
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
            cudnn_benchmark=torch.backends.cudnn.benchmark)
    else:
        env.update(gpu=None, driver=_nvidia_smi('driver_version'))
    return env


def machine_line(results: dict) -> str:
    """One line naming the machine (the chart's title)."""
    env = results['environment']
    if results.get('dry_run'):
        return f'DRY RUN on the CPU ({env["cpu"]}), tiny sizes'
    return (f'{env["gpu"]}, driver {env["driver"]}, torch {env["torch"]} '
            f'(CUDA {env["torch_cuda"]})')


# ------------------------------------------------------------------ timing
def _synchronize(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def seconds_of(device: str, fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes: CUDA events recorded before and
    after it (the host waits for the second only), or the wall clock on the
    CPU, where the work is done when ``fn`` returns."""
    if device == 'cuda':
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    start_s = time.perf_counter()
    fn()
    return time.perf_counter() - start_s


def median_seconds(device: str, fn: Callable[[], object], repeats: int,
                   warmup: int = 1) -> float:
    """Median of :func:`seconds_of` over ``repeats`` calls after
    ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _synchronize(device)
    return statistics.median(seconds_of(device, fn) for _ in range(repeats))


class DevicePeak:
    """Peak memory of the block in MiB. CUDA: ``max_memory_allocated``
    after a reset of the peak, so everything resident counts (weights,
    optimizer state, inputs), as in the training logs; CPU (dry runs): the
    resident set above the level at the start (:class:`PeakMemory`)."""

    def __init__(self, device: str):
        self.device = device
        self.peak_mib = 0.
        self._cpu = PeakMemory('cpu') if device != 'cuda' else None

    def __enter__(self):
        if self._cpu is not None:
            self._cpu.__enter__()
        else:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc):
        if self._cpu is not None:
            self._cpu.__exit__(*exc)
            self.peak_mib = self._cpu.peak_mib
        else:
            torch.cuda.synchronize()
            self.peak_mib = torch.cuda.max_memory_allocated() / 2**20


def _free(device: str) -> None:
    """Return the memory of dropped models, so that the next model's peak
    is its own."""
    gc.collect()
    if device == 'cuda':
        torch.cuda.empty_cache()


def amp_label(device: str) -> str:
    """What 'amp' runs in: 'fp16' on the GPU; in a CPU dry run fp32,
    labelled apart from the true fp32 rows (see :data:`AMP_DTYPES`)."""
    return {torch.float16: 'fp16', None: 'fp32 (as fp16)'}[
        AMP_DTYPES[device]]


def _autocast(device: str, precision: str):
    """Autocast to :data:`AMP_DTYPES` for 'amp', nothing for 'fp32'."""
    if precision not in ('amp', 'fp32'):
        raise ValueError(f"precision must be 'amp' or 'fp32', got "
                         f'{precision!r}')
    dtype = AMP_DTYPES[device]
    if precision == 'fp32' or dtype is None:
        return nullcontext()
    return torch.autocast(device, dtype=dtype)


def inference_step(model, x: torch.Tensor, precision: str):
    """A zero-argument forward of ``model`` on x (B, 3, H, W), without
    gradients, in ``precision`` ('fp32' or 'amp'); returns the outputs."""
    def step():
        with torch.no_grad(), _autocast(x.device.type, precision):
            return model(x)
    return step


def _all_finite(outs) -> bool:
    return all(torch.isfinite(o.float()).all().item() for o in outs)


class AmpTrainStep:
    """One mixed-precision training step of a backbone, the way mmengine's
    AmpOptimWrapper takes it: forward under fp16 autocast, a loss on every
    output (mean square, in fp32), backward of the loss scaled by a
    GradScaler, the unscaled AdamW step (which the scaler skips when a
    gradient is not finite), gradients cleared.

    Args:
        model: the backbone; put in training mode here.
        device: 'cuda' (or 'cpu' in a dry run).
        parameters: the parameters to optimise; default: the model's (a
            compiled wrapper passes its original's).
    """

    def __init__(self, model, device: str, parameters=None):
        model.train()
        self.model = model
        self.device = device
        self.optimizer = torch.optim.AdamW(
            list(model.parameters() if parameters is None else parameters),
            lr=1e-4)
        # a moderate start: at the default 2**16 the first steps of random
        # weights overflow and are skipped until the scale has come down
        self.scaler = torch.amp.GradScaler(device, init_scale=2.**10)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) -> the loss (a scalar, fp32)."""
        with _autocast(self.device, 'amp'):
            loss = sum(o.float().square().mean() for o in self.model(x))
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    def scale(self) -> float:
        return float(self.scaler.get_scale())


def _skipped_steps(before: float, after: float) -> int:
    """Steps the scaler skipped between two scale readings: each skip
    halves the scale; it grows only after 2000 clean steps."""
    return max(0, round(math.log2(before / after))) if after else 0


# ---------------------------------------------------------------- budget
class Budget:
    """Seconds left in which a run may start a measurement (None: no
    limit)."""

    def __init__(self, seconds: Optional[float]):
        self.seconds = seconds
        self._end = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float:
        return math.inf if self._end is None else self._end - time.monotonic()

    def spent(self, needed: float = 0.) -> Optional[str]:
        """Why a measurement needing ``needed`` seconds may not start, or
        None when it may."""
        if self.left() > needed:
            return None
        return (f'time budget of {self.seconds:.0f} s spent' if needed <= 0
                else f'under {needed:.0f} s of the {self.seconds:.0f} s time '
                'budget left')


# ------------------------------------------------------------ measurements
def _row(name: str, x: torch.Tensor, mode: str, precision: str,
         seconds: float, peak_mib: float, note: str = '') -> dict:
    batch, _, height, width = x.shape
    return dict(backbone=name, input=f'{batch}x{height}x{width}', mode=mode,
                precision=precision, latency_s=seconds,
                images_per_s=batch / seconds, peak_mib=peak_mib, note=note)


def inference_row(name: str, model, x: torch.Tensor, precision: str,
                  repeats: int) -> dict:
    """Median seconds and peak memory of ``model``'s forward on x."""
    device = x.device.type
    step = inference_step(model, x, precision)
    with DevicePeak(device) as peak:
        seconds = median_seconds(device, step, repeats)
    note = '' if _all_finite(step()) else 'NON-FINITE OUTPUT'
    label = amp_label(device) if precision == 'amp' else precision
    return _row(name, x, 'inference', label, seconds, peak.peak_mib, note)


def train_row(name: str, model, x: torch.Tensor, repeats: int) -> dict:
    """Median seconds and peak memory of an :class:`AmpTrainStep`."""
    device = x.device.type
    step = AmpTrainStep(model, device)
    step(x)  # warm-up: allocates the optimizer state, which then counts
    scale = step.scale()
    losses = []
    with DevicePeak(device) as peak:
        seconds = median_seconds(device, lambda: losses.append(step(x)),
                                 repeats, warmup=0)
    notes = []
    skipped = _skipped_steps(scale, step.scale())
    if skipped:
        notes.append(f'{skipped} of {repeats} steps skipped by the scaler')
    if not all(torch.isfinite(loss).item() for loss in losses):
        notes.append('NON-FINITE LOSS')
    model.eval()
    return _row(name, x, 'train step', f'{amp_label(device)} AMP', seconds,
                peak.peak_mib,
                '; '.join(notes))


def measure_backbone(name: str, device: str, sizes: Sizes,
                     repeats: int) -> List[dict]:
    """The rows of one backbone: fp16 throughput at 224, fp32 and fp16
    latency at 800x1333, the AMP training step at 800x1333."""
    rows = []
    model = build_backbone(name).to(device)
    x = torch.randn(sizes.batch, 3, sizes.side, sizes.side, device=device)
    rows.append(inference_row(name, model, x, 'amp', repeats))
    del model, x
    _free(device)
    model = build_backbone(name, dense=True).to(device)
    x = torch.randn(1, 3, *sizes.dense_hw, device=device)
    for precision in ('fp32', 'amp'):
        rows.append(inference_row(name, model, x, precision, repeats))
    x = torch.randn(sizes.train_batch, 3, *sizes.dense_hw, device=device)
    rows.append(train_row(name, model, x, repeats))
    del model, x
    _free(device)
    return rows


TARGET_NAMES = (
    'STViT-S AMP training step at 800x1333 no slower than Swin-T\'s, with '
    'less memory',
    'STViT-S fp16 inference at 800x1333 no slower than Swin-T\'s',
)


def _train_peak(name: str, device: str, x: torch.Tensor) -> float:
    """Peak MiB of an AMP training step of ``name`` alone on the device."""
    model = build_backbone(name, dense=True).to(device)
    step = AmpTrainStep(model, device)
    step(x)
    with DevicePeak(device) as peak:
        step(x)
    del model, step
    _free(device)
    return peak.peak_mib


def measure_targets(device: str, sizes: Sizes, repeats: int) -> List[dict]:
    """The two GPU targets (:data:`TARGET_NAMES`), STViT-S [16,8,2,1] vs
    Swin-T at 800x1333 (the sizes' ``dense_hw``): the training peaks of each
    model alone, then both models' steps timed in alternation (see
    :func:`~stvit_mm.analysis.benchmark._alternate`), so that a drift of the
    machine's speed hits both alike."""
    height, width = sizes.dense_hw
    x_train = torch.randn(sizes.train_batch, 3, height, width, device=device)
    peaks = [_train_peak(name, device, x_train) for name in TARGET_PAIR]
    models = [build_backbone(name, dense=True).to(device)
              for name in TARGET_PAIR]
    steps = [AmpTrainStep(model, device) for model in models]
    train_s = _alternate([partial(step, x_train) for step in steps], repeats,
                         device)
    for model in models:
        model.eval()
    x = torch.randn(1, 3, height, width, device=device)
    finite = []
    infer_s = _alternate([inference_step(model, x, 'amp')
                          for model in models], repeats, device,
                         inspect=lambda outs: finite.append(_all_finite(outs)))
    del models, steps
    _free(device)

    size = f'{sizes.train_batch}x3x{height}x{width}'
    (t_st, t_sw), (m_st, m_sw) = train_s, peaks
    train = dict(
        name=TARGET_NAMES[0],
        measured=f'{size}: {t_st * 1e3:.1f} vs {t_sw * 1e3:.1f} ms '
        f'({t_st / t_sw:.2f}x); peak {m_st:.0f} vs {m_sw:.0f} MiB',
        goal='time <= 1.00x and lower peak',
        met=bool(t_st <= t_sw and m_st < m_sw))
    (i_st, i_sw) = infer_s
    inference = dict(
        name=TARGET_NAMES[1],
        measured=f'1x3x{height}x{width}: {i_st * 1e3:.1f} vs '
        f'{i_sw * 1e3:.1f} ms ({i_st / i_sw:.2f}x)'
        f'{"" if all(finite) else " (NON-FINITE OUTPUT)"}',
        goal='<= 1.00x', met=bool(all(finite) and i_st <= i_sw))
    return [train, inference]


def compile_row(name: str, mode: str, device: str, sizes: Sizes,
                repeats: int) -> dict:
    """``torch.compile`` of one backbone from cold caches: seconds of the
    first call (compile included), then the median compiled and eager
    step. ``mode``: 'inference' (fp16, batch x side^2) or 'train step'
    (:class:`AmpTrainStep`, train_batch x dense_hw)."""
    train = mode == 'train step'
    model = build_backbone(name, dense=train).to(device)
    shape = ((sizes.train_batch, 3, *sizes.dense_hw) if train else
             (sizes.batch, 3, sizes.side, sizes.side))
    x = torch.randn(*shape, device=device)
    with _cold_compile_caches():
        compiled = torch.compile(model, backend=sizes.compile_backend)
        if train:
            compiled_step = partial(AmpTrainStep(compiled, device,
                                                 model.parameters()), x)
            eager_step = partial(AmpTrainStep(model, device), x)
        else:
            compiled_step = inference_step(compiled, x, 'amp')
            eager_step = inference_step(model, x, 'amp')
        first = seconds_of(device, compiled_step)
        compiled_s = median_seconds(device, compiled_step, repeats)
    eager_s = median_seconds(device, eager_step, repeats)
    del model, compiled, compiled_step, eager_step
    _free(device)
    return dict(backbone=name, mode=mode,
                input='x'.join(str(v) for v in shape[:1] + shape[2:]),
                precision=amp_label(device) + (' AMP' if train else ''),
                backend=sizes.compile_backend, first_call_s=first,
                compiled_s=compiled_s, eager_s=eager_s)


# ----------------------------------------------------------------- results
def _save(results: dict, path: str) -> None:
    """Write the JSON whole or not at all (a kill mid-write keeps the
    previous file)."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, path)


def load_results(path: str) -> dict:
    with open(path) as f:
        results = json.load(f)
    if results.get('kind') != KIND:
        raise ValueError(f'{path} is not a GPU report (no "kind": "{KIND}")')
    return results


class Report:
    """The results of a GPU report and its JSON file, saved on every
    change. Rows are replaced per backbone, the targets and compile rows
    per name, so that runs merge."""

    def __init__(self, path: str, results: dict):
        self.path = path
        self.results = results
        self.new_errors = 0  # recorded by this run

    @classmethod
    def start(cls, path: str, merge: bool, env: dict, sizes: Sizes,
              repeats: int, dry_run: bool) -> 'Report':
        os.makedirs(osp.dirname(path) or '.', exist_ok=True)
        sizes_dict = asdict(sizes)
        if merge and osp.isfile(path):
            results = load_results(path)
            if results['environment'].get('gpu') != env.get('gpu') or \
                    results.get('dry_run') != dry_run or \
                    results['sizes'] != json.loads(json.dumps(sizes_dict)):
                raise ValueError(
                    f'cannot merge into {path}: it was measured on '
                    f'{machine_line(results)} at sizes {results["sizes"]}; '
                    'this run differs (machine, dry run or sizes)')
            results['environment'] = env  # the newest knows mmcv
            results['date'] = time.strftime('%Y-%m-%d')
        else:
            results = dict(kind=KIND, format=FORMAT, device=env['device'],
                           dry_run=dry_run, environment=env,
                           date=time.strftime('%Y-%m-%d'), sizes=sizes_dict,
                           repeats=repeats, runs=[], rows=[], skipped=[],
                           targets=[], compile=[], tests=[])
        results['machine'] = machine_line(results)
        report = cls(path, results)
        report.save()
        return report

    def save(self) -> None:
        _save(self.results, self.path)

    @contextmanager
    def measuring(self, what: str):
        """Marks ``what`` as in progress in the file while it runs (the mark
        stays if the run is killed). An exception inside is recorded under
        ``errors`` with its message and printed, and the run goes on to the
        next measurement: one backbone's failure (say, out of memory) must
        not cost the others' rows. :func:`run_gpu_report` then returns the
        number of errors, and the CLI exits non-zero."""
        self.results['in_progress'] = what
        # an earlier run's failure of the same measurement is superseded
        errors = [e for e in self.results.get('errors', [])
                  if e['what'] != what]
        self.results['errors'] = errors
        self.save()
        try:
            yield
        except Exception as error:  # noqa: BLE001  (recorded, see above)
            traceback.print_exc()
            errors.append(dict(what=what, error=f'{type(error).__name__}: '
                               f'{(str(error) or " ").splitlines()[0]}'))
            self.new_errors += 1
            _free(self.results['device'])
        # not reached on KeyboardInterrupt / SystemExit: the mark stays
        self.results.pop('in_progress', None)
        self.save()

    def skip(self, what: str, why: str) -> None:
        self.results['skipped'] = [s for s in self.results['skipped']
                                   if s['what'] != what]
        self.results['skipped'].append(dict(what=what, why=why))
        self.save()

    def _unskip(self, what: str) -> None:
        self.results['skipped'] = [s for s in self.results['skipped']
                                   if s['what'] != what]

    def set_rows(self, name: str, rows: List[dict]) -> None:
        self.results['rows'] = [r for r in self.results['rows']
                                if r['backbone'] != name] + rows
        self._unskip(name)
        self.save()

    def set_targets(self, targets: List[dict]) -> None:
        self.results['targets'] = targets
        self._unskip('targets')
        self.save()

    def skip_targets(self, why: str) -> None:
        """Targets not measured; measured ones of an earlier run stay."""
        if any(t['met'] is not None for t in self.results['targets']):
            return
        self.results['targets'] = [dict(name=name, measured='-', goal='-',
                                        met=None) for name in TARGET_NAMES]
        self.skip('targets', why)

    def set_compile(self, row: dict) -> None:
        key = (row['backbone'], row['mode'])
        self.results['compile'] = [
            r for r in self.results['compile']
            if (r['backbone'], r['mode']) != key] + [row]
        self._unskip(f'compile {row["backbone"]} {row["mode"]}')
        self.save()

    def add_run(self, run: dict) -> None:
        self.results['runs'].append(run)
        self.save()



# ------------------------------------------------------------------- tests
def read_junit(path: str) -> Dict[str, int]:
    """Test counts of a pytest junit XML file: passed, failed, errors,
    skipped."""
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == 'testsuite' else root.iter('testsuite')
    counts = dict(passed=0, failed=0, errors=0, skipped=0)
    for suite in suites:
        tests = int(suite.get('tests', 0))
        failed, errors = int(suite.get('failures', 0)), \
            int(suite.get('errors', 0))
        skipped = int(suite.get('skipped', 0))
        counts['failed'] += failed
        counts['errors'] += errors
        counts['skipped'] += skipped
        counts['passed'] += tests - failed - errors - skipped
    return counts


def record_tests(results: dict, entries: Sequence[str]) -> None:
    """Add pytest results to ``results['tests']``, one per ``LABEL=PATH``
    (a junit XML file; a missing file is recorded as not run)."""
    for entry in entries:
        label, sep, path = entry.partition('=')
        if not sep or not label or not path:
            raise ValueError(f'--tests takes LABEL=JUNIT_XML, got {entry!r}')
        record = dict(label=label, file=osp.basename(path))
        if osp.isfile(path):
            try:
                record.update(read_junit(path))
            except ElementTree.ParseError as error:
                record['note'] = f'unreadable junit file ({error})'
        else:
            record['note'] = 'not run (no result file)'
        results['tests'] = [t for t in results.get('tests', [])
                            if t['label'] != label] + [record]


# --------------------------------------------------------------------- run
def run_gpu_report(out: str, device: str = 'cuda',
                   models: Sequence[str] = tuple(BACKBONES),
                   sizes: Sizes = GPU_SIZES, repeats: int = 5,
                   table: bool = True, targets: bool = True,
                   compile: bool = False, merge: bool = False,
                   skip: Sequence[str] = (), skip_reason: str = '',
                   time_budget: Optional[float] = None, note: str = '',
                   tests: Sequence[str] = (), dry_run: bool = False) -> int:
    """Measure, save ``<out>/benchmark_cuda.json`` after each measurement,
    and render the markdown report and the chart (:func:`render`).

    Args:
        models: backbones of the table (names of :data:`BACKBONES`).
        table, targets, compile: which sections run.
        merge: add to the JSON already in ``out`` (rows replaced per
            backbone) instead of starting a new one.
        skip: what this run leaves out and records as skipped with
            ``skip_reason``: backbone names (then also their targets and
            compile rows) or any other label, e.g. a test group.
        time_budget: seconds after which no measurement starts (a compile
            needs ``sizes.compile_min_s`` left); the rest is recorded as
            skipped.
        note: a line about this run for the report.
        tests: ``LABEL=JUNIT_XML`` pytest results to include.
        dry_run: on the CPU (``device`` must be 'cpu').

    Returns:
        int: the number of measurements of this run that raised (recorded
        in the report).
    """
    unknown = [name for name in models if name not in BACKBONES]
    if unknown:
        raise ValueError(f'unknown backbones {unknown}; choose from '
                         f'{list(BACKBONES)}')
    both = sorted(set(models) & set(skip))
    if both:
        raise ValueError(f'{both} both measured and skipped')
    if skip and not skip_reason:
        raise ValueError('skipping needs a reason (skip_reason)')
    if device == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('no CUDA device is visible to torch '
                           f'(torch {torch.__version__}, CUDA build '
                           f'{torch.version.cuda}); a dry run checks the '
                           'report on the CPU')
    if dry_run and device != 'cpu':
        raise ValueError('a dry run runs on the CPU')
    started, budget = time.time(), Budget(time_budget)
    stem = STEM if table or merge else TARGETS_STEM
    report = Report.start(osp.join(out, stem + '.json'), merge,
                          environment(device), sizes, repeats, dry_run)
    for what in skip:
        report.skip(what, skip_reason)
    load = os.getloadavg()
    measured = []

    def unavailable(name: str) -> Optional[str]:
        if name in skip:
            return skip_reason
        return backbone_unavailable(name)

    for name in models if table else ():
        why = unavailable(name) or budget.spent()
        if why:
            print(f'skipped {name}: {why}', flush=True)
            report.skip(name, why)
            continue
        with report.measuring(f'backbone {name}'):
            report.set_rows(name, measure_backbone(name, device, sizes,
                                                   repeats))
            measured.append(name)
            print(f'measured {name}', flush=True)
    if targets:
        why = next(filter(None, map(unavailable, TARGET_PAIR)), None) or \
            budget.spent()
        if why:
            report.skip_targets(f'{" vs ".join(TARGET_PAIR)}: {why}')
        else:
            with report.measuring('targets'):
                report.set_targets(measure_targets(device, sizes, repeats))
                measured.append('targets')
    for mode in ('inference', 'train step') if compile else ():
        for name in COMPILE_MODELS:
            what = f'compile {name} {mode}'
            why = unavailable(name) or budget.spent(sizes.compile_min_s)
            if why:
                print(f'skipped {what}: {why}', flush=True)
                report.skip(what, why)
                continue
            with report.measuring(what):
                report.set_compile(compile_row(name, mode, device, sizes,
                                               repeats))
                measured.append(what)
                print(f'measured {what}', flush=True)
    report.add_run(dict(
        started=time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started)),
        seconds=round(time.time() - started, 1), measured=measured,
        repeats=repeats,
        load_average=[round(v, 1) for v in load], note=note))
    record_tests(report.results, tests)
    report.save()
    render(report.results, out, stem)
    return report.new_errors


# ------------------------------------------------------------------ output
def _yes_no(met: Optional[bool]) -> str:
    return 'skipped' if met is None else 'yes' if met else 'NO'


def _bullets(results: dict) -> List[str]:
    env = results['environment']
    mmcv = env['mmcv']
    if mmcv['compiled_cuda'] == 'not available':
        mmcv_line = f'mmcv {mmcv["version"]} with CPU-only ops (no CUDA)'
    elif mmcv['compiled_cuda']:
        mmcv_line = (f'mmcv {mmcv["version"]}, ops compiled with CUDA '
                     f'{mmcv["compiled_cuda"]}')
    else:
        mmcv_line = f'mmcv: {mmcv["note"]}'
    if results.get('dry_run'):
        device_line = (f'no GPU: {env["cpu"]}, {env["cpu_count"]} CPUs; '
                       f'nvidia-smi driver: {env["driver"]}')
    else:
        device_line = (
            f'GPU: {env["gpu"]} (compute capability '
            f'{env["compute_capability"]}, {env["gpu_memory_gib"]} GiB), '
            f'driver {env["driver"]}; CPU: {env["cpu"]}, '
            f'{env["cpu_count"]} CPUs')
    lines = [
        f'- {device_line}',
        f'- torch {env["torch"]}, CUDA {env["torch_cuda"]}'
        + ('' if results.get('dry_run') else
           f', cuDNN {env["cudnn"]}; TF32 matmul '
           f'{"on" if env["tf32_matmul"] else "off"}, cuDNN TF32 '
           f'{"on" if env["tf32_cudnn"] else "off"}, cudnn.benchmark '
           f'{"on" if env["cudnn_benchmark"] else "off"}'),
        f'- {mmcv_line}',
        f'- {results["date"]}; medians of '
        + '/'.join(str(r) for r in sorted({run.get('repeats', results[
            'repeats']) for run in results['runs']} or {results['repeats']}))
        + ' calls after a warm-up, '
        + ('wall clock (CPU)' if results.get('dry_run') else
           'timed with CUDA events'),
    ]
    for i, run in enumerate(results['runs'], 1):
        load = run['load_average'][0]
        lines.append(
            f'- run {i}, {run["started"]}, {run["seconds"]:.0f} s, load '
            f'average {load} on {env["cpu_count"]} CPUs: '
            f'{", ".join(run["measured"]) or "nothing measured"}'
            + (f'. {run["note"]}' if run['note'] else ''))
    return lines


def markdown(results: dict) -> str:
    """The report: machine, targets, backbone table, compile table, tests,
    and what was skipped or failed, and why."""
    sizes = results['sizes']
    dense = 'x'.join(str(v) for v in sizes['dense_hw'])
    lines = ['# STViT on the GPU beside Swin and ConvNeXt', '']
    if results.get('dry_run'):
        lines += ['**DRY RUN on the CPU at tiny sizes: this checks the '
                  "report's code; the numbers measure nothing.**", '']
    lines += _bullets(results) + ['']
    if results.get('in_progress'):
        lines += [f'**Interrupted while measuring {results["in_progress"]}** '
                  '(the run was stopped, e.g. by its time budget; what '
                  'follows it in that run was not measured).', '']
    for error in results.get('errors', []):
        lines.append(f'**Failed: {error["what"]}**: {error["error"]}')
    if results.get('errors'):
        lines.append('')
    if results['targets']:
        lines += ['## Targets', '', '| target | measured | goal | met |',
                  '|---|---|---|---|']
        lines += [f'| {t["name"]} | {t["measured"]} | {t["goal"]} | '
                  f'{_yes_no(t["met"])} |' for t in results['targets']]
        lines.append('')
    skipped = {s['what']: s['why'] for s in results['skipped']}
    skipped_models = [name for name in BACKBONES if name in skipped]
    if results['rows'] or skipped_models:
        lines += [
            '## Backbones', '',
            f'Throughput: batch {sizes["batch"]} at {sizes["side"]}x'
            f'{sizes["side"]}; latency: one {dense} image; training step: '
            f'batch {sizes["train_batch"]} at {dense}, '
            + ('fp16 autocast forward' if results['device'] == 'cuda' else
               'forward (no autocast in a dry run)')
            + ', GradScaler backward, AdamW step. Peak memory: '
            + ('resident set above the start (CPU dry run).'
               if results.get('dry_run') else
               'torch.cuda.max_memory_allocated, weights, optimizer state '
               'and inputs included.'), '',
            '| backbone | input | mode | precision | latency (s) | '
            'images/s | peak memory (MiB) |',
            '|---|---|---|---|---|---|---|']
        lines += [f'| {r["backbone"]} | {r["input"]} | {r["mode"]} | '
                  f'{r["precision"]} | {r["latency_s"]:.4f} | '
                  f'{r["images_per_s"]:.1f} | {r["peak_mib"]:.0f}'
                  f'{" (" + r["note"] + ")" if r.get("note") else ""} |'
                  for r in results['rows']]
        by_reason: Dict[str, List[str]] = {}
        for name in skipped_models:
            by_reason.setdefault(skipped[name], []).append(name)
        lines += [f'| {", ".join(names)} | skipped: {why} | | | | | |'
                  for why, names in by_reason.items()]
        lines.append('')
    compile_skips = {what: why for what, why in skipped.items()
                     if what.startswith('compile ')}
    if results['compile'] or compile_skips:
        lines += ['## torch.compile', '',
                  'From cold caches; the first call includes the compile.',
                  '', '| backbone | step | input | backend | first call (s) | '
                  'compiled (s) | eager (s) | speed-up |',
                  '|---|---|---|---|---|---|---|---|']
        lines += [f'| {r["backbone"]} | {r["mode"]} {r["precision"]} | '
                  f'{r["input"]} | {r["backend"]} | {r["first_call_s"]:.1f} | '
                  f'{r["compiled_s"]:.4f} | {r["eager_s"]:.4f} | '
                  f'{r["eager_s"] / r["compiled_s"]:.2f}x |'
                  for r in results['compile']]
        lines += [f'| {what[len("compile "):]} | skipped: {why} | | | | | | |'
                  for what, why in compile_skips.items()]
        lines.append('')
    if results.get('tests'):
        lines += ['## CUDA tests', '',
                  '| tests | passed | failed | errors | skipped | output |',
                  '|---|---|---|---|---|---|']
        for t in results['tests']:
            if 'note' in t:
                lines.append(f'| {t["label"]} | {t["note"]} | | | | '
                             f'{t["file"]} |')
            else:
                lines.append(f'| {t["label"]} | {t["passed"]} | '
                             f'{t["failed"]} | {t["errors"]} | '
                             f'{t["skipped"]} | {t["file"]} |')
        lines.append('')
    others = {what: why for what, why in skipped.items()
              if what not in BACKBONES and what not in compile_skips}
    if others:
        lines += ['## Skipped', '']
        lines += [f'- {what}: {why}' for what, why in others.items()]
        lines.append('')
    return '\n'.join(lines)


def draw_latency_chart(results: dict, path: str) -> None:
    """The chart when no STViT/Swin pair was measured: for every setting,
    each backbone's latency in ms, the value printed on its bar."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = results['rows']
    names = list(dict.fromkeys(r['backbone'] for r in rows))
    settings = list(dict.fromkeys((r['input'], r['mode'], r['precision'])
                                  for r in rows))
    latency = {(r['backbone'], r['input'], r['mode'], r['precision']):
               r['latency_s'] * 1e3 for r in rows}
    bar = 0.84 / len(names)
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.27 * len(settings) *
                                    len(names)))
    colours = plt.get_cmap('tab10').colors
    for k, name in enumerate(names):
        points = [(i + (k - (len(names) - 1) / 2) * bar, latency[(name, *s)])
                  for i, s in enumerate(settings) if (name, *s) in latency]
        ax.barh([y for y, _ in points], [v for _, v in points],
                height=bar * 0.9, color=colours[k % len(colours)],
                label=name, zorder=2)
        for y, value in points:
            ax.text(value, y, f' {value:.1f}', va='center', fontsize=9,
                    zorder=3)
    ax.set_yticks(range(len(settings)),
                  [f'{i}: {m} {p}' for i, m, p in settings], fontsize=10)
    ax.invert_yaxis()
    ax.set_xlim(0, max(latency.values()) * 1.15)
    ax.set_xlabel('latency (ms), lower is faster', fontsize=11)
    ax.grid(axis='x', alpha=0.3, zorder=0)
    ax.legend(loc='lower center', bbox_to_anchor=(0.5, 1.0),
              ncol=len(names), fontsize=10, frameon=False)
    ax.set_title(f'Backbone latency (no Swin pair measured)\n'
                 f'{results["machine"]}, {results["date"]}', fontsize=11,
                 pad=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f'wrote {path}')


def render(results: dict, out: str, stem: str = STEM) -> None:
    """Write ``<stem>.md`` and, when there are rows, ``<stem>.png``
    (default stem: ``benchmark_cuda``): STViT's speed relative to the Swin
    of similar FLOPs (:func:`~stvit_mm.analysis.benchmark.draw_chart`)
    when such pairs were measured, else every backbone's latency."""
    os.makedirs(out, exist_ok=True)
    text = markdown(results)
    path = osp.join(out, stem + '.md')
    with open(path, 'w') as f:
        f.write(text)
    print(text)
    print(f'wrote {path}')
    if not results['rows']:
        print('no backbone rows: no chart')
        return
    png = osp.join(out, stem + '.png')
    try:
        draw_chart(results, png)
    except ValueError:  # no STViT size with its Swin pair measured
        draw_latency_chart(results, png)


def redraw(results_path: str, out: str, tests: Sequence[str] = ()) -> None:
    """Render a GPU report's JSON again (after a killed run, or to add
    ``tests``, which are then saved into the JSON as well)."""
    results = load_results(results_path)
    if tests:
        record_tests(results, tests)
        _save(results, results_path)
    render(results, out, osp.splitext(osp.basename(results_path))[0])
