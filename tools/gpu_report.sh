#!/usr/bin/env bash
# The GPU report in one command, on a bare CUDA machine with a preinstalled torch
# and no network, within a time budget (default 8 minutes):
#
#   1. install everything but mmcv and the toolboxes that need it
#      (tools/install.sh --keep-torch --no-mmcv), into the venv install.sh uses;
#   2. start the full install, i.e. the mmcv CUDA build, in the background on all
#      cores at the lowest CPU priority (nice 19, so that the timings below keep
#      their CPU);
#   3. meanwhile: the CUDA tests that need no mmcv (pytest -m "cuda and not mmcv")
#      and the STViT rows of the GPU benchmark;
#   4. wait for the build until BUDGET - RESERVE seconds after the start;
#   5. build done: the Swin/ConvNeXt rows, the targets and torch.compile
#      (benchmark --merge), then the CUDA tests that need mmcv
#      (pytest -m "cuda and mmcv");
#      not done: torch.compile of STViT-S only, and the report says what was
#      skipped and why (the build goes on; a later run finds its cached wheel);
#   6. render benchmark_cuda.{md,json,png} with the test results;
#   7. optional, when STVIT_MM_GPU_REPORT_ONNX names ONNX files: their
#      TensorRT-readiness (stvit_mm.deploy.tensorrt) and, where the venv
#      imports tensorrt, a TensorRT engine built from each (profile of the
#      dynamic input: 1x3x64x64 / 1x3x512x512 / 1x3x1344x1344, static dims
#      kept; the engine itself is not kept), written to tensorrt.md; without
#      tensorrt the file says "tensorrt not importable: engine build skipped"
#      (a dry run: readiness only). This step never makes the report fail.
#
# Usage: tools/gpu_report.sh [--offline DIR] [--out DIR] [--dry-run]
#   --offline DIR  install only from DIR (passed to tools/install.sh)
#   --out DIR      where the report, the pytest results and the logs go
#                  (default docs/benchmark; a dry run: a new temp folder)
#   --dry-run      no install, no GPU: the same flow on the CPU at tiny sizes (the
#                  CUDA tests report "skipped: no CUDA device"); checks the script
# Environment:
#   STVIT_MM_GPU_REPORT_BUDGET   total seconds (default 480)
#   STVIT_MM_GPU_REPORT_RESERVE  seconds kept for step 5 after the wait (default 150)
#   STVIT_MM_GPU_REPORT_MODELS   backbones to measure (default: all seven)
#   STVIT_MM_GPU_REPORT_COMPILE  1 (default): time torch.compile in step 5; 0: skip it
#   STVIT_MM_GPU_REPORT_ONNX     space-separated .onnx files for step 7 (absolute, or
#                                relative to the repository root), e.g. the deploy
#                                tool's end2end.onnx (default: none, no step 7)
#   STVIT_MM_GPU_REPORT_TRT_PLUGINS  a TensorRT plugin library for step 7 (e.g.
#                                mmdeploy's libmmdeploy_tensorrt_ops.so built for TensorRT 10)
#   STVIT_MM_VENV, PYTHON        as for tools/install.sh (PYTHON: the interpreter
#                                with the preinstalled torch)
# Outputs in --out: benchmark_cuda.{md,json,png}, pytest_cuda_phase{1,2}.{xml,log},
# benchmark.log, install_base.log, install_mmcv.log; tensorrt.md with step 7.
# Exit status: 0 when the report is written and nothing failed (a build that did
# not finish in time is reported, not a failure); 1 when a step failed; 2 on bad
# usage or no visible CUDA device.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${STVIT_MM_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
BUDGET="${STVIT_MM_GPU_REPORT_BUDGET:-480}"
RESERVE="${STVIT_MM_GPU_REPORT_RESERVE:-150}"
ALL_MODELS="STViT-S STViT-B STViT-L Swin-T Swin-S Swin-B ConvNeXt-T"
MODELS="${STVIT_MM_GPU_REPORT_MODELS:-$ALL_MODELS}"
COMPILE="${STVIT_MM_GPU_REPORT_COMPILE:-1}"
START=$(date +%s)
DEADLINE=$((START + BUDGET))

