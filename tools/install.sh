#!/usr/bin/env bash
# One-command install of the whole stack into a virtual environment (default: ./.venv).
#
#   bash tools/install.sh                   # torch 2.14.1 + everything from the registry
#   bash tools/install.sh --keep-torch      # use the torch of $PYTHON (clusters, NGC images)
#   bash tools/install.sh --download DIR    # write every wheel + the mmcv sdist into DIR
#   bash tools/install.sh --offline DIR     # install from DIR alone (no network)
#   bash tools/install.sh --no-mmcv         # everything but the mmcv build (see gpu_report.sh)
#   bash tools/install.sh --deploy          # everything + mmdeploy, onnx, onnxruntime (requirements/deploy.txt)
#
# Idempotent: on a set-up machine every step is a quick "already satisfied" check.
# mmcv 2.1.0 has no binary wheel, so its sdist is built once (about 12 minutes on
# 2 cores for the CPU ops) and the wheel is cached under ~/.cache/stvit_mm, keyed by
# torch version, CPU or CUDA version and GPU architectures: pip's own cache would
# hand a CPU-only build to a later GPU environment (or one built against another
# torch) without noticing.
#
# CUDA ops are built when a GPU is visible, or with STVIT_MM_CUDA=1 on a machine
# without one (a build host); STVIT_MM_CUDA=0 forces the CPU ops. They are
# compiled with an nvcc of exactly torch's CUDA version (torch.version.cuda):
# the system one when it matches, otherwise nvidia-cuda-nvcc and its companions
# from the registry, pinned to that version, inside the venv. See docs/install.md.
#
# Environment knobs: STVIT_MM_VENV (venv path), PYTHON (interpreter creating it;
# with --keep-torch, the one whose torch is used), STVIT_MM_CACHE (wheel cache
# root), STVIT_MM_CUDA (1/0), STVIT_MM_CUDA_ARCH (e.g. "8.0;9.0"; default: the
# visible GPUs'), STVIT_MM_NVCC (auto | registry | /path/to/nvcc), MAX_JOBS,
# STVIT_MM_TARGET_PYTHON (with --download: wheels for another Python, e.g. 3.12).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${STVIT_MM_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
CACHE_ROOT="${STVIT_MM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stvit_mm}"

# Pins: the newest torch pair that runs everywhere here and the frozen OpenMMLab
# releases; mmcv 2.1.0 is the only version mmdet 3.3.0, mmseg 1.2.2 and
# mmpretrain 1.2.0 all accept (docs/install.md).
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
TORCH_PIN_CUDA=13.0   # torch 2.14.1 from the registry is built with CUDA 13.0
MIN_TORCH=2.4
MMCV_VERSION=2.1.0
MM_PINS=(mmengine==0.10.7 mmdet==3.3.0 mmsegmentation==1.2.2 mmpretrain==1.2.0 openmim==0.3.9)
# mmseg imports its text tokenizer (ftfy, regex) on import, without declaring them.
MM_EXTRA=(ftfy regex)
# mmcv's runtime dependencies (its wheel is installed without them, not to touch torch).
MMCV_DEPS=(addict packaging Pillow pyyaml yapf opencv-python)
# timm (the [timm] extra, tested by the suite) is installed --no-deps with its
# other dependencies listed, as mmcv is: its requirement on torch must not replace
# the torch, and under --keep-torch a constraint with a local version
# (torch==2.14.1+cu130) matches no registry wheel's metadata (2.14.1).
TIMM_PIN=timm==1.0.31
TIMM_DEPS=(pyyaml huggingface_hub safetensors)
# mmcv's setup.py imports pkg_resources, gone from setuptools >= 81.
BUILD_PINS=("setuptools<81" wheel ninja)

