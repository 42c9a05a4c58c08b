#!/usr/bin/env bash
# One-command install of the whole stack into a virtual environment (default: ./.venv).
#
# Idempotent: on a set-up machine every step is a quick "already satisfied" check.
# mmcv 2.1.0 has no binary wheel, so its sdist is built once (about 12 minutes on
# 2 cores) and the wheel is cached under ~/.cache/stvit_mm, keyed by the torch
# version and by CPU/CUDA, because pip's own cache would hand a CPU-only build to a
# later GPU environment (or one built against another torch) without noticing.
#
# Environment knobs: STVIT_MM_VENV (venv path), PYTHON (interpreter creating it),
# STVIT_MM_CACHE (wheel cache root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${STVIT_MM_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
CACHE_ROOT="${STVIT_MM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stvit_mm}"

# Pins: the newest torch pair that runs everywhere here and the frozen OpenMMLab
# releases; mmcv 2.1.0 is the only version mmdet 3.3.0, mmseg 1.2.2 and
# mmpretrain 1.2.0 all accept (see ../shared/environment.md).
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
MMCV_VERSION=2.1.0
MM_PINS=(mmengine==0.10.7 mmdet==3.3.0 mmsegmentation==1.2.2 mmpretrain==1.2.0 openmim==0.3.9)
# mmseg imports its text tokenizer (ftfy, regex) on import, without declaring them.
MM_EXTRA=(ftfy regex)
# mmcv's setup.py imports pkg_resources, gone from setuptools >= 81.
BUILD_PINS=("setuptools<81" wheel ninja)

log() { printf '\n[install] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

log "torch, torchvision and build tools"
"${PIP[@]}" install -q "${TORCH_PINS[@]}" "${BUILD_PINS[@]}"

log "mmengine"
"${PIP[@]}" install -q mmengine==0.10.7

mmcv_ok() {
  "$PY" - <<'PY' 2>/dev/null
import mmcv, mmcv.ops, torch
assert mmcv.__version__ == "2.1.0"
# A CPU-only mmcv in an environment with a GPU would silently lack the CUDA ops.
if torch.cuda.is_available():
    from mmcv.utils import get_compiling_cuda_version
    assert get_compiling_cuda_version() != "not available"
PY
}

if mmcv_ok; then
  log "mmcv $MMCV_VERSION with ops already installed"
else
  TORCH_TAG="$("$PY" -c 'import torch; print(torch.__version__.replace("+", "_"))')"
  if "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    FLAVOR="cuda$("$PY" -c 'import torch; print(torch.version.cuda)')"
    export FORCE_CUDA=1
  else
    FLAVOR=cpu
  fi
  WHEEL_DIR="$CACHE_ROOT/wheels/mmcv-$MMCV_VERSION-torch$TORCH_TAG-$FLAVOR"
  mkdir -p "$WHEEL_DIR"
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    log "building mmcv $MMCV_VERSION with ops for torch $TORCH_TAG ($FLAVOR); this takes about 12 minutes on 2 cores"
    BUILD_TMP="$(mktemp -d)"
    "${PIP[@]}" download -q --no-deps --no-binary :all: --no-cache-dir -d "$BUILD_TMP" "mmcv==$MMCV_VERSION"
    tar -xzf "$BUILD_TMP/mmcv-$MMCV_VERSION.tar.gz" -C "$BUILD_TMP"
    # torch >= 2.13 headers need C++20; mmcv 2.1.0 hard-codes -std=c++17 for
    # torch > 1.12 (the CPU and the nvcc flags). Raise only that flag.
    sed -i "s/'-std=c++17'/'-std=c++20'/g" "$BUILD_TMP/mmcv-$MMCV_VERSION/setup.py"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${PIP[@]}" wheel --no-build-isolation --no-deps \
      --no-cache-dir -w "$BUILD_TMP" "$BUILD_TMP/mmcv-$MMCV_VERSION"
    mv "$BUILD_TMP"/mmcv-*.whl "$WHEEL_DIR"/   # move only a finished wheel into the cache
    rm -rf "$BUILD_TMP"
  fi
  log "installing cached mmcv wheel from $WHEEL_DIR"
  "${PIP[@]}" install -q --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-*.whl
  # mmcv's runtime dependencies (pinned in its metadata) without touching torch.
  "${PIP[@]}" install -q addict packaging Pillow pyyaml yapf opencv-python
  mmcv_ok || { echo "[install] mmcv $MMCV_VERSION with ops does not import" >&2; exit 1; }
fi

log "mmdet, mmsegmentation, mmpretrain, openmim"
"${PIP[@]}" install -q "${MM_PINS[@]}" "${MM_EXTRA[@]}" "mmcv==$MMCV_VERSION" "${TORCH_PINS[@]}" "${BUILD_PINS[@]}"

log "stvit_mm (editable) and test tools"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"
"${PIP[@]}" install -q -r "$ROOT/requirements/tests.txt"

"$PY" - <<'PY'
import torch, torchvision, mmcv, mmengine, mmdet, mmpretrain, stvit_mm
import mmseg.registry  # noqa: F401  (imports mmseg's optional tokenizer deps)
import mmseg
import mmcv.ops  # noqa: F401  (Mask R-CNN needs RoIAlign and NMS)
print(f"[install] ok: torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, "
      f"mmseg {mmseg.__version__}, mmpretrain {mmpretrain.__version__}, stvit_mm {stvit_mm.__version__}")
PY
echo "[install] activate with: source $VENV/bin/activate"
