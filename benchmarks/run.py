"""Benchmark harness for vow (issue 7): every scenario on every store, one JSON line each.

    python benchmarks/run.py                                  # everything (about 2 minutes)
    python benchmarks/run.py --scenarios sequential_steps,recovery --stores sqlite
    python benchmarks/run.py --quick                          # tiny sizes: the smoke test
    python benchmarks/run.py --repeat 3                       # median of 3 runs per case
    python benchmarks/run.py --profile /tmp/prof              # cProfile of the engine thread
    python benchmarks/run.py --store postgresql://user@host/db  # every scenario on a PostgreSQL server

Each (scenario, store) runs in a fresh child process (``run.py --child ...``), so peak RSS
(``ru_maxrss``) belongs to that scenario alone and no state leaks between scenarios. JSON lines
go to stdout; progress and the table (with the issue's targets, pass or miss) go to stderr.
Only the core plugins are loaded (``VOW_PLUGINS=`` empty) unless ``--all-plugins`` is given, so
figures do not depend on which channel plugins happen to be installed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
RESULT_PREFIX = "@@RESULT@@ "
CHILD_TIMEOUT_S = 300.0

SCENARIO_NAMES = ["fanout_sleep", "fanout_noop", "sequential_steps", "many_workflows", "replay_cached",
                  "recovery", "wide_fanout"]

FULL_CASES: list[tuple[str, dict[str, int]]] = [
    ("fanout_sleep", {"n": 4}),
    ("fanout_sleep", {"n": 16}),
    ("fanout_sleep", {"n": 100}),
    ("fanout_sleep", {"n": 1000}),
    ("fanout_noop", {"n": 1000}),
    ("sequential_steps", {"n": 1000}),
    ("many_workflows", {"workflows": 1000, "fanout": 4}),
    ("replay_cached", {"n": 1000}),
    ("recovery", {"n": 1000, "kill_after": 500}),
    ("wide_fanout", {"n": 100_000}),
]

QUICK_CASES: list[tuple[str, dict[str, int]]] = [
    ("fanout_sleep", {"n": 4}),
    ("fanout_sleep", {"n": 16}),
    ("fanout_noop", {"n": 50}),
    ("sequential_steps", {"n": 50}),
    ("many_workflows", {"workflows": 20, "fanout": 4}),
    ("replay_cached", {"n": 50}),
    ("recovery", {"n": 40, "kill_after": 20}),
    ("wide_fanout", {"n": 2000}),
]

# name -> store URL template ({dir} is the child's private temp dir)
STORES = {
    "memory": "memory:",
    "sqlite": "sqlite:{dir}/vow.sqlite",  # vow's default: WAL, synchronous=normal
    "sqlite_full": "sqlite:{dir}/vow.sqlite?synchronous=full",  # an fsync per commit
}
DEFAULT_STORES = ["memory", "sqlite", "sqlite_full"]
UNSUPPORTED = {("recovery", "memory"): "a memory store does not outlive the killed process"}
POSTGRES = "postgresql"
"""The name of the store ``--store postgresql://...`` adds: each case gets a fresh schema on that server."""


# ---------------------------------------------------------------------------------- targets
class Target:
    """One target of the issue: ``value(row) <op> limit``. The issue sets them for the SQLite store."""

    def __init__(self, what: str, value: Callable[[dict[str, Any]], Any], op: str, limit: float, shown: str) -> None:
        self.what, self.value, self.op, self.limit, self.shown = what, value, op, limit, shown

    def check(self, row: dict[str, Any]) -> dict[str, Any]:
        value = self.value(row) if row["ok"] else None
        met = value is not None and (value <= self.limit if self.op == "<=" else value >= self.limit)
        return {"what": self.what, "target": self.shown, "value": value, "met": met}


