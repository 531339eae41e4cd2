#!/usr/bin/env bash
# Run vow and its peers (Resonate, DBOS) through the peers' harness in ONE run and print one table.
# This machine's speed drifts between runs, so only ratios within one run mean anything.
#
#   benchmarks/peers/compare.sh                          # everything (~6 min, mostly the peers)
#   benchmarks/peers/compare.sh --only sequential_steps  # other args go to every adapter (--configs, --repeat N)
#   benchmarks/peers/compare.sh --peers vow,dbos --peers-dir /path/to/bench-peers
#   RESULTS=/tmp/cmp.jsonl benchmarks/peers/compare.sh   # where the JSON lines go
#
# The peers' venvs are built by their setup.sh under $PEER_VENV_ROOT (default /tmp/peer-venvs;
# needs PyPI the first time). vow runs with $VOW_PYTHON (default python3), which must import vow.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PEERS_DIR="${VOW_BENCH_PEERS:-$REPO/../shared/bench-peers}"
WHICH="vow,resonate,dbos"
ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --peers-dir) PEERS_DIR="$2"; shift 2 ;;
    --peers) WHICH="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
PEERS_DIR="$(cd "$PEERS_DIR" 2>/dev/null && pwd)" || { echo "no peers' harness at ${PEERS_DIR}; use --peers-dir" >&2; exit 2; }
[[ -f "$PEERS_DIR/common.py" ]] || { echo "$PEERS_DIR has no common.py; use --peers-dir" >&2; exit 2; }
VENV_ROOT="${PEER_VENV_ROOT:-/tmp/peer-venvs}"
VOW_PYTHON="${VOW_PYTHON:-python3}"
RESULTS="${RESULTS:-${TMPDIR:-/tmp}/vow-compare-$(date +%Y%m%d-%H%M%S).jsonl}"

# Resonate needs Python >= 3.12; a pyenv shim for python3.12 exists even when it is not active.
if [[ -z "${PY312:-}" ]] && ! python3.12 -V >/dev/null 2>&1; then
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
    [[ -x "$candidate" ]] && export PY312="$candidate" && break
  done
fi

if [[ ",$WHICH," == *,resonate,* || ",$WHICH," == *,dbos,* ]]; then
  "$PEERS_DIR/setup.sh" >&2 || { echo "the peers' setup.sh failed" >&2; exit 1; }
fi
"$VOW_PYTHON" -c "import vow" 2>/dev/null || { echo "$VOW_PYTHON cannot import vow (pip install -e $REPO, or set VOW_PYTHON)" >&2; exit 1; }

echo "== machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(uname -srm)," \
     "/tmp on $(df -T /tmp | awk 'NR==2{print $2}'), sqlite $("$VOW_PYTHON" -c 'import sqlite3;print(sqlite3.sqlite_version)')," \
     "$(date -Is)" >&2
: > "$RESULTS"
t0=$(date +%s)
run() {  # run NAME PYTHON SCRIPT [SCRIPT ARGS...]
  local name="$1" py="$2" script="$3"
  shift 3
  [[ ",$WHICH," == *",$name,"* ]] || return 0
  echo "== $name: $script ($("$py" -V 2>&1))" >&2
  local ts=$(date +%s)
  "$py" "$script" "$@" ${ARGS[@]+"${ARGS[@]}"} >>"$RESULTS" || echo "!! $script exited with $?" >&2
  echo "== $name done in $(( $(date +%s) - ts ))s" >&2
}
run vow "$VOW_PYTHON" "$HERE/vow_bench.py" --peers-dir "$PEERS_DIR"
run resonate "$VENV_ROOT/resonate067/bin/python" "$PEERS_DIR/resonate_bench.py"
run dbos "$VENV_ROOT/dbos/bin/python" "$PEERS_DIR/dbos_bench.py"
echo "== total $(( $(date +%s) - t0 ))s; results in $RESULTS" >&2
echo
python3 "$PEERS_DIR/report.py" "$RESULTS"
