"""How fast runs are listed on a big store: ``vow ls`` and the web console's runs page.

Builds a SQLite store of ``--promises`` promises (1,000,000 by default: runs of one root workflow
and nine steps; 0.1% of the runs pending, all among the oldest, as stuck runs are, so a query that
scans instead of seeking pays for every run; the rest resolved, rejected or canceled; a quarter
are pipeline runs, a few of a rarely used workflow), then times, in
this process (no interpreter start-up in the figures):

* ``vow ls`` with and without ``--state`` and ``--name``, through the real click command
  (opening the store, the query, the table on a captured stdout);
* ``Store.runs`` and ``Store.branch_counts`` of one page of the console's runs list, the first
  page and one deep in (keyset cursor);
* for comparison, the query ``vow ls`` made before ``Store.runs`` (``Store.search``).

It prints each query plan (``EXPLAIN QUERY PLAN``) and the median and best of ``--repeat`` runs::

    python benchmarks/listing.py                      # 1M promises (about a minute to build)
    python benchmarks/listing.py --promises 100000    # smaller
    python benchmarks/listing.py --path /tmp/big.sqlite --keep   # build once, time again later
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from vow import encoding
from vow.cli import cli
from vow.records import Batch, Kind, PromiseRecord, State
from vow.stores.base import pipeline_workflow
from vow.stores.sqlite import SQLiteStore

STEPS_PER_RUN = 9
FUNCS = ("app.notify", "app.images", "app.billing")


def build(path: str, promises: int) -> None:
    """Write ``promises`` promises (runs of a root and :data:`STEPS_PER_RUN` steps) to ``path``."""
    store = SQLiteStore(path)
    runs = promises // (STEPS_PER_RUN + 1)
    start = 1_700_000_000.0
    pipeline_args = encoding.encode_args(({"name": "orders", "branches": []},), {}, what="bench")
    batch: list[PromiseRecord] = []
    began = time.perf_counter()
    for n in range(runs):
        created = start + n * 0.5
        if n < runs // 100 and n % 10 == 7:  # stuck runs: few (0.1%) and old, the slow case of a scan
            state = State.PENDING
        elif n % 20 == 3:
            state = State.REJECTED
        elif n % 25 == 4:
            state = State.CANCELED
        else:
            state = State.RESOLVED
        root = f"run/{n:07d}"
        pipeline = n % 4 == 0
        func = pipeline_workflow() if pipeline else "app.rare" if n % 1000 == 1 else FUNCS[n % 3]
        settled = None if state is State.PENDING else created + 0.4
        value = None if state is State.PENDING else "1"
        batch.append(PromiseRecord(root, state, Kind.WORKFLOW, root, func, pipeline_args if pipeline else "[]",
                                   value, None, None, root, 1, created, settled, {}))
        for i in range(STEPS_PER_RUN):
            step_state = State.PENDING if state is State.PENDING and i >= 5 else State.RESOLVED
            sid = f"{root}.{i}"
            batch.append(PromiseRecord(sid, step_state, Kind.STEP, root, "app.send", "[]",
                                       None if step_state is State.PENDING else '"ok"', root, None, sid, 1,
                                       created + 0.01 * i, None if step_state is State.PENDING else created + 0.3,
                                       {}))
        if len(batch) >= 20_000:
            store.apply(Batch(creates=batch))
            batch = []
    if batch:
        store.apply(Batch(creates=batch))
    store.close()
    print(f"built {runs * (STEPS_PER_RUN + 1):,} promises ({runs:,} runs) in {time.perf_counter() - began:.1f} s",
          file=sys.stderr)


def timed(action: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(median, best) seconds of ``repeat`` calls of ``action``, and its last result."""
    times, result = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - began)
    return statistics.median(times), min(times), result


def vow_ls(path: str, *args: str) -> Callable[[], str]:
    """The real ``vow ls`` command, in this process, printing to a captured stdout."""
    argv = ["ls", "--store", f"sqlite:{path}", *args]

    def run() -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            cli.main(args=argv, prog_name="vow", standalone_mode=False)
        return out.getvalue()

    return run