def _extra(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: row["extra"].get(key)


TARGETS: dict[tuple[str, str], list[Target]] = {
    ("fanout_sleep", "1000"): [
        Target("wall_s", lambda r: r["wall_s"], "<=", 0.2, "<= 0.2 s"),
        Target("peak_rss_mb", lambda r: r["peak_rss_mb"], "<=", 60, "<= 60 MB peak"),
    ],
    ("fanout_noop", "1000"): [Target("wall_s", lambda r: r["wall_s"], "<=", 0.050, "<= 50 ms")],
    ("sequential_steps", "1000"): [Target("per_item_ms", lambda r: r["per_item_ms"], "<=", 0.1, "<= 0.1 ms/step")],
    ("many_workflows", "1000x4"): [Target("workflows_per_s", _extra("workflows_per_s"), ">=", 2000, ">= 2000 wf/s")],
    ("replay_cached", "1000"): [Target("wall_s", lambda r: r["wall_s"], "<=", 0.001, "<= 1 ms")],
    ("recovery", "1000"): [
        Target("wall_s", lambda r: r["wall_s"], "<=", 0.5, "<= 0.5 s"),
        Target("reexecuted_settled_steps", _extra("reexecuted_settled_steps"), "<=", 0, "0 re-runs"),
    ],
    ("wide_fanout", "100000"): [Target("bytes_per_branch", _extra("bytes_per_branch"), "<=", 2048, "<= 2 KB/branch")],
}
TARGET_STORE = "sqlite"

# Issue 13: at least 10x DBOS 3.4 on the same PostgreSQL server (measured there: 12.1 ms per
# sequential step, 5.4 s for the 1,000-branch fan-out, 39 workflows/s for 1,000 x 4).
POSTGRES_TARGETS: dict[tuple[str, str], list[Target]] = {
    ("sequential_steps", "1000"): [Target("per_item_ms", lambda r: r["per_item_ms"], "<=", 1.21, "<= 1.21 ms/step")],
    ("fanout_noop", "1000"): [Target("wall_s", lambda r: r["wall_s"], "<=", 0.54, "<= 0.54 s")],
    ("many_workflows", "1000x4"): [Target("workflows_per_s", _extra("workflows_per_s"), ">=", 390, ">= 390 wf/s")],
}


def size_of(params: dict[str, int]) -> str:
    if "workflows" in params:
        return f"{params['workflows']}x{params['fanout']}"
    return str(params["n"])


# ---------------------------------------------------------------------------------- child
def run_child(scenario: str, store: str, params: dict[str, int], profile_dir: str | None,
              store_url: str | None = None) -> dict[str, Any]:
    """Run one scenario on one store in this process and return its row."""
    sys.path.insert(0, HERE)
    import scenarios

    workdir = tempfile.mkdtemp(prefix=f"vow-bench-{scenario}-")
    schema = None
    if store_url is not None:  # a PostgreSQL server: this case's own schema, dropped at the end
        schema = f"vow_bench_{os.getpid()}"
        url = f"{store_url}{'&' if '?' in store_url else '?'}schema={schema}"
    else:
        url = STORES[store].format(dir=workdir)
    profiler = _profile_engine() if profile_dir else None
    row: dict[str, Any] = {"scenario": scenario, "size": size_of(params), "store": store, "params": params,
                           "wall_s": None, "per_item_ms": None, "peak_rss_mb": None, "ok": False, "note": "",
                           "extra": {}}
    try:
        t0 = time.perf_counter()
        vow = None if scenario == "recovery" else scenarios.new_vow(url)
        row["extra"]["startup_s"] = round(time.perf_counter() - t0, 3)
        row["extra"]["rss_after_start_mb"] = round(scenarios.rss_now_mb(), 1)
        wid = f"{scenario}-{os.getpid()}"
        try:
            out = scenarios.run_scenario(scenario, params, url, workdir, vow, wid)
        finally:
            row["peak_rss_mb"] = round(scenarios.peak_rss_mb(), 1)
            if vow is not None:
                vow.close()
        row["ok"] = out.ok
        row["note"] = "; ".join(out.notes)
        row["extra"].update(out.extra)
        if out.wall_s is not None:
            row["wall_s"] = round(out.wall_s, 6)
            row["per_item_ms"] = round(out.wall_s / out.items * 1e3, 5)
        if "recovering_peak_rss_mb" in out.extra:  # the process that matters is the one that recovered
            row["peak_rss_mb"] = out.extra["recovering_peak_rss_mb"]
    except Exception as exc:  # noqa: BLE001 - record the failure as a row, never lose the run
        row["note"] = f"{type(exc).__name__}: {exc}"[:300]
        import traceback

        traceback.print_exc()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if schema is not None:
            _drop_schema(store_url, schema)
    if profiler is not None and profile_dir:
        _dump_profile(profiler, profile_dir, f"{scenario}-{row['size']}-{store}")
    return row


def _drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _profile_engine() -> Any:
    """Profile the engine thread: wrap ``Engine._loop`` (it runs on the "vow-engine" thread) in cProfile."""
    import cProfile

    from vow import engine

    profiler = cProfile.Profile()
    loop = engine.Engine._loop

    def profiled_loop(self: Any) -> None:
        profiler.runcall(loop, self)

    engine.Engine._loop = profiled_loop  # type: ignore[method-assign]
    return profiler


def _dump_profile(profiler: Any, directory: str, name: str) -> None:
    import pstats

    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name + ".prof")
    profiler.dump_stats(path)
    print(f"--- engine thread profile of {name} ({path}); top by own time:", file=sys.stderr)
    pstats.Stats(path, stream=sys.stderr).sort_stats("tottime").print_stats(25)


