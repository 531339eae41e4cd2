"""`vow prune`, `vow worker --retention` and `vow show --json` on big values, in real subprocesses."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
from pathlib import Path

from vow.testing import wait_until

ORDER = str(Path(__file__).resolve().parents[2] / "examples" / "order-confirmed.yaml")

FAILING = """\
version: 1
name: failing
id: "fail/{{ input.n }}"
input: {n: 1}
fan_out:
  - channel: sms
    to: "+14155550100"
    body: hello
    options: {latency: 0.01}
    faults: {fail_attempts: [1], error: permanent, message: number blocked}
"""


def roots(sandbox) -> dict[str, int]:
    """Runs in the store with their number of promises, counted at the store."""
    from vow import Vow

    with Vow(sandbox.store) as reader:
        return {r.id: len(reader.store.tree(r.id)) for r in reader.store.search(roots_only=True)}


def test_prune_reports_and_removes_finished_runs_and_leaves_a_pending_one(sandbox) -> None:
    for order in ("A-1", "A-2"):
        assert sandbox.run("run", ORDER, "--set", f"order_id={order}").returncode == 0
    sandbox.write("failing.yaml", FAILING)
    assert sandbox.run("run", "failing.yaml").returncode == 1
    detached = sandbox.run("run", ORDER, "--set", "order_id=A-3", "--detach")  # pending: no worker runs it
    assert detached.returncode == 0, detached.stderr
    before = roots(sandbox)
    assert set(before) == {"notify/A-1", "notify/A-2", "notify/A-3", "fail/1"}

    recent = sandbox.run("prune", "--older-than", "1h")
    assert recent.returncode == 0, recent.stderr
    assert re.fullmatch(r"no finished runs settled before \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(1h ago\) in sqlite://\S+\n",
                        recent.stdout)

    dry = sandbox.run("prune", "--older-than", "0s", "--state", "failed", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert re.fullmatch(rf"would remove 1 run \(1 rejected\) holding {before['fail/1']} promises, settled before "
                        r"\S+ \S+, from sqlite://\S+", lines[0])
    assert re.fullmatch(rf"  fail/1  rejected  +{before['fail/1']} promises  settled \S+ \S+", lines[1])
    assert len(lines) == 2 and roots(sandbox) == before

    done = sandbox.run("prune", "--older-than", "0s", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert sorted(r["id"] for r in report["removed"]) == ["fail/1", "notify/A-1", "notify/A-2"]
    assert report["by_state"] == {"resolved": 2, "rejected": 1} and not report["dry_run"]
    assert report["promises"] == sum(before[r] for r in ("fail/1", "notify/A-1", "notify/A-2"))
    assert report["wal_truncated"] is True and report["bytes_after"] <= report["bytes_before"]
    assert roots(sandbox) == {"notify/A-3": before["notify/A-3"]}
    log = Path(f"{sandbox.store_file}-wal")  # gone once the last connection closed, else empty
    assert not log.exists() or log.stat().st_size == 0


def test_prune_text_report_says_where_the_space_went(sandbox) -> None:
    assert sandbox.run("run", ORDER).returncode == 0
    result = sandbox.run("prune", "--older-than", "0s")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("removed 1 run (1 resolved) holding ")
    assert lines[1].startswith("  notify/A-1001  resolved")
    assert re.fullmatch(r"on disk: [\d.]+ KB -> [\d.]+ KB", lines[2])
    assert len(lines) == 3  # a file vow made gives its free pages back by itself: nothing to advise


def test_prune_of_a_file_made_without_incremental_vacuum_advises_compact_once(sandbox) -> None:
    sandbox.store_file.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(sandbox.store_file)
    con.execute("PRAGMA journal_mode = WAL").fetchall()  # as vow 0.1 made it
    con.close()  # Python 3.13 warns of a connection collected open
    assert sandbox.run("run", ORDER).returncode == 0
    result = sandbox.run("prune", "--older-than", "0s")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # a file made without incremental vacuum keeps the pages; --compact gives them back, once
    assert lines[3].endswith("`vow prune --compact` (with no worker running) gives them back to the disk once, "
                             "and every prune does after that")
    compacted = sandbox.run("prune", "--older-than", "0s", "--compact")
    assert compacted.returncode == 0, compacted.stderr
    assert "(file rewritten with incremental vacuum on: later prunes give space back by themselves)" in compacted.stdout


def test_bad_prune_arguments_are_one_clear_error(sandbox) -> None:
    sandbox.store_file.write_bytes(b"")  # a store is there (without one, that is the error); an empty file
    for args, message in (
        (["--older-than", "30x"], "error: --older-than: '30x' is not a duration; write a number and a unit, "
                                  "like 30d, 12h, 90m, 45s or 2w (or several: 1d12h)"),
        # Ages whose cutoff is no date (OverflowError in the report, after the prune) or a negative year.
        (["--older-than", "99999999999999999999d"],
         "error: --older-than: '99999999999999999999d' is too long; at most 36500d (about 100 years)"),
        (["--older-than", "1000000d"], "error: --older-than: '1000000d' is too long; at most 36500d (about 100 years)"),
        (["--older-than", "30d", "--state", "succeeded,pending"],
         "error: --state: unknown state 'pending' (a pending run is never pruned); allowed: resolved, rejected, "
         "timedout, canceled (or succeeded, failed, cancelled)"),
    ):
        result = sandbox.run("prune", *args)
        assert (result.returncode, result.stderr.strip(), result.stdout) == (2, message, "")
        assert sandbox.store_file.read_bytes() == b""  # refused before the store is opened
    missing = sandbox.run("prune")
    assert missing.returncode == 2 and "Missing option '--older-than'" in missing.stderr


def test_a_worker_with_retention_prunes_while_it_runs(sandbox) -> None:
    assert sandbox.run("run", ORDER, "--set", "order_id=A-1").returncode == 0
    worker = sandbox.popen("worker", "--retention", "0s")
    try:
        wait_until(lambda: "notify/A-1" not in roots(sandbox), 60, "the worker's retention to prune the run",
                   proc=worker)
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "retention: finished runs older than 0s are deleted every hour" in out


BIG = """
import os
from vow import Vow

