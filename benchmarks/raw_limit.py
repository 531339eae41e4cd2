"""vow beside plain ``sqlite3`` (or plain ``psycopg``): what a durable step costs over the commits it
needs, and whether the log and memory stay bounded.

    python benchmarks/raw_limit.py                       # ratios: sequential steps and fan-out (~1 min)
    python benchmarks/raw_limit.py --sections wal        # the WAL's peak during long runs (~3 min)
    python benchmarks/raw_limit.py --sections memory     # peak RSS of 10k- and 1M-step workflows (~4 min)
    python benchmarks/raw_limit.py --sections ratios,wal,memory --repeat 3
    python benchmarks/raw_limit.py --store postgresql://user@host:5432/db   # ratios on PostgreSQL (~2 min)

**ratios** runs each case in a fresh child process, interleaving vow and raw so both see the same
machine load, and prints the medians and their ratio:

Each vow case runs twice: as vow runs by default (quick leaves on the engine thread) and with
``Vow(inline_leaves=False)`` (every leaf handed to the thread pool and back), reported as ``pool``.

* ``steps``: a workflow of N sequential no-op ``ctx.run`` steps on vow's SQLite store (WAL,
  ``synchronous=NORMAL``), against a raw script that makes the same commits on a file with vow's
  own schema: one transaction per step that settles step n-1 and creates step n (vow commits a
  step before its leaf runs, and a result together with the next step it unblocks).
* ``fanout``: one workflow of N no-op branches, against a raw script that creates the N rows in
  one transaction and settles them in another (the fewest commits such a run can make).

**On PostgreSQL** (``--store postgresql://...``, the ratios only; needs vow-postgres): vow's
``postgresql`` store against plain ``psycopg`` making the same commits on vow's schema (made by
vow's store, in a schema of each case's own, dropped after it), with the same
``synchronous_commit`` (``--synchronous-commit``, default ``off`` as the store's). Raw sends each
transaction in one round trip (pipeline mode: ``BEGIN``, the settle of step n-1, the create of
step n, ``COMMIT``), as vow's one call of its server-side ``apply`` does. Defaults: 3,000 steps,
10,000 branches.

**wal** samples the size of the ``-wal`` file every 5 ms during a 100k-step workflow, a
100k-branch fan-out and 1,000 concurrent workflows of 4 branches, and reads it again after
``close()``. The bound: 64 MB or 4x the database, whichever is larger; 0 bytes after close.

**memory** reports the peak RSS of an N-step sequential workflow for N = 10k and 1M (a workflow
keeps only what is live, so the two should be within a few MB).

Only the core's plugins load (``VOW_PLUGINS=``). One JSON line per case on stdout; the table on
stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
WAL_FLOOR = 64 * 1024 * 1024


# -- the workloads ----------------------------------------------------------------------------------

def noop(ctx: Any, i: int) -> int:
    return i


def sequential(ctx: Any, n: int):
    total = 0
    for i in range(n):
        total += yield ctx.run(noop, i)
    return total


def fanout(ctx: Any, n: int):
    handles = []
    for i in range(n):
        handles.append((yield ctx.begin_run(noop, i)))
    values = yield ctx.all(handles)
    return sum(values)


class WalSampler:
    """The largest size the ``-wal`` file beside ``path`` reached while this sampler ran."""

    def __init__(self, path: str, every: float = 0.005) -> None:
        self.path = path + "-wal"
        self.every = every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def sample(self) -> None:
        try:
            self.peak = max(self.peak, os.path.getsize(self.path))
        except OSError:
            pass

    def __enter__(self) -> WalSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def vow_case(kind: str, n: int, path: str, inline_leaves: bool = True) -> dict[str, Any]:
    """Run one vow workload on a fresh SQLite file at ``path`` (``inline_leaves=False``: every leaf
    in the thread pool, as before vow ran quick leaves on its engine thread)."""
    from vow import Vow

    vow = Vow(f"sqlite:{path}", inline_leaves=inline_leaves)
    vow.register(sequential, name="sequential")
    vow.register(fanout, name="fanout")
    with WalSampler(path) as wal:
        t0 = time.perf_counter()
        if kind == "many":
            handles = [vow.begin_run(f"many/{i}", "fanout", 4) for i in range(n)]
            results = [h.result() for h in handles]
            ok = results == [6] * n
        else:
            ok = vow.run(f"{kind}/1", kind, n) == n * (n - 1) // 2
        elapsed = time.perf_counter() - t0
    vow.close()
    return {"seconds": elapsed, "ok": ok, "wal_peak": wal.peak, "wal_after_close": _size(path + "-wal"),
            "db_bytes": _size(path)}


def _raw_connection(path: str) -> Any:
    """A plain connection to a file with vow's schema (made by vow's store), in vow's settings."""
    import sqlite3

    from vow.stores.sqlite import SQLiteStore

    SQLiteStore(path).close()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")
    return con