def plan(store: SQLiteStore, filters: dict[str, Any]) -> str:
    """How SQLite runs the query of ``store.runs(**filters)``."""
    query = {"state": None, "name": None, "since": None, "until": None, "before": None, "limit": 20, **filters}
    sql, params = store._runs_query(**query)  # noqa: SLF001 - a benchmark looks inside
    rows = store._con().execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()  # noqa: SLF001
    return "; ".join(row[-1] for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--promises", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--path", help="the store file (default: a temporary file, removed afterwards)")
    parser.add_argument("--keep", action="store_true", help="keep the store file (and reuse it if it exists)")
    parser.add_argument("--json", action="store_true", help="one JSON line per case on stdout")
    opts = parser.parse_args()

    tmp = None
    if opts.path:
        path = os.path.abspath(opts.path)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="vow-listing-")
        path = os.path.join(tmp.name, "big.sqlite")
    if not (opts.keep and os.path.exists(path)):
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path + suffix)
        build(path, opts.promises)

    store = SQLiteStore(path)
    total = store._con().execute("SELECT count(*) FROM promises").fetchone()[0]  # noqa: SLF001
    roots = store._con().execute("SELECT count(*) FROM promises WHERE parent IS NULL").fetchone()[0]  # noqa: SLF001
    print(f"store {path}: {total:,} promises, {roots:,} runs, {os.path.getsize(path) / 2**20:.0f} MB; "
          f"SQLite {__import__('sqlite3').sqlite_version}", file=sys.stderr)
    deep = store.runs(limit=5000)[-1]
    before = (deep.created_at, deep.id)
    cases: list[tuple[str, Callable[[], Any], dict[str, Any] | None]] = [
        ("vow ls", vow_ls(path), {}),
        ("vow ls --state pending", vow_ls(path, "--state", "pending"), {"state": State.PENDING}),
        ("vow ls --state resolved", vow_ls(path, "--state", "resolved"), {"state": State.RESOLVED}),
        ("vow ls --state rejected", vow_ls(path, "--state", "rejected"), {"state": State.REJECTED}),
        ("vow ls --name app.notify", vow_ls(path, "--name", "app.notify"), {"name": "app.notify"}),
        ("vow ls --name orders (a pipeline)", vow_ls(path, "--name", "orders"), {"name": "orders"}),
        ("vow ls --name app.rare (0.1% of runs)", vow_ls(path, "--name", "app.rare"), {"name": "app.rare"}),
        ("runs(state=pending, limit=50)", lambda: store.runs(state=State.PENDING, limit=50), None),
        ("runs(limit=50) + branch_counts (console page 1)",
         lambda: store.branch_counts([r.id for r in store.runs(limit=50)]), None),
        ("runs(before=5,000th) + branch_counts (page 101)",
         lambda: store.branch_counts([r.id for r in store.runs(limit=50, before=before)]), {"before": before}),
        ("runs(state=resolved, before=5,000th) (a deep page)",
         lambda: store.runs(state=State.RESOLVED, limit=50, before=before),
         {"state": State.RESOLVED, "before": before}),
        ("before: search(state=pending, roots_only) as vow ls did",
         lambda: store.search(state=State.PENDING, kind=Kind.WORKFLOW, roots_only=True, limit=20), None),
    ]
    width = max(len(name) for name, _, _ in cases)
    print(f"{'case':{width}}  {'median':>9}  {'best':>9}", file=sys.stderr)
    for name, action, sql in cases:
        action()  # warm the page cache and the statement cache, as a second `vow ls` would find them
        median, best, result = timed(action, opts.repeat)
        print(f"{name:{width}}  {median * 1e3:7.2f} ms  {best * 1e3:7.2f} ms", file=sys.stderr)
        if sql is not None:
            print(f"{'':{width}}    plan: {plan(store, sql)}", file=sys.stderr)
        if opts.json:
            print(json.dumps({"case": name, "promises": total, "median_ms": round(median * 1e3, 3),
                              "best_ms": round(best * 1e3, 3), "repeat": opts.repeat}))
    store.close()
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
