#!/usr/bin/env bash
# Distributed training of any config of this repo:
#   bash tools/dist_train.sh CONFIG NPROC [tools/train.py options]
# NPROC processes on this node (one per GPU; on a machine without CUDA, CPU
# processes that talk over gloo). The toolbox (mmdet / mmseg / mmpretrain)
# is the config's default_scope, printed below. Multi-node: set NNODES,
# NODE_RANK, MASTER_ADDR, PORT. PYTHON overrides the interpreter (default:
# the repo's .venv if present).
set -euo pipefail
if [ "$#" -lt 2 ]; then
  echo "usage: $0 CONFIG NPROC [train.py options]" >&2
  exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python; fi
fi
[ -f "$CONFIG" ] || { echo "config not found: $CONFIG" >&2; exit 2; }
case "$NPROC" in (''|*[!0-9]*|0) echo "NPROC must be a positive integer, got '$NPROC'" >&2; exit 2;; esac

TOOLBOX="$(PYTHONPATH="$ROOT:${PYTHONPATH:-}" "$PYTHON" -c '
import sys
from mmengine.config import Config
print(Config.fromfile(sys.argv[1]).get("default_scope"))' "$CONFIG" 2>/dev/null || true)"
echo "[dist_train] $CONFIG: toolbox ${TOOLBOX:-unknown}, $NPROC process(es)"

PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec "$PYTHON" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
  --nproc_per_node="$NPROC" \
  "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "$@"
