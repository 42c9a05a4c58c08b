#!/usr/bin/env bash
# Run the whole test suite in the environment made by tools/install.sh.
# pytest exits with 5 when it collects no test: for this project that means
# the suite went missing, so it is reported as a failure with a clear message.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${STVIT_MM_VENV:-$ROOT/.venv}"
cd "$ROOT"
"$VENV/bin/python" -m pytest tests "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "[tests] pytest collected no tests (exit code 5): the suite is missing" >&2
  exit 1
fi
exit "$status"