log() { printf '[gpu_report %3ds] %s\n' "$(($(date +%s) - START))" "$*"; }
# die MESSAGE [STATUS]
die() { printf '[gpu_report] error: %s\n' "$1" >&2; exit "${2:-1}"; }
left() { echo $((DEADLINE - $(date +%s))); }
# clamp VALUE MIN MAX
clamp() { local v=$1; [ "$v" -lt "$2" ] && v=$2; [ "$v" -gt "$3" ] && v=$3; echo "$v"; }
usage() { sed -n '/^# Usage:/,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

OFFLINE=()
OUT=""
DRY_RUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --offline) [ $# -ge 2 ] || die "--offline needs a folder" 2
               [ -d "$2" ] || die "--offline $2: no such folder" 2
               OFFLINE=(--offline "$(cd "$2" && pwd)"); shift 2 ;;
    --out) [ $# -ge 2 ] || die "--out needs a folder" 2; OUT="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" 2 ;;
  esac
done
for value in "$BUDGET" "$RESERVE"; do
  [[ "$value" =~ ^[0-9]+$ ]] || die "STVIT_MM_GPU_REPORT_BUDGET/RESERVE must be whole seconds, got '$value'" 2
done
case "$COMPILE" in
  1) COMPILE_ARGS=(--compile) ;;
  0) COMPILE_ARGS=() ;;
  *) die "STVIT_MM_GPU_REPORT_COMPILE must be 0 or 1, got '$COMPILE'" 2 ;;
esac
[ "$RESERVE" -lt "$BUDGET" ] || die "STVIT_MM_GPU_REPORT_RESERVE ($RESERVE) must be under the budget ($BUDGET)" 2
STVIT_MODELS=() OTHER_MODELS=()
for model in $MODELS; do
  [[ " $ALL_MODELS " == *" $model "* ]] || die "STVIT_MM_GPU_REPORT_MODELS: unknown backbone '$model' (known: $ALL_MODELS)" 2
  if [[ "$model" == STViT-* ]]; then STVIT_MODELS+=("$model"); else OTHER_MODELS+=("$model"); fi
done
[ ${#STVIT_MODELS[@]} -gt 0 ] || die "STVIT_MM_GPU_REPORT_MODELS names no STViT size" 2

if [ -z "$OUT" ]; then
  if [ "$DRY_RUN" = 1 ]; then OUT="$(mktemp -d "${TMPDIR:-/tmp}/gpu_report_dry_run.XXXXXX")"; else OUT="$ROOT/docs/benchmark"; fi
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
if [ "$DRY_RUN" = 1 ] && [ "$OUT" = "$ROOT/docs/benchmark" ]; then
  die "a dry run would overwrite the real GPU report in docs/benchmark; pass another --out" 2
fi
cd "$ROOT"

# ---------------------------------------------------------------- 0. a GPU?
if [ "$DRY_RUN" = 0 ]; then
  if ! CUDA_CHECK="$("$PYTHON" -c 'import torch
print(torch.__version__, torch.version.cuda, torch.cuda.is_available())' 2>&1)"; then
    die "torch does not import in $PYTHON (the GPU report uses the preinstalled torch; set PYTHON): ${CUDA_CHECK##*$'\n'}" 2
  fi
  if [[ "$CUDA_CHECK" != *True ]]; then
    SMI="$(nvidia-smi -L 2>&1 || true)"
    die "no CUDA device is visible: torch (version, CUDA, available) = $CUDA_CHECK; nvidia-smi: ${SMI:-not found}; CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset>}. Run this on a machine with an NVIDIA GPU and a CUDA build of torch, or pass --dry-run to check the script's flow on the CPU." 2
  fi
  log "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -n 1 || echo 'nvidia-smi not found'); torch $CUDA_CHECK"
fi
log "budget ${BUDGET} s (wait for mmcv until $((BUDGET - RESERVE)) s); output in $OUT"

# ---------------------------------------------------------------- 1. install
PY="$VENV/bin/python"
if [ "$DRY_RUN" = 1 ]; then
  log "dry run: no install (would run: bash tools/install.sh --keep-torch --no-mmcv ${OFFLINE[*]:-})"
  echo "dry run: nothing installed" > "$OUT/install_base.log"
else
  log "1. installing all but mmcv (log: install_base.log)"
  if ! timeout "$(clamp "$(left)" 30 100000)" bash "$ROOT/tools/install.sh" --keep-torch --no-mmcv ${OFFLINE[@]+"${OFFLINE[@]}"} \
      > "$OUT/install_base.log" 2>&1; then
    tail -n 20 "$OUT/install_base.log" >&2
    die "tools/install.sh --keep-torch --no-mmcv failed (log: $OUT/install_base.log)"
  fi
fi
[ -x "$PY" ] || die "no python in the venv $VENV (set STVIT_MM_VENV)"

# ------------------------------------------------------- 2. mmcv in background
# In its own session (setsid), so that an interrupt of this script can stop the
# whole build (pip, ninja, nvcc) as one process group.
if [ "$DRY_RUN" = 1 ]; then
  # stands in for the build: "done" when the venv already has mmcv and toolboxes
  setsid "$PY" -c 'import mmcv.ops, mmdet.models, mmpretrain.models, mmseg.models' \
    > "$OUT/install_mmcv.log" 2>&1 &
else
  log "2. building mmcv with CUDA in the background, $(nproc) jobs, nice 19 (log: install_mmcv.log)"
  setsid nice -n 19 env MAX_JOBS="$(nproc)" bash "$ROOT/tools/install.sh" --keep-torch \
    ${OFFLINE[@]+"${OFFLINE[@]}"} > "$OUT/install_mmcv.log" 2>&1 &
fi
BUILD_PID=$!
trap 'kill -- -"$BUILD_PID" 2>/dev/null || true; die "interrupted; the mmcv build was stopped"' INT TERM

FAILED=()
# run_pytest LABEL MARKER SECONDS
run_pytest() {
  local status=0
  log "pytest -m \"$2\" (up to $3 s; output: pytest_cuda_$1.{xml,log})"
  timeout --kill-after=10 "$3" "$PY" -m pytest "$ROOT/tests/test_cuda.py" -m "$2" -q -rs \
    -p no:cacheprovider --junitxml "$OUT/pytest_cuda_$1.xml" > "$OUT/pytest_cuda_$1.log" 2>&1 || status=$?
  tail -n 6 "$OUT/pytest_cuda_$1.log" | sed 's/^/    /'
  case "$status" in
    0) ;;
    124|137) FAILED+=("pytest $1 (killed after $3 s)") ;;
    *) FAILED+=("pytest $1 (exit $status)") ;;
  esac
}
if [ "$DRY_RUN" = 1 ]; then
  BENCH_MODE=(--dry-run)
