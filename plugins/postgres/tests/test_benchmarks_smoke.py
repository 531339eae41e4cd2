"""``benchmarks/run.py --store postgresql://...`` runs every scenario on a PostgreSQL server.

Correctness only (right sums, each step run once, no settled step run again after SIGKILL);
the figures are in benchmarks/README.md, never asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg

RUN = Path(__file__).resolve().parents[3] / "benchmarks" / "run.py"
SCENARIOS = {"fanout_sleep", "fanout_noop", "sequential_steps", "many_workflows", "replay_cached", "recovery",
             "wide_fanout"}


def test_quick_run_reports_every_scenario_ok_on_postgresql(postgres_url: str) -> None:
    proc = subprocess.run([sys.executable, str(RUN), "--quick", "--json-only", "--store", postgres_url],
                          capture_output=True, text=True, timeout=300)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    failed = [(r["scenario"], r["size"], r["note"]) for r in rows if r["ok"] is not True]
    assert not failed, f"{failed}\n{proc.stderr[-2000:]}"
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {r["store"] for r in rows} == {"postgresql"}
    assert {r["scenario"] for r in rows} == SCENARIOS
    recovery = next(r for r in rows if r["scenario"] == "recovery")
    assert recovery["extra"]["reexecuted_settled_steps"] == 0
    with psycopg.connect(postgres_url, autocommit=True) as con:  # every case dropped its schema
        left = con.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'vow_bench%'").fetchall()
    assert left == []
