#!/usr/bin/env bash
# Distributed evaluation of a checkpoint of any config of this repo:
#   bash tools/dist_test.sh CONFIG CHECKPOINT NPROC [tools/test.py options]
# NPROC processes on this node (one per GPU; on a machine without CUDA, CPU
# processes that talk over gloo). The toolbox (mmdet / mmseg / mmpretrain)
# is the config's default_scope, printed below. Multi-node: set NNODES,
# NODE_RANK, MASTER_ADDR, PORT. PYTHON overrides the interpreter (default:
# the repo's .venv if present).
set -euo pipefail
if [ "$#" -lt 3 ]; then
  echo "usage: $0 CONFIG CHECKPOINT NPROC [test.py options]" >&2
  exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python; fi
fi
[ -f "$CONFIG" ] || { echo "config not found: $CONFIG" >&2; exit 2; }
[ -f "$CHECKPOINT" ] || { echo "checkpoint not found: $CHECKPOINT" >&2; exit 2; }
case "$NPROC" in (''|*[!0-9]*|0) echo "NPROC must be a positive integer, got '$NPROC'" >&2; exit 2;; esac

TOOLBOX="$(PYTHONPATH="$ROOT:${PYTHONPATH:-}" "$PYTHON" -c '
import sys
from mmengine.config import Config
print(Config.fromfile(sys.argv[1]).get("default_scope"))' "$CONFIG" 2>/dev/null || true)"
echo "[dist_test] $CONFIG: toolbox ${TOOLBOX:-unknown}, $NPROC process(es)"

PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec "$PYTHON" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
  --nproc_per_node="$NPROC" \
  "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