else
  BENCH_MODE=(--device cuda --repeats 10)
fi
# bench SECONDS ARGS...: the benchmark, killed after SECONDS; its JSON is saved
# after every measurement, so a killed run keeps what it measured
bench() {
  local limit=$1 status=0
  shift
  log "benchmark $* (up to $limit s; log: benchmark.log)"
  timeout --kill-after=10 "$limit" "$PY" tools/analysis_tools/benchmark.py "${BENCH_MODE[@]}" \
    --out "$OUT" "$@" >> "$OUT/benchmark.log" 2>&1 || status=$?
  case "$status" in
    0) ;;
    124|137) log "the benchmark was stopped at its time limit; the report marks what it was measuring" ;;
    *) FAILED+=("benchmark (exit $status)"); tail -n 15 "$OUT/benchmark.log" | sed 's/^/    /' ;;
  esac
}

# ------------------------------------------------------------ 3. no mmcv yet
: > "$OUT/benchmark.log"
rm -f "$OUT"/pytest_cuda_phase{1,2}.{xml,log}
run_pytest phase1 "cuda and not mmcv" "$(clamp $(($(left) - RESERVE)) 30 150)"
if [ "$DRY_RUN" = 1 ]; then
  PHASE1_NOTE="STViT rows (dry run: a stand-in for the mmcv build ran meanwhile)"
else
  PHASE1_NOTE="STViT rows, measured while mmcv was built in the background (nice 19)"