usage() { sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { printf '[install] error: %s\n' "$*" >&2; exit 1; }
log() { printf '\n[install] %s\n' "$*"; }

KEEP_TORCH=0 NO_MMCV=0 DEPLOY=0 DOWNLOAD_DIR="" OFFLINE_DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep-torch) KEEP_TORCH=1 ;;
    --no-mmcv) NO_MMCV=1 ;;
    --deploy) DEPLOY=1 ;;
    --download) [ $# -ge 2 ] || die "--download needs a folder"; DOWNLOAD_DIR="$2"; shift ;;
    --offline) [ $# -ge 2 ] || die "--offline needs a folder"; OFFLINE_DIR="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (options: --keep-torch, --download DIR, --offline DIR, --no-mmcv, --deploy)" ;;
  esac
  shift
done
[ -z "$DOWNLOAD_DIR" ] || [ -z "$OFFLINE_DIR" ] || die "--download and --offline exclude each other"
if [ -n "$OFFLINE_DIR" ]; then
  [ -d "$OFFLINE_DIR" ] || die "offline folder '$OFFLINE_DIR' does not exist (make it with --download on a machine with the registry)"
  OFFLINE_DIR="$(cd "$OFFLINE_DIR" && pwd)"
fi

# What an interpreter's torch is, in one import (each costs seconds):
# "<version> <full version> <CUDA version|none> <torchvision version|none>
#  <GPU visible 0|1> <visible GPUs' architectures, ';'-joined|->".
torch_facts() {
  "$1" - 2>/dev/null <<'PY'
import torch
try:
    import torchvision
    vision = torchvision.__version__
except ImportError:
    vision = 'none'
gpu = torch.cuda.is_available()
caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())} if gpu else [])
print(torch.__version__.split('+')[0], torch.__version__, torch.version.cuda or 'none', vision, int(gpu),
      ';'.join('%d.%d' % c for c in caps) or '-')
PY
}
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

# ---------------------------------------------------------------- --download
if [ -n "$DOWNLOAD_DIR" ]; then
  mkdir -p "$DOWNLOAD_DIR"
  DL=("$PYTHON" -m pip --disable-pip-version-check download -q -d "$DOWNLOAD_DIR")
  TARGET=()
  if [ -n "${STVIT_MM_TARGET_PYTHON:-}" ]; then
    TARGET=(--python-version "$STVIT_MM_TARGET_PYTHON" --only-binary=:all:)
  fi
  if [ "$KEEP_TORCH" = 1 ]; then
    FACTS="$(torch_facts "$PYTHON")" || die "--keep-torch: '$PYTHON' cannot import torch"
    read -r TV _ CUDA_V _ <<<"$FACTS"
    TORCH_DL=()   # the target brings its own (nothing below depends on torch)
  else
    TV="${TORCH_PINS[0]#torch==}" CUDA_V="$TORCH_PIN_CUDA"
    TORCH_DL=("${TORCH_PINS[@]}")
  fi
  log "downloading wheels for torch $TV (CUDA $CUDA_V) into $DOWNLOAD_DIR"
  "${DL[@]}" "${TARGET[@]}" "${TORCH_DL[@]}" "${MM_PINS[@]}" "${MM_EXTRA[@]}" "${MMCV_DEPS[@]}" \
    "${TIMM_DEPS[@]}" "${BUILD_PINS[@]}" -r "$ROOT/requirements/tests.txt"
  "${DL[@]}" "${TARGET[@]}" --no-deps "$TIMM_PIN"
  [ "$DEPLOY" = 0 ] || "${DL[@]}" "${TARGET[@]}" -r "$ROOT/requirements/deploy.txt"
  # The mmcv source (pip runs its setup.py for metadata, in a build
  # environment that needs setuptools < 81 too), and the CUDA compiler of
  # torch's CUDA version for a GPU build.
  BUILD_CONSTRAINT="$(mktemp)"; echo "setuptools<81" >"$BUILD_CONSTRAINT"
  PIP_CONSTRAINT="$BUILD_CONSTRAINT" "${DL[@]}" --no-deps --no-binary :all: "mmcv==$MMCV_VERSION"
  rm -f "$BUILD_CONSTRAINT"
  if [ "$CUDA_V" != none ] && [ "${STVIT_MM_CUDA:-1}" = 1 ]; then
    "${DL[@]}" --no-deps "${TARGET[@]}" "nvidia-cuda-nvcc==$CUDA_V.*" "nvidia-nvvm==$CUDA_V.*" \
      "nvidia-cuda-crt==$CUDA_V.*" "nvidia-cuda-runtime==$CUDA_V.*" "nvidia-cuda-cccl==$CUDA_V.*"
  fi
  ls "$DOWNLOAD_DIR"/mmcv-"$MMCV_VERSION".tar.gz >/dev/null || die "mmcv sdist missing in $DOWNLOAD_DIR"
  printf 'torch %s cuda %s python %s written %s\n' "$TV" "$CUDA_V" \
    "${STVIT_MM_TARGET_PYTHON:-$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')}" \
    "$(date -u +%FT%TZ)" >"$DOWNLOAD_DIR/stvit_mm-download.txt"
  log "done: $(ls "$DOWNLOAD_DIR" | wc -l) files, $(du -sh "$DOWNLOAD_DIR" | cut -f1); install with: bash tools/install.sh $([ "$KEEP_TORCH" = 1 ] && echo '--keep-torch ')--offline $DOWNLOAD_DIR"
  exit 0
