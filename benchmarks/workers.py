"""Worker scaling on one store: workflows per second with 1, 2 and 4 ``vow worker`` processes,
beside one process running the same workflows itself.

    python benchmarks/workers.py sqlite [--workflows 4000] [--fanout 4] [--workers 0,1,2,4]
    python benchmarks/workers.py postgresql://user@host/db [...]

For each worker count: a fresh store (a new SQLite file, or a schema of its own on the server),
every workflow submitted first (``Vow.submit``; each fans out FANOUT no-op leaves and adds up
their values), then that many real ``vow worker`` processes started. The rate is measured in
steady state: from the moment every worker has said it is ready (its start-up is not counted)
until 90 % of the workflows are resolved, counted in the store (on SQLite, the size of the
``-wal`` file is read at each count: its peak is reported). Worker count 0 is the in-process
baseline: one process that starts every workflow with ``Vow.begin_run`` and waits for them (its
rate counts the roots' own creation, which the workers' does not). Every workflow must end
resolved with the right value, or the run fails. One JSON line per worker count on stdout; a
table on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import worker_bench_app  # noqa: E402

# The count uses the index of runs by state (kind = 'workflow' lets SQLite choose it): polled every
# POLL seconds while the workers run, it takes CPU from them on a small machine.
_RESOLVED = "SELECT count(*) FROM {t} WHERE parent IS NULL AND kind = 'workflow' AND state = 'resolved'"
POLL = 0.025  # seconds between two counts: 1 % of a 2.5 s measurement
_WRONG = "SELECT count(*) FROM {t} WHERE parent IS NULL AND (state <> 'resolved' OR value <> '{v}')"


class SQLiteTarget:
    """A fresh SQLite file per case."""

    plugins = ""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="vow-workers-")
        self.url = f"sqlite:{os.path.join(self.dir, 'vow.sqlite')}"
        self._con: Any = None
        self.wal_peak = 0  # bytes: the largest -wal file seen at a count

    def sample(self) -> None:
        try:
            self.wal_peak = max(self.wal_peak, os.path.getsize(self.url[len("sqlite:"):] + "-wal"))
        except OSError:
            pass

    def count(self, sql: str) -> int:
        if self._con is None:
            self._con = sqlite3.connect(self.url[len("sqlite:"):], timeout=30)
        return int(self._con.execute(sql.format(t="promises")).fetchone()[0])

    def drop(self) -> None:
        if self._con is not None:
            self._con.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresTarget:
    """A schema of its own on the server per case, dropped after."""

    plugins = "postgresql"

    def __init__(self, server: str) -> None:
        import psycopg

        self.schema = f"vow_workers_{uuid.uuid4().hex[:8]}"
        self.url = f"{server}{'&' if '?' in server else '?'}schema={self.schema}"
        self._con = psycopg.connect(server, autocommit=True)
        self.wal_peak = None  # not a file here

    def sample(self) -> None:
        pass

    def count(self, sql: str) -> int:
        return int(self._con.execute(sql.format(t=f"{self.schema}.promises")).fetchone()[0])

    def drop(self) -> None:
        self._con.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        self._con.close()


def _said(log: Any, text: str) -> str:
    """What the process wrote so far, if it contains ``text``.

    Read through a handle of its own: the process writes through another (a seek on a shared one
    moves the writer too, and its next line overwrites what is there, the banner waited for)."""
    with open(log.name) as reader:
        written = reader.read()
    return written if text in written else ""


def _wait_for(target: Any, wanted: int, procs: list[subprocess.Popen[str]], logs: list[Any]) -> int:
    deadline = time.monotonic() + 600
    while (done := target.count(_RESOLVED)) < wanted:
        target.sample()
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done} workflows resolved in 600 s")
        for proc, log in zip(procs, logs):
            if proc.poll() not in (None, 0):
                raise RuntimeError(f"a process failed: {_said(log, '')}")
        time.sleep(POLL)
    return done


def run(server: str, workers: int, workflows: int, fanout: int) -> dict[str, Any]:
    from vow import Vow

    target: Any = SQLiteTarget() if server == "sqlite" else PostgresTarget(server)
    env = {**os.environ, "VOW_PLUGINS": target.plugins, "PYTHONUNBUFFERED": "1"}
    # each process writes to a file (never a full pipe), read through a handle of our own
    logs = [tempfile.NamedTemporaryFile("w", prefix="vow-worker-log-") for _ in range(max(workers, 1))]
    try:
        if workers == 0:
            procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--in-process", target.url,
                                       "--workflows", str(workflows), "--fanout", str(fanout)],
                                      env=env, stdout=logs[0], stderr=subprocess.STDOUT, text=True)]
            ready = "starting"
        else:
            client = Vow(target.url)
            worker_bench_app.register(client)
            for i in range(workflows):
                client.submit(f"wf/{i}", "fan", fanout)
            client.close()
            procs = [subprocess.Popen([sys.executable, "-m", "vow", "worker", "--store", target.url, "--app",
                                       "worker_bench_app:register", "--poll", "0.05"], cwd=HERE, env=env,
                                      stdout=log, stderr=subprocess.STDOUT, text=True) for log in logs]
            ready = "worker on"  # the banner is printed just before the worker's loop starts
        try:
            started_by = time.monotonic() + 120
            for proc, log in zip(procs, logs):
                while not _said(log, ready):
                    if proc.poll() is not None or time.monotonic() > started_by:
                        raise RuntimeError(f"a process did not start: {_said(log, '')}")
                    time.sleep(0.005)
            t1, c1 = time.perf_counter(), target.count(_RESOLVED)
            c2 = _wait_for(target, int(workflows * 0.9), procs, logs)
            t2 = time.perf_counter()
            _wait_for(target, workflows, procs, logs)
            wrong = target.count(_WRONG.replace("{v}", str(sum(range(fanout)))))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(60)
            per_worker = [_said(log, "").count(") started") for log in logs] if workers else []
            for log in logs:
                log.close()
    finally:
        target.drop()
    return {"store": "sqlite" if server == "sqlite" else "postgresql", "workers": workers,
            "workflows": workflows, "fanout": fanout, "ok": wrong == 0,
            "workflows_per_s": round((c2 - c1) / (t2 - t1), 1), "measured_workflows": c2 - c1,
            "measured_s": round(t2 - t1, 3), "done_before_all_ready": c1, "runs_per_worker": per_worker,
            "wal_peak_mb": None if target.wal_peak is None else round(target.wal_peak / 2**20, 1)}


def in_process(url: str, workflows: int, fanout: int) -> None:
    """The baseline: this process starts every workflow itself and waits for each result."""
    from vow import Vow

    client = Vow(url)
    worker_bench_app.register(client)
    client.store.lease_free("warm-up")  # open the store before the clock starts
    print("starting", flush=True)
    handles = [client.begin_run(f"wf/{i}", "fan", fanout) for i in range(workflows)]
    for handle in handles:
        handle.result()
    client.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store", nargs="?",
                    help="'sqlite' (a fresh file per case) or a postgresql:// URL (a schema per case)")
    ap.add_argument("--workflows", type=int, default=4000)
    ap.add_argument("--fanout", type=int, default=4)
    ap.add_argument("--workers", default="0,1,2,4", help="0 is the in-process baseline")
    ap.add_argument("--in-process", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.in_process:
        in_process(args.in_process, args.workflows, args.fanout)
        return 0
    if not args.store:
        ap.error("name a store: sqlite or a postgresql:// URL")
    rows = []
    for n in [int(x) for x in args.workers.split(",")]:
        row = run(args.store, n, args.workflows, args.fanout)
        rows.append(row)
        print(json.dumps(row), flush=True)
    for row in rows:
        who = "in-process" if row["workers"] == 0 else f"{row['workers']} worker(s)"
        print(f"{who}: {row['workflows_per_s']:,.0f} workflows/s "
              f"({row['measured_workflows']} workflows in {row['measured_s']} s, ok={row['ok']})"
              + (f", log peak {row['wal_peak_mb']} MB" if row["wal_peak_mb"] is not None else ""), file=sys.stderr)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