fi
PHASE1=$(clamp $(($(left) - RESERVE)) 60 240)
SKIP_OTHERS=()
if [ ${#OTHER_MODELS[@]} -gt 0 ]; then
  SKIP_OTHERS=(--skip "${OTHER_MODELS[@]}" --skip-reason "not measured yet: they need mmcv, built in the background meanwhile")
fi
# a backbone's rows take up to ~30 s: start none in the last 30 s
bench "$PHASE1" --models "${STVIT_MODELS[@]}" ${SKIP_OTHERS[@]+"${SKIP_OTHERS[@]}"} \
  --time-budget $((PHASE1 - 30)) \
  --note "$PHASE1_NOTE"
[ -f "$OUT/benchmark_cuda.json" ] || die "the benchmark wrote no $OUT/benchmark_cuda.json (log: $OUT/benchmark.log)"

# ----------------------------------------------------------------- 4. wait
WAIT_UNTIL=$((DEADLINE - RESERVE))
if kill -0 "$BUILD_PID" 2>/dev/null; then
  log "4. waiting for the mmcv build until $((WAIT_UNTIL - START)) s"
fi
while kill -0 "$BUILD_PID" 2>/dev/null && [ "$(date +%s)" -lt "$WAIT_UNTIL" ]; do
  sleep 5
done
if kill -0 "$BUILD_PID" 2>/dev/null; then
  BUILD=running
  REASON="the mmcv CUDA build had not finished after $((WAIT_UNTIL - START)) s (STVIT_MM_GPU_REPORT_BUDGET=$BUDGET, RESERVE=$RESERVE); it goes on in the background (pid $BUILD_PID, log install_mmcv.log) and a later run uses its cached wheel"
elif wait "$BUILD_PID"; then
  # install.sh ends by importing mmcv.ops and the toolboxes; so does the stand-in
  BUILD=done
elif [ "$DRY_RUN" = 1 ]; then
  BUILD=absent
  REASON="dry run: this venv has no working mmcv and toolboxes ($(tail -n 1 "$OUT/install_mmcv.log" | cut -c1-200))"
else
  BUILD=failed
  REASON="the mmcv install failed: $(tail -n 1 "$OUT/install_mmcv.log" | cut -c1-200) (log install_mmcv.log)"
  FAILED+=("mmcv install")
fi
trap - INT TERM
log "mmcv build: $BUILD"

# ------------------------------------------------------------- 5. with mmcv
if [ "$BUILD" = done ]; then
  log "5. mmcv is ready: the other backbones, the targets, torch.compile, the mmcv tests"
  # the rest of the time minus ~100 s for the mmcv tests and the rendering
  LIMIT=$(clamp $(($(left) - 100)) 30 100000)
  MODEL_ARGS=(--targets-only)
  [ ${#OTHER_MODELS[@]} -gt 0 ] && MODEL_ARGS=(--models "${OTHER_MODELS[@]}")
  bench "$LIMIT" --merge "${MODEL_ARGS[@]}" ${COMPILE_ARGS[@]+"${COMPILE_ARGS[@]}"} --time-budget $((LIMIT - 10)) \
    --note "Swin/ConvNeXt rows, targets$([ "$COMPILE" = 1 ] && echo ', torch.compile'), after the mmcv build"
  run_pytest phase2 "cuda and mmcv" "$(clamp $(($(left) - 15)) 30 150)"
else
  log "5. $REASON"
  bench "$(clamp $(($(left) - 15)) 30 100000)" --merge --targets-only ${COMPILE_ARGS[@]+"${COMPILE_ARGS[@]}"} \
    --skip ${OTHER_MODELS[@]+"${OTHER_MODELS[@]}"} "CUDA tests marked mmcv" --skip-reason "$REASON" \
    --time-budget $(($(left) - 25)) --note "what needs no mmcv after the wait$([ "$COMPILE" = 1 ] && echo ': torch.compile of STViT-S')"
fi

# ---------------------------------------------------------------- 6. report
"$PY" tools/analysis_tools/benchmark.py --redraw "$OUT/benchmark_cuda.json" --out "$OUT" \
  --tests "phase 1: cuda and not mmcv=$OUT/pytest_cuda_phase1.xml" \
          "phase 2: cuda and mmcv=$OUT/pytest_cuda_phase2.xml" >> "$OUT/benchmark.log" 2>&1 \
  || FAILED+=("rendering the report")
log "report: $OUT/benchmark_cuda.md (.json, .png); tests: pytest_cuda_phase{1,2}.xml; logs: benchmark.log, install_*.log"

# ------------------------------------------------- 7. TensorRT (optional)
# Opt-in and never fatal: whatever goes wrong is written into tensorrt.md.
if [ -n "${STVIT_MM_GPU_REPORT_ONNX:-}" ]; then
  log "7. TensorRT readiness and engines of: $STVIT_MM_GPU_REPORT_ONNX (tensorrt.md)"
  # a dry run (no GPU) checks readiness only
  rm -f "$OUT/tensorrt.md"
  timeout --kill-after=10 "$(clamp "$(left)" 300 1200)" "$PY" -c 'import sys
from stvit_mm.deploy.tensorrt import write_tensorrt_report
dry_run, plugins, md = sys.argv[1:4]
write_tensorrt_report(md, sys.argv[4:], build=dry_run == "0",
                      plugin_library=plugins or None)' \
    "$DRY_RUN" "${STVIT_MM_GPU_REPORT_TRT_PLUGINS:-}" "$OUT/tensorrt.md" $STVIT_MM_GPU_REPORT_ONNX \
    > "$OUT/tensorrt.log" 2>&1 \
    || log "step 7 stopped early (see tensorrt.log); tensorrt.md has what it got to"
  [ -f "$OUT/tensorrt.md" ] \
    || echo "step 7 wrote nothing (see tensorrt.log): $(tail -n 1 "$OUT/tensorrt.log")" > "$OUT/tensorrt.md"
fi
if [ "$BUILD" = running ]; then
  log "the mmcv build goes on in the background (pid $BUILD_PID); run this script again when install_mmcv.log ends with '[install] ok'"
fi
if [ ${#FAILED[@]} -gt 0 ]; then
  log "failed: ${FAILED[*]}"
  exit 1
fi
log "done"