fi

# ------------------------------------------------------------ the environment
if [ "$KEEP_TORCH" = 1 ]; then
  FACTS="$(torch_facts "$PYTHON")" \
    || die "--keep-torch: '$PYTHON' cannot import torch; install torch there first, or drop --keep-torch"
  read -r BASE_TV _ <<<"$FACTS"
  version_ge "$BASE_TV" "$MIN_TORCH" || die "--keep-torch: torch $BASE_TV found in '$PYTHON'; this stack needs torch >= $MIN_TORCH"
fi
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
  if [ "$KEEP_TORCH" = 1 ]; then
    # The environment's torch (and whatever else it brings) stays visible,
    # behind the venv's own packages. A .pth file rather than
    # --system-site-packages: that would show the base interpreter's
    # packages, not those of a venv or conda env that $PYTHON belongs to.
    "$PYTHON" -c '
import os, sys, sysconfig
std = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
std |= {os.path.join(s, "lib-dynload") for s in std}
print("\n".join(p for p in sys.path if p and os.path.isdir(p) and p not in std))' \
      >"$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/stvit_mm_base_env.pth"
  fi
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
SOURCE=()   # where pip looks: the registry, or the offline folder alone
[ -z "$OFFLINE_DIR" ] || SOURCE=(--no-index --find-links "$OFFLINE_DIR")

if [ "$KEEP_TORCH" = 1 ]; then
  FACTS="$(torch_facts "$PY")" \
    || die "--keep-torch: $VENV does not see the torch of '$PYTHON' (made without --keep-torch? remove it and rerun)"
  read -r TV TORCH_FULL CUDA_V VISION GPU_VISIBLE GPU_ARCHS <<<"$FACTS"
  [ "$TV" = "$BASE_TV" ] || die "--keep-torch: $VENV has torch $TV, '$PYTHON' has $BASE_TV; remove $VENV and rerun"
  # Nothing installed later may replace the environment's torch (a pip
  # constraint on the command line replaces pip.conf's, so it is repeated here).
  CONSTRAINT="$VENV/stvit_mm-constraints.txt"
  echo "torch==$TORCH_FULL" >"$CONSTRAINT"
  if [ "$VISION" != none ]; then
    echo "torchvision==$VISION" >>"$CONSTRAINT"
  else
    # torchvision 0.(minor + 15) pairs with torch 2.minor since torch 2.0.
    TVV="0.$(( $(echo "$TV" | cut -d. -f2) + 15 )).*"
    log "torch $TV has no torchvision; installing torchvision==$TVV"
    "${PIP[@]}" install -q "${SOURCE[@]}" -c "$CONSTRAINT" "torchvision==$TVV" \
      || die "no torchvision $TVV for torch $TV; install the torchvision built for your torch, then rerun"
  fi
  PIN=(-c "$CONSTRAINT")
  log "keeping torch $TV (CUDA ${CUDA_V}) from $PYTHON"
  "${PIP[@]}" install -q "${SOURCE[@]}" "${PIN[@]}" "${BUILD_PINS[@]}"
else
  PIN=()
  log "torch, torchvision and build tools"
  "${PIP[@]}" install -q "${SOURCE[@]}" "${TORCH_PINS[@]}" "${BUILD_PINS[@]}"
  read -r TV TORCH_FULL CUDA_V VISION GPU_VISIBLE GPU_ARCHS <<<"$(torch_facts "$PY")"
fi

log "mmengine"
"${PIP[@]}" install -q "${SOURCE[@]}" "${PIN[@]}" mmengine==0.10.7