_INSERT = ("INSERT INTO promises (id, state, kind, root, func, args, value, parent, timeout, idempotency_key,"
           " attempt, created_at, settled_at, tags)"
           " VALUES (?, 'pending', ?, ?, ?, ?, NULL, ?, NULL, ?, 1, ?, NULL, '{}')")
_SETTLE = "UPDATE promises SET state = 'resolved', value = ?, settled_at = ? WHERE id = ? AND state = 'pending'"


def raw_case(kind: str, n: int, path: str) -> dict[str, Any]:
    """The commits ``vow_case`` makes, written with plain sqlite3 (encoding values as JSON too)."""
    con = _raw_connection(path)
    root = f"{kind}/1"
    dumps = json.dumps
    t0 = time.perf_counter()
    con.execute(_INSERT, (root, "workflow", root, kind, dumps([n]), None, root, time.time()))
    if kind == "sequential":
        previous = None
        for i in range(n):
            sid = f"{root}.{i + 1}"
            con.execute("BEGIN")
            if previous is not None:
                con.execute(_SETTLE, (dumps(i - 1), time.time(), previous))
            con.execute(_INSERT, (sid, "step", root, "noop", dumps([i]), root, sid, time.time()))
            con.execute("COMMIT")
            previous = sid
        con.execute("BEGIN")
        con.execute(_SETTLE, (dumps(n - 1), time.time(), previous))
        con.execute(_SETTLE, (dumps(n * (n - 1) // 2), time.time(), root))
        con.execute("COMMIT")
    else:
        ids = [f"{root}.{i + 1}" for i in range(n)]
        con.execute("BEGIN")
        con.executemany(_INSERT, [(sid, "step", root, "noop", dumps([i]), root, sid, time.time())
                                  for i, sid in enumerate(ids)])
        con.execute("COMMIT")
        con.execute("BEGIN")
        con.executemany(_SETTLE, [(dumps(i), time.time(), sid) for i, sid in enumerate(ids)])
        con.execute(_SETTLE, (dumps(n * (n - 1) // 2), time.time(), root))
        con.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    ok = con.execute("SELECT count(*) FROM promises WHERE state = 'resolved'").fetchone()[0] == n + 1
    con.close()
    return {"seconds": elapsed, "ok": ok}


def _pg_schema(url: str) -> tuple[str, str]:
    """This case's own schema on the server at ``url``, and the store URL naming it."""
    schema = f"vow_raw_limit_{os.getpid()}"
    return schema, f"{url}{'&' if '?' in url else '?'}schema={schema}"


def _pg_drop(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def vow_case_pg(kind: str, n: int, url: str, sync: str, inline_leaves: bool = True) -> dict[str, Any]:
    """Run one vow workload on vow's PostgreSQL store, in a fresh schema on the server at ``url``."""
    from vow import Vow

    schema, store_url = _pg_schema(url)
    try:
        vow = Vow(f"{store_url}&synchronous_commit={sync}", inline_leaves=inline_leaves)
        vow.register(sequential, name="sequential")
        vow.register(fanout, name="fanout")
        t0 = time.perf_counter()
        ok = vow.run(f"{kind}/1", kind, n) == n * (n - 1) // 2
        elapsed = time.perf_counter() - t0
        vow.close()
    finally:
        _pg_drop(url, schema)
    return {"seconds": elapsed, "ok": ok}


def raw_case_pg(kind: str, n: int, url: str, sync: str) -> dict[str, Any]:
    """The commits ``vow_case_pg`` makes, written with plain psycopg on vow's schema: each
    transaction in one round trip (pipeline mode), statements prepared, values JSON as vow's."""
    import psycopg
    from vow_postgres import PostgresStore

    schema, store_url = _pg_schema(url)
    PostgresStore(store_url).close()  # vow's schema, made by vow's store
    try:
        con = psycopg.connect(url, autocommit=True, prepare_threshold=0)
        if sync != "server":
            con.execute(f"SET synchronous_commit TO {sync}")
        # The SQLite script's statements, on the schema's table with psycopg's placeholders.
        insert, settle = (sql.replace("promises", f"{schema}.promises", 1).replace("?", "%s")
                          for sql in (_INSERT, _SETTLE))
        root = f"{kind}/1"
        dumps = json.dumps
        t0 = time.perf_counter()
        con.execute(insert, (root, "workflow", root, kind, dumps([n]), None, root, time.time()))
        if kind == "sequential":
            previous = None
            for i in range(n):
                sid = f"{root}.{i + 1}"
                with con.pipeline():
                    con.execute("BEGIN")
                    if previous is not None:
                        con.execute(settle, (dumps(i - 1), time.time(), previous))
                    con.execute(insert, (sid, "step", root, "noop", dumps([i]), root, sid, time.time()))
                    con.execute("COMMIT")
                previous = sid
            with con.pipeline():
                con.execute("BEGIN")
                con.execute(settle, (dumps(n - 1), time.time(), previous))
                con.execute(settle, (dumps(n * (n - 1) // 2), time.time(), root))
                con.execute("COMMIT")
        else:
            ids = [f"{root}.{i + 1}" for i in range(n)]
            with con.pipeline(), con.cursor() as cur:
                cur.execute("BEGIN")
                cur.executemany(insert, [(sid, "step", root, "noop", dumps([i]), root, sid, time.time())
                                         for i, sid in enumerate(ids)])
                cur.execute("COMMIT")
            with con.pipeline(), con.cursor() as cur:
                cur.execute("BEGIN")
                cur.executemany(settle, [(dumps(i), time.time(), sid) for i, sid in enumerate(ids)])
                cur.execute(settle, (dumps(n * (n - 1) // 2), time.time(), root))
                cur.execute("COMMIT")
        elapsed = time.perf_counter() - t0
        row = con.execute(f"SELECT count(*) FROM {schema}.promises WHERE state = 'resolved'").fetchone()
        con.close()
    finally:
        _pg_drop(url, schema)
    return {"seconds": elapsed, "ok": row is not None and row[0] == n + 1}


def child(case: str, n: int) -> dict[str, Any]:
    """One case in this (fresh) process: ``vow-steps``, ``raw-fanout``, ``pool-steps``, ``vow-memory`` ..."""
    who, kind = case.split("-", 1)
    url = os.environ.get("VOW_RAW_LIMIT_PG")
    if url:  # the ratios on PostgreSQL (see --store)
        sync = os.environ.get("VOW_RAW_LIMIT_SYNC", "off")
        workload = {"steps": "sequential", "fanout": "fanout"}[kind]
        if who == "raw":
            row = raw_case_pg(workload, n, url, sync)
        else:
            row = vow_case_pg(workload, n, url, sync, inline_leaves=who == "vow")
        row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        return {"case": case, "n": n, **row}
    workdir = tempfile.mkdtemp(prefix="vow-raw-limit-")
    path = os.path.join(workdir, "vow.sqlite")
    try:
        if kind == "memory":
            kind = "steps"
        workload = {"steps": "sequential", "fanout": "fanout", "many": "many"}[kind]
        if who == "raw":
            row = raw_case(workload, n, path)
        else:
            row = vow_case(workload, n, path, inline_leaves=who == "vow")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return {"case": case, "n": n, **row}


def spawn(case: str, n: int) -> dict[str, Any]:
    env = {**os.environ, "VOW_PLUGINS": "postgresql" if os.environ.get("VOW_RAW_LIMIT_PG") else ""}
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", case, "--n", str(n)],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{case} n={n} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the sections -----------------------------------------------------------------------------------

def ratios(steps: int, branches: int, repeat: int) -> list[dict[str, Any]]:
    rows = []
    for name, n in (("steps", steps), ("fanout", branches)):
        vow_s, pool_s, raw_s, ok = [], [], [], True
        for _ in range(repeat):  # interleaved: every side sees the same load
            for who, into in (("vow", vow_s), ("pool", pool_s), ("raw", raw_s)):
                r = spawn(f"{who}-{name}", n)
                ok = ok and r["ok"]
                into.append(r["seconds"] / n * 1e6)
        vow_us, pool_us, raw_us = statistics.median(vow_s), statistics.median(pool_s), statistics.median(raw_s)
        target = None if os.environ.get("VOW_RAW_LIMIT_PG") else 1.5 if name == "steps" else 2.0  # SQLite's
        rows.append({"section": "ratios", "scenario": name, "n": n, "repeat": repeat, "ok": ok,
                     "vow_us": round(vow_us, 1), "raw_us": round(raw_us, 1), "ratio": round(vow_us / raw_us, 2),
                     "target_ratio": target, "pool_us": round(pool_us, 1), "pool_ratio": round(pool_us / raw_us, 2),
                     "vow_runs_us": [round(x, 1) for x in vow_s], "pool_runs_us": [round(x, 1) for x in pool_s],
                     "raw_runs_us": [round(x, 1) for x in raw_s]})
    return rows


def wal(steps: int, branches: int, workflows: int) -> list[dict[str, Any]]:
    rows = []
    for case, n in (("vow-steps", steps), ("vow-fanout", branches), ("vow-many", workflows)):
        r = spawn(case, n)
        bound = max(WAL_FLOOR, 4 * r["db_bytes"])
        rows.append({"section": "wal", "scenario": case[4:], "n": n, "ok": r["ok"],
                     "wal_peak_mb": round(r["wal_peak"] / 2**20, 1), "wal_after_close": r["wal_after_close"],
                     "db_mb": round(r["db_bytes"] / 2**20, 1), "bound_mb": round(bound / 2**20, 1),
                     "within": r["wal_peak"] <= bound and r["wal_after_close"] == 0, "seconds": round(r["seconds"], 2)})
    return rows


def memory(small: int, large: int) -> list[dict[str, Any]]:
    a, b = spawn("vow-memory", small), spawn("vow-memory", large)
    return [{"section": "memory", "scenario": "steps", "ok": a["ok"] and b["ok"], "small_n": small,
             "large_n": large, "small_peak_rss_mb": a["peak_rss_mb"], "large_peak_rss_mb": b["peak_rss_mb"],
             "difference_mb": round(b["peak_rss_mb"] - a["peak_rss_mb"], 1),
             "within": b["peak_rss_mb"] - a["peak_rss_mb"] <= 20, "large_seconds": round(b["seconds"], 1)}]


def _pg_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as con:
        row = con.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def report(rows: list[dict[str, Any]]) -> None:
    err = sys.stderr
    url = os.environ.get("VOW_RAW_LIMIT_PG")
    store = (f"PostgreSQL {_pg_version(url)} (synchronous_commit={os.environ.get('VOW_RAW_LIMIT_SYNC', 'off')}), "
             "raw = psycopg" if url else f"SQLite {__import__('sqlite3').sqlite_version}")
    print(f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()} · "
          f"{store} · {time.strftime('%Y-%m-%d')}", file=err)
    for r in rows:
        if r["section"] == "ratios":
            unit = "step" if r["scenario"] == "steps" else "branch"
            print(f"{r['scenario']:>7} N={r['n']:<7} vow {r['vow_us']:>7.1f} µs/{unit}  "
                  f"raw {r['raw_us']:>6.1f} µs/{unit}"
                  f"  ratio {r['ratio']:.2f}x"
                  + (f" (target <= {r['target_ratio']}x)" if r["target_ratio"] else "") + f"  ok={r['ok']}"
                  f"  [every leaf in the pool: {r['pool_us']:.1f} µs, {r['pool_ratio']:.2f}x]", file=err)
        elif r["section"] == "wal":
            print(f"WAL {r['scenario']:>7} N={r['n']:<7} peak {r['wal_peak_mb']:>6.1f} MB (bound {r['bound_mb']} MB, "
                  f"db {r['db_mb']} MB), after close {r['wal_after_close']} B, {r['seconds']} s  "
                  f"{'ok' if r['within'] else 'OVER'}", file=err)
        else:
            print(f"RSS steps N={r['small_n']:,}: {r['small_peak_rss_mb']} MB; N={r['large_n']:,}: "
                  f"{r['large_peak_rss_mb']} MB; +{r['difference_mb']} MB ({'ok' if r['within'] else 'OVER'} 20 MB); "
                  f"{r['large_seconds']} s", file=err)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", default="ratios", help="comma-separated: ratios, wal, memory")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, help="sequential steps (default 10,000; 3,000 on PostgreSQL)")
    ap.add_argument("--branches", type=int, default=10_000)
    ap.add_argument("--store", metavar="URL", help="a postgresql:// server: the ratios on vow's PostgreSQL store, "
                    "beside plain psycopg (each case in a schema of its own, dropped after it)")
    ap.add_argument("--synchronous-commit", default="off", choices=("off", "on", "local", "server"),
                    help="with --store: the synchronous_commit of both vow's store and raw (default off, the store's)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n)))
        return 0
    rows: list[dict[str, Any]] = []
    sections = args.sections.split(",")
    if args.store:
        if args.store.split("://", 1)[0] not in ("postgresql", "postgres"):
            ap.error(f"--store takes a postgresql:// URL, got {args.store!r}")
        if sections != ["ratios"]:
            ap.error("--store measures the ratios only (the wal and memory sections are SQLite's)")
        os.environ["VOW_RAW_LIMIT_PG"] = args.store  # the children read it
        os.environ["VOW_RAW_LIMIT_SYNC"] = args.synchronous_commit
    if args.steps is None:
        args.steps = 3_000 if args.store else 10_000
    if "ratios" in sections:
        rows += ratios(args.steps, args.branches, args.repeat)
    if "wal" in sections:
        rows += wal(100_000, 100_000, 1_000)
    if "memory" in sections:
        rows += memory(10_000, 1_000_000)
    for row in rows:
        print(json.dumps(row), flush=True)
    report(rows)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