# ---------------------------------------------------------------------------------- parent
def environment() -> dict[str, Any]:
    """The machine and versions the figures were measured on."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    from vow import __version__ as vow_version
    try:  # which code was measured: the commit, "+dirty" when the core has uncommitted changes
        git = ["git", "-C", HERE]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "../core"], capture_output=True, text=True).stdout
        commit += "+dirty" if dirty.strip() else ""
    except OSError:
        commit = ""
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "vow": vow_version, "commit": commit, "machine": platform.machine(),
            "load_average": round(os.getloadavg()[0], 2)}  # other work on the box skews every figure


def spawn_child(scenario: str, store: str, params: dict[str, int], args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", scenario, "--child-store", store,
           "--params", json.dumps(params)]
    if store == POSTGRES:
        cmd += ["--child-url", args.store]
    if args.profile:
        cmd += ["--profile", args.profile]
    env = dict(os.environ)
    if not args.all_plugins:
        env["VOW_PLUGINS"] = "postgresql" if store == POSTGRES else ""  # core plugins (and the store's) only
    row = None
    why = ""
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if args.verbose or args.profile else
                              subprocess.PIPE, text=True, timeout=CHILD_TIMEOUT_S, env=env)
        for line in proc.stdout.splitlines():
            if line.startswith(RESULT_PREFIX):
                row = json.loads(line[len(RESULT_PREFIX):])
        if row is None:
            tail = (proc.stderr or "").strip().splitlines()[-3:]
            why = f"child died rc={proc.returncode}: {' | '.join(tail)}"[:300]
        elif not row["ok"] and proc.stderr:
            row["note"] = (row["note"] + " | " + proc.stderr.strip().splitlines()[-1])[:300]
    except subprocess.TimeoutExpired:
        why = f"killed after {CHILD_TIMEOUT_S:.0f} s"
    if row is None:
        row = {"scenario": scenario, "size": size_of(params), "store": store, "params": params, "wall_s": None,
               "per_item_ms": None, "peak_rss_mb": None, "ok": False, "note": why, "extra": {}}
    return row


def run_case(scenario: str, store: str, params: dict[str, int], args: argparse.Namespace) -> dict[str, Any]:
    """Run one case ``--repeat`` times in fresh children; the row of the median run, all walls kept."""
    reason = UNSUPPORTED.get((scenario, store))
    if reason:
        return {"scenario": scenario, "size": size_of(params), "store": store, "params": params, "wall_s": None,
                "per_item_ms": None, "peak_rss_mb": None, "ok": None, "note": f"n/a: {reason}",
                "extra": {"unsupported": True}}
    runs = [spawn_child(scenario, store, params, args) for _ in range(max(1, args.repeat))]
    good = sorted((r for r in runs if r["ok"]), key=lambda r: r["wall_s"])
    row = good[len(good) // 2] if good else runs[-1]
    if len(runs) > 1:
        row["extra"]["walls_s"] = [r["wall_s"] for r in runs]
        bad = [r["note"] for r in runs if not r["ok"]]
        if bad and good:
            row["note"] = f"{len(bad)} of {len(runs)} repeats failed: {bad[0]}"
            row["ok"] = False  # a failure in any repeat is a failure
    targets = (POSTGRES_TARGETS if store == POSTGRES else TARGETS).get((scenario, row["size"]), [])
    row["targets"] = [t.check(row) for t in targets]
    row["targets_apply"] = store in (TARGET_STORE, POSTGRES)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="vow benchmark harness (issue 7)")
    ap.add_argument("--scenarios", help=f"comma-separated, from {','.join(SCENARIO_NAMES)} (default: all)")
    ap.add_argument("--stores", help=f"comma-separated, from {','.join(STORES)} (default: {','.join(DEFAULT_STORES)})")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test); no targets apply")
    ap.add_argument("--json-only", action="store_true", help="no progress and no table on stderr")
    ap.add_argument("--repeat", type=int, default=1, help="run each case N times, report the median")
    ap.add_argument("--profile", metavar="DIR", help="cProfile the engine thread; .prof files go to DIR")
    ap.add_argument("--all-plugins", action="store_true", help="load every installed vow plugin, not only the core's")
    ap.add_argument("--verbose", action="store_true", help="show the children's stderr")
    ap.add_argument("--report", metavar="JSONL", help="print the table of saved JSON lines and exit")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown on stdout")
    ap.add_argument("--store", metavar="URL",
                    help="run every scenario on this PostgreSQL server (postgresql://...) instead of the "
                         "default stores; each case gets a schema of its own, dropped after it")
    ap.add_argument("--child", metavar="SCENARIO", help=argparse.SUPPRESS)
    ap.add_argument("--child-store", help=argparse.SUPPRESS)
    ap.add_argument("--child-url", help=argparse.SUPPRESS)
    ap.add_argument("--params", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        row = run_child(args.child, args.child_store, json.loads(args.params), args.profile, args.child_url)
        sys.stdout.write(RESULT_PREFIX + json.dumps(row) + "\n")
        sys.stdout.flush()
        os._exit(0)  # do not wait for idle pool threads

    if args.report:
        with open(args.report) as f:
            saved = [json.loads(line) for line in f if line.startswith("{")]
        print_markdown(saved) if args.markdown else print_table(saved, None)
        return 0

    chosen = _choose(args.scenarios, SCENARIO_NAMES, "scenario", ap)
    stores = _choose(args.stores, list(STORES), "store", ap) if args.stores else DEFAULT_STORES
    if args.store:
        if args.store.split("://", 1)[0] not in ("postgresql", "postgres"):
            from vow.stores import redact_url

            ap.error(f"--store takes a postgresql:// URL (the other stores are chosen with --stores), "
                     f"got {redact_url(args.store)!r}")
        stores = [POSTGRES]
    cases = [c for c in (QUICK_CASES if args.quick else FULL_CASES) if c[0] in chosen]
    env = environment()
    say = (lambda *a: None) if args.json_only else (lambda *a: print(*a, file=sys.stderr, flush=True))
    say(f"vow {env['vow']} ({env['commit']}) on {env['cpus']} x {env['cpu']}, Python {env['python']}, "
        f"SQLite {env['sqlite']}, load average {env['load_average']}")
    started = time.perf_counter()
    rows = []
    for scenario, params in cases:
        for store in stores:
            row = run_case(scenario, store, params, args)
            row["env"] = env
            rows.append(row)
            print(json.dumps(row), flush=True)
            say(f"  {scenario:<17} {row['size']:>7} {store:<12} wall={_fmt_s(row['wall_s'])} "
                f"ok={row['ok']} {row['note'][:100]}")
    total = time.perf_counter() - started
    if args.markdown:
        print_markdown(rows)
    elif not args.json_only:
        print_table(rows, total)
    return 0 if all(r["ok"] is not False for r in rows) else 1


def _choose(raw: str | None, allowed: list[str], what: str, ap: argparse.ArgumentParser) -> list[str]:
    if not raw:
        return list(allowed)
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        ap.error(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return names


# ---------------------------------------------------------------------------------- table
def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0.01:
        return f"{seconds * 1e3:.3f} ms"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def figure(row: dict[str, Any]) -> str:
    """The scenario's headline figure besides its wall time."""
    e, s = row["extra"], row["scenario"]
    if row["wall_s"] is None:
        return ""
    if s == "fanout_sleep":
        return f"{e.get('ratio_vs_0.1s')}x the 0.1 s call"
    if s in ("fanout_noop", "sequential_steps"):
        return f"{row['per_item_ms'] * 1e3:.1f} us/step"
    if s == "many_workflows":
        return f"{e.get('workflows_per_s'):,.0f} wf/s"
    if s == "replay_cached":
        return f"first run {_fmt_s(e.get('first_run_s'))}"
    if s == "recovery":
        return (f"spawn->done {_fmt_s(e.get('spawn_to_result_s'))}; re-ran {e.get('reexecuted_settled_steps')} "
                f"settled, {e.get('rerun_in_flight_steps')} in flight")
    if s == "wide_fanout":
        return f"{e.get('bytes_per_branch'):,} B/branch"
    return ""