# ---------------------------------------------------------------------- mmcv
# Which ops to build: CUDA when a GPU is visible or STVIT_MM_CUDA=1.
WANT_CUDA="${STVIT_MM_CUDA:-$GPU_VISIBLE}"
[ "$WANT_CUDA" = 0 ] || [ "$WANT_CUDA" = 1 ] || die "STVIT_MM_CUDA must be 0 or 1, got '$WANT_CUDA'"

mmcv_ok() {
  WANT_CUDA="$WANT_CUDA" "$PY" - <<'PY' 2>/dev/null
import os, mmcv, mmcv.ops, torch
assert mmcv.__version__ == "2.1.0"
from mmcv.ops import get_compiling_cuda_version
# A CPU-only mmcv where CUDA ops were asked for (or a GPU is visible) would
# silently lack them; a CUDA build must match torch's CUDA.
if os.environ["WANT_CUDA"] == "1":
    assert get_compiling_cuda_version() == torch.version.cuda
PY
}

# Sets CUDA_HOME/PATH to an nvcc of torch's CUDA version: the system one if it
# matches, else the registry's nvidia-cuda-nvcc (+ nvvm, crt, cccl, runtime at
# that version) in the venv, whose include/lib trees are gathered into one
# CUDA_HOME, since torch's extension builder expects one toolkit folder.
nvcc_release() { "$1" --version 2>/dev/null | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p'; }
setup_nvcc() {
  local want="$1" mode="${STVIT_MM_NVCC:-auto}" found=() cand home
  if [ "$mode" != auto ] && [ "$mode" != registry ]; then
    [ -x "$mode" ] || die "STVIT_MM_NVCC=$mode: no such executable"
    [ "$(nvcc_release "$mode")" = "$want" ] || die "STVIT_MM_NVCC=$mode is CUDA $(nvcc_release "$mode"); torch was built with CUDA $want"
    export CUDA_HOME="$(cd "$(dirname "$mode")/.." && pwd)"
    export PATH="$CUDA_HOME/bin:$PATH"
    return
  fi
  if [ "$mode" = auto ]; then
    for home in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda \
        "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc || echo /nonexistent)")")")"; do
      [ -n "$home" ] && [ -x "$home/bin/nvcc" ] || continue
      local rel; rel="$(nvcc_release "$home/bin/nvcc")"
      found+=("$home/bin/nvcc (CUDA ${rel:-?})")
      if [ "$rel" = "$want" ] && [ -f "$home/include/cuda_runtime.h" ]; then
        log "using the system nvcc $home/bin/nvcc (CUDA $rel = torch's)"
        export CUDA_HOME="$home" PATH="$home/bin:$PATH"
        return
      fi
    done
  fi
  local system="${found[*]:-no nvcc found}"
  [ "$mode" = auto ] || system="not used, STVIT_MM_NVCC=$mode"
  log "nvcc for CUDA $want from ${OFFLINE_DIR:-the registry} (system: $system)"
  # Every nvidia-* build package at torch's CUDA version: unpinned, nvcc's
  # dependencies pull a newer nvvm whose PTX the older ptxas rejects.
  if ! "${PIP[@]}" install -q "${SOURCE[@]}" "${PIN[@]}" "nvidia-cuda-nvcc==$want.*" "nvidia-nvvm==$want.*" \
      "nvidia-cuda-crt==$want.*" "nvidia-cuda-runtime==$want.*" "nvidia-cuda-cccl==$want.*"; then
    die "torch $TV was built with CUDA $want, and no nvcc of that version was found (system: $system) or could be installed from ${OFFLINE_DIR:-the registry}. Install the CUDA $want toolkit and set CUDA_HOME, or point STVIT_MM_NVCC at its nvcc, or make the offline folder with --download on a machine with the registry."
  fi
  export CUDA_HOME="$VENV/cuda-$want"
  "$PY" - "$CUDA_HOME" <<'PY'
import glob, os, sys, nvidia
home = sys.argv[1]
# CUDA 13 wheels share nvidia/cu13/; CUDA 12 wheels have one folder each.
roots = [r for p in nvidia.__path__ for r in sorted(glob.glob(os.path.join(p, '*')))
         if os.path.isdir(r)]
