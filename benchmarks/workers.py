"""Worker scaling on one store: workflows per second with 1, 2 and 4 ``vow worker`` processes.

    python benchmarks/workers.py postgresql://user@host/db [--workflows 4000] [--fanout 4] [--workers 1,2,4]

For each worker count: a fresh schema on the server, every workflow submitted first (``Vow.submit``;
each fans out FANOUT no-op leaves and adds up their values), then that many real ``vow worker``
processes started. The rate is measured in steady state: from the moment every worker has said it
is ready (its start-up is not counted) until 90 % of the workflows are resolved, counted in the
store. Every workflow must end resolved with the right value, or the run fails. One JSON line
per worker count on stdout; a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import worker_bench_app  # noqa: E402


def _said(log, text: str) -> str:
    """What the worker wrote so far, if it contains ``text``."""
    log.seek(0)
    written = log.read()
    return written if text in written else ""


def _count(con, schema: str) -> int:
    return con.execute(f"SELECT count(*) FROM {schema}.promises WHERE parent IS NULL AND state = 'resolved'"
                       ).fetchone()[0]


def run(url: str, workers: int, workflows: int, fanout: int) -> dict:
    import psycopg

    from vow import Vow

    schema = f"vow_workers_{uuid.uuid4().hex[:8]}"
    store_url = f"{url}{'&' if '?' in url else '?'}schema={schema}"
    client = Vow(store_url)
    worker_bench_app.register(client)
    for i in range(workflows):
        client.submit(f"wf/{i}", "fan", fanout)
    client.close()
    env = {**os.environ, "VOW_PLUGINS": "postgresql", "PYTHONUNBUFFERED": "1"}
    logs = [tempfile.TemporaryFile("w+") for _ in range(workers)]  # a line per run: never a full pipe
    procs = [subprocess.Popen([sys.executable, "-m", "vow", "worker", "--store", store_url, "--app",
                               "worker_bench_app:register", "--poll", "0.05"], cwd=HERE, env=env, stdout=log,
                              stderr=subprocess.STDOUT, text=True) for log in logs]
    con = psycopg.connect(url, autocommit=True)
    try:
        for proc, log in zip(procs, logs):  # ready: the banner is printed just before the worker's loop starts
            while not _said(log, "worker on"):
                if proc.poll() is not None:
                    raise RuntimeError(f"a worker did not start: {_said(log, '')}")
                time.sleep(0.01)
        t1, c1 = time.perf_counter(), _count(con, schema)
        target = int(workflows * 0.9)
        deadline = time.monotonic() + 600
        while (c2 := _count(con, schema)) < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {c2} of {workflows} workflows resolved in 600 s")
            time.sleep(0.01)
        t2 = time.perf_counter()
        while _count(con, schema) < workflows:
            if time.monotonic() > deadline:
                raise RuntimeError("not every workflow resolved")
            time.sleep(0.05)
        expected = str(sum(range(fanout)))
        wrong = con.execute(f"SELECT count(*) FROM {schema}.promises WHERE parent IS NULL AND value <> %s",
                            (expected,)).fetchone()[0]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)
        per_worker = [_said(log, "").count(") started") for log in logs]
        for log in logs:
            log.close()
        con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        con.close()
    return {"workers": workers, "workflows": workflows, "fanout": fanout, "ok": wrong == 0,
            "workflows_per_s": round((c2 - c1) / (t2 - t1), 1), "measured_workflows": c2 - c1,
            "measured_s": round(t2 - t1, 3), "done_before_all_ready": c1, "runs_per_worker": per_worker}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", help="a postgresql:// URL (each run gets a schema of its own, dropped after)")
    ap.add_argument("--workflows", type=int, default=4000)
    ap.add_argument("--fanout", type=int, default=4)
    ap.add_argument("--workers", default="1,2,4")
    args = ap.parse_args()
    rows = []
    for n in [int(x) for x in args.workers.split(",")]:
        row = run(args.url, n, args.workflows, args.fanout)
        rows.append(row)
        print(json.dumps(row), flush=True)
    for row in rows:
        print(f"{row['workers']} worker(s): {row['workflows_per_s']:,.0f} workflows/s "
              f"({row['measured_workflows']} workflows in {row['measured_s']} s, ok={row['ok']})", file=sys.stderr)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