def big(ctx, n):
    return {"n": n, "data": "x" * 2_000_000, "items": list(range(500))}

def many(ctx):
    handles = []
    for n in range(3):
        handles.append((yield ctx.begin_run(big, n).options(id=ctx.id + "." + str(n))))
    return (yield ctx.all(handles))

with Vow(os.environ["VOW_STORE"]) as vow:
    vow.run("big/1", many)
"""


def test_show_json_cuts_huge_values_unless_full(sandbox) -> None:
    import subprocess
    import sys

    made = subprocess.run([sys.executable, "-c", BIG], cwd=sandbox.cwd, env=sandbox.env, capture_output=True,
                          text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    short = sandbox.run("show", "big/1", "--json")
    assert short.returncode == 0, short.stderr
    assert len(short.stdout) < 60_000
    tree = json.loads(short.stdout)
    assert tree["truncated"] is True
    data = tree["value"][0]["data"]
    assert data.startswith("x" * 1000) and data.endswith("... [1,999,000 more characters; vow show --json --full]")
    assert tree["value"][0]["items"][-1] == "... [400 more items; vow show --json --full]"
    child = tree["children"][0]
    assert child["truncated"] is True and child["value"]["n"] == 0 and len(child["value"]["items"]) == 101

    full = json.loads(sandbox.run("show", "big/1", "--json", "--full").stdout)
    assert "truncated" not in full
    assert [len(v["data"]) for v in full["value"]] == [2_000_000] * 3
    assert full["children"][2]["value"]["items"] == list(range(500))