for sub in ('bin', 'include', 'lib', 'nvvm'):
    os.makedirs(os.path.join(home, sub), exist_ok=True)
    for root in roots:
        src = os.path.join(root, sub)
        for name in (os.listdir(src) if os.path.isdir(src) else []):
            dst = os.path.join(home, sub, name)
            if not os.path.lexists(dst):
                os.symlink(os.path.join(src, name), dst)
lib = os.path.join(home, 'lib')
# The linker's -lcudart needs the unversioned name the wheels do not ship.
for so in glob.glob(os.path.join(lib, 'libcudart.so.*')):
    if not os.path.lexists(os.path.join(lib, 'libcudart.so')):
        os.symlink(os.path.basename(so), os.path.join(lib, 'libcudart.so'))
assert os.path.exists(os.path.join(home, 'bin', 'nvcc')), 'nvcc missing'
assert os.path.exists(os.path.join(home, 'include', 'cuda_runtime.h')), 'cuda_runtime.h missing'
PY
  export PATH="$CUDA_HOME/bin:$PATH"
  [ "$(nvcc_release "$CUDA_HOME/bin/nvcc")" = "$want" ] || die "registry nvcc is CUDA $(nvcc_release "$CUDA_HOME/bin/nvcc"), torch wants $want"
}

if [ "$NO_MMCV" = 1 ]; then
  log "skipping mmcv (--no-mmcv)"
elif mmcv_ok; then
  log "mmcv $MMCV_VERSION with ops already installed"
else
  TORCH_TAG="${TORCH_FULL//+/_}"
  if [ "$WANT_CUDA" = 1 ]; then
    [ "$CUDA_V" != none ] || die "CUDA ops asked for, but torch $TV is a CPU build (torch.version.cuda is None); install a CUDA build of torch"
    ARCHS="${STVIT_MM_CUDA_ARCH:-${GPU_ARCHS#-}}"
    [ -n "$ARCHS" ] || die "STVIT_MM_CUDA=1 with no GPU visible: name the architectures, e.g. STVIT_MM_CUDA_ARCH='8.0;9.0'"
    export TORCH_CUDA_ARCH_LIST="$ARCHS" FORCE_CUDA=1
    FLAVOR="cuda$CUDA_V-sm$(echo "$ARCHS" | tr -d '.' | tr ';' '_')"
  else
    FLAVOR=cpu
    # mmcv builds CUDA ops whenever torch sees a GPU: hide it for a CPU build.
    export FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=""
  fi
  WHEEL_DIR="$CACHE_ROOT/wheels/mmcv-$MMCV_VERSION-torch$TORCH_TAG-$FLAVOR"
  mkdir -p "$WHEEL_DIR"
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    [ "$WANT_CUDA" = 0 ] || setup_nvcc "$CUDA_V"
    log "building mmcv $MMCV_VERSION with $FLAVOR ops for torch $TORCH_TAG (2 cores: ~12 min CPU-only, ~1 h with CUDA)"
    BUILD_TMP="$(mktemp -d)"
    if [ -n "$OFFLINE_DIR" ]; then
      cp "$OFFLINE_DIR/mmcv-$MMCV_VERSION.tar.gz" "$BUILD_TMP"/ || die "mmcv-$MMCV_VERSION.tar.gz is not in $OFFLINE_DIR"
    else
      "${PIP[@]}" download -q --no-deps --no-binary :all: --no-cache-dir -d "$BUILD_TMP" "mmcv==$MMCV_VERSION"
    fi
    tar -xzf "$BUILD_TMP/mmcv-$MMCV_VERSION.tar.gz" -C "$BUILD_TMP"
    # mmcv 2.1.0 hard-codes -std=c++17 (CPU and nvcc flags); torch >= 2.13's
    # headers need C++20, older ones build as mmcv ships.
    if version_ge "$TV" 2.13; then
      sed -i "s/'-std=c++17'/'-std=c++20'/g" "$BUILD_TMP/mmcv-$MMCV_VERSION/setup.py"
    fi
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${PIP[@]}" wheel --no-build-isolation --no-deps \
      --no-cache-dir -w "$BUILD_TMP" "$BUILD_TMP/mmcv-$MMCV_VERSION"
    mv "$BUILD_TMP"/mmcv-*.whl "$WHEEL_DIR"/   # move only a finished wheel into the cache
    rm -rf "$BUILD_TMP"
  fi
  log "installing cached mmcv wheel from $WHEEL_DIR"
  "${PIP[@]}" install -q --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-*.whl
  "${PIP[@]}" install -q "${SOURCE[@]}" "${PIN[@]}" "${MMCV_DEPS[@]}"
  mmcv_ok || die "mmcv $MMCV_VERSION with $FLAVOR ops does not import (see: $PY -c 'import mmcv.ops')"
