#!/usr/bin/env bash
# Which GPU architectures mmcv's CUDA ops were compiled for, op by op, read
# from the built library itself (no GPU needed):
#
#   bash tools/check_cuda_build.sh [VENV]      # default ./.venv
#
# Prints the library, the CUDA version mmcv was compiled with, the device-code
# ELF images (cuobjdump --list-elf), and for RoIAlign, NMS, multi-scale
# deformable attention (DINO, Mask2Former) and modulated deformable conv the
# architectures whose machine code holds their kernels. Exits non-zero when a
# listed op has no device code. cuobjdump comes from the registry's
# nvidia-cuda-cuobjdump, installed into a temporary folder (or set CUOBJDUMP).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-${STVIT_MM_VENV:-$ROOT/.venv}}"
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "no virtual environment at $VENV" >&2; exit 1; }

LIB="$("$PY" -c 'import glob, os, mmcv; print(glob.glob(os.path.join(os.path.dirname(mmcv.__file__), "_ext*.so"))[0])')"
CUDA="$("$PY" -c 'from mmcv.ops import get_compiling_cuda_version as v; print(v())')"
echo "library: $LIB"
echo "compiled with CUDA: $CUDA"
[ "$CUDA" != "not available" ] || { echo "mmcv was built without CUDA ops" >&2; exit 1; }

if [ -z "${CUOBJDUMP:-}" ]; then
  TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
  "$PY" -m pip --disable-pip-version-check install -q --no-deps --target "$TMP" nvidia-cuda-cuobjdump
  CUOBJDUMP="$(find "$TMP" -name cuobjdump -type f | head -n1)"
fi

echo "device code images:"
"$CUOBJDUMP" --list-elf "$LIB" | sed 's/^/  /' | sort | uniq -c | awk '{$1=$1; print "  " $0}' | head -n 5
echo "  ... $("$CUOBJDUMP" --list-elf "$LIB" | wc -l) images in all"

# Kernel symbols per architecture: "Function <mangled name>:" lines follow
# the "arch = sm_XX" header of each image in --dump-resource-usage output.
USAGE="$("$CUOBJDUMP" --dump-resource-usage "$LIB")"
status=0
for op in roi_align_forward_cuda_kernel nms_cuda ms_deformable_im2col_gpu_kernel modulated_deformable_im2col_gpu_kernel; do
  archs="$(awk -v op="$op" '/arch = sm_/ {arch=$NF} /Function / && index($0, op) {print arch}' <<<"$USAGE" | sort -u | tr '\n' ' ')"
  printf '  %-42s %s\n' "$op" "${archs:-NONE}"
  [ -n "$archs" ] || status=1
done
exit "$status"