def _memory(row: dict[str, Any]) -> str:
    peak, start = row["peak_rss_mb"], row["extra"].get("rss_after_start_mb")
    if peak is None:
        return "-"
    return f"{peak:.0f}" + (f" (+{peak - start:.0f})" if start is not None and row["scenario"] != "recovery" else "")


def _target_cells(row: dict[str, Any]) -> tuple[str, str]:
    targets = row.get("targets") or []
    if not targets:
        return "", ""
    shown = ", ".join(t["target"] for t in targets)
    met = all(t["met"] for t in targets)
    verdict = "pass" if met else "MISS"
    return shown, verdict if row.get("targets_apply") else f"({verdict.lower()})"


HEADER = ["scenario", "size", "store", "wall", "figure", "peak RSS MB (+run)", "target", "met", "ok", "note"]


def _cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    body = []
    for r in rows:
        shown, verdict = _target_cells(r)
        ok = "n/a" if r["ok"] is None else ("yes" if r["ok"] else "NO")
        body.append([r["scenario"], r["size"], r["store"], _fmt_s(r["wall_s"]), figure(r), _memory(r), shown,
                     verdict, ok, (r["note"] or "")[:70]])
    return body


def print_markdown(rows: list[dict[str, Any]]) -> None:
    """The table as Markdown (for benchmarks/README.md)."""
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for line in _cells(rows):
        print("| " + " | ".join(cell.replace("|", "/") for cell in line) + " |")


def print_table(rows: list[dict[str, Any]], total_s: float | None) -> None:
    header = HEADER
    body = _cells(rows)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
        for line in [header, *body]:
            print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip(), file=sys.stderr)
    else:
        table = Table(title="vow benchmarks", title_justify="left")
        for h in header:
            table.add_column(h, justify="right" if h in ("size", "wall") else "left", overflow="fold")
        prev = None
        for r, line in zip(rows, body):
            if prev is not None and (r["scenario"], r["size"]) != prev:
                table.add_section()
            prev = (r["scenario"], r["size"])
            style = "red" if line[7] == "MISS" or line[8] == "NO" else None
            table.add_row(*line, style=style)
        Console(stderr=True, width=200).print(table)
    took = f"; whole run {total_s:.0f} s" if total_s is not None else ""
    print(f"targets are the issues', for the {TARGET_STORE} and {POSTGRES} stores (in parentheses for the others)"
          f"{took}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