fi

log "mmdet, mmsegmentation, mmpretrain, openmim"
if [ "$NO_MMCV" = 1 ]; then
  "${PIP[@]}" install -q "${SOURCE[@]}" "${PIN[@]}" "${MM_PINS[@]}" "${MM_EXTRA[@]}" "${BUILD_PINS[@]}"
elif [ "$KEEP_TORCH" = 1 ]; then
  "${PIP[@]}" install -q "${SOURCE[@]}" "${PIN[@]}" "${MM_PINS[@]}" "${MM_EXTRA[@]}" "mmcv==$MMCV_VERSION" "${BUILD_PINS[@]}"
else
  "${PIP[@]}" install -q "${SOURCE[@]}" "${MM_PINS[@]}" "${MM_EXTRA[@]}" "mmcv==$MMCV_VERSION" "${TORCH_PINS[@]}" "${BUILD_PINS[@]}"
fi

log "stvit_mm (editable), timm and test tools"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"
"${PIP[@]}" install -q "${SOURCE[@]}" "${PIN[@]}" -r "$ROOT/requirements/tests.txt" "${TIMM_DEPS[@]}"
"${PIP[@]}" install -q "${SOURCE[@]}" --no-deps "$TIMM_PIN"

if [ "$NO_MMCV" = 1 ]; then
  "$PY" -c 'import torch, mmengine, stvit_mm; print(f"[install] ok without mmcv: torch {torch.__version__}, mmengine {mmengine.__version__}, stvit_mm {stvit_mm.__version__}")'
else
"$PY" - <<'PY'
import torch, torchvision, mmcv, mmengine, mmdet, mmpretrain, stvit_mm
import mmseg.registry  # noqa: F401  (imports mmseg's optional tokenizer deps)
import mmseg
import mmcv.ops  # noqa: F401  (Mask R-CNN needs RoIAlign and NMS)
from mmcv.ops import get_compiling_cuda_version
print(f"[install] ok: torch {torch.__version__} (CUDA {torch.version.cuda}), torchvision {torchvision.__version__}, "
      f"mmcv {mmcv.__version__} (ops: CUDA {get_compiling_cuda_version()}), mmengine {mmengine.__version__}, "
      f"mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, mmpretrain {mmpretrain.__version__}, "
      f"stvit_mm {stvit_mm.__version__}")
PY
fi

# ---------------------------------------------------------------- --deploy
# mmdeploy and ONNX Runtime go into the same venv: the pins of
# requirements/deploy.txt (protobuf 3.20.2 for mmdeploy, and the newest onnx
# and onnxruntime that accept it) leave the rest of the stack and the suite
# as they are. mmdeploy needs no torch of its own, so it keeps the one here.
if [ "$DEPLOY" = 1 ]; then
  log "mmdeploy, onnx, onnxruntime (requirements/deploy.txt)"
  "${PIP[@]}" install -q "${SOURCE[@]}" "${PIN[@]}" -r "$ROOT/requirements/deploy.txt"
  # the deployment set must agree with everything installed before it
  CHECK="$("${PIP[@]}" check 2>&1)" || die "pip check after the deployment install: $CHECK"
  "$PY" -c 'import mmdeploy, onnx, onnxruntime, google.protobuf as pb
from stvit_mm.deploy import require_mmdeploy
require_mmdeploy()
print(f"[install] deploy ok: mmdeploy {mmdeploy.__version__}, onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}, protobuf {pb.__version__}; pip check: no broken requirements")' \
    || die "the deployment packages do not import (see: $PY -c 'import mmdeploy, onnxruntime')"
fi
echo "[install] activate with: source $VENV/bin/activate"
