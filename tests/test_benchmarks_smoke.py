"""The benchmark harness must keep working: a quick run of every scenario on every store.

Correctness only (right sums, each step run exactly once, no settled step run again after a
SIGKILL): timings depend on the machine and are never asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import python

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"
SCENARIOS = {"fanout_sleep", "fanout_noop", "sequential_steps", "many_workflows", "replay_cached", "recovery",
             "wide_fanout"}


def test_quick_run_reports_every_scenario_ok_on_every_store() -> None:
    proc = python(RUN, "--quick", "--json-only")
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    failed = [(r["scenario"], r["size"], r["store"], r["note"]) for r in rows if r["ok"] is not True
              and not r["extra"].get("unsupported")]
    assert not failed, f"{failed}\n{proc.stderr[-2000:]}"
    assert proc.returncode == 0, proc.stderr[-2000:]
    for store in ("memory", "sqlite", "sqlite_full"):
        ran = {r["scenario"] for r in rows if r["store"] == store and r["ok"]}
        expected = SCENARIOS - ({"recovery"} if store == "memory" else set())
        assert ran == expected, (store, sorted(expected - ran))
    recovery = next(r for r in rows if r["scenario"] == "recovery" and r["store"] == "sqlite")
    assert recovery["extra"]["reexecuted_settled_steps"] == 0
    assert recovery["extra"]["steps_settled_before_kill"] == recovery["params"]["kill_after"]
    assert proc.stderr == ""  # --json-only keeps stderr quiet


def test_the_raw_sqlite_comparison_runs_both_sides_and_checks_them() -> None:
    proc = python(RUN.parent / "raw_limit.py", "--steps", "50", "--branches", "50", "--repeat", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert {r["scenario"] for r in rows} == {"steps", "fanout"}
    assert all(r["ok"] and r["vow_us"] > 0 and r["raw_us"] > 0 for r in rows), rows


@pytest.mark.parametrize("case", ["vow-steps", "raw-steps", "vow-fanout", "raw-fanout"])
def test_each_case_of_the_instruction_count_runs_and_checks_its_result(case: str) -> None:
    # what instructions.py runs under callgrind, here without it (valgrind takes minutes)
    proc = python(RUN.parent / "instructions.py", "--child", case, "--n", "20")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == {"case": case, "n": 20, "ok": True}


def test_worker_scaling_runs_on_sqlite_beside_the_in_process_baseline() -> None:
    proc = python(RUN.parent / "workers.py", "sqlite", "--workflows", "100", "--workers", "0,1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [(r["workers"], r["ok"]) for r in rows] == [(0, True), (1, True)], rows
