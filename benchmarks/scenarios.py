"""The benchmark scenarios of issue 7: the workflows, and how each one is timed and checked.

Each scenario runs in a process of its own (``run.py`` spawns one per scenario and store), so
its peak RSS is its own. Leaves mark a slot in :data:`HITS` each time their body runs, so every
scenario can check that each step ran exactly once and that a stored step never ran again.

``python benchmarks/scenarios.py recovery-worker PHASE STORE LOG ID N`` is the process that the
``recovery`` scenario starts, kills with SIGKILL, and starts again.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

SLEEP_S = 0.1  # the blocking call of every fanout_sleep branch

# One counter per step slot; a bytearray costs one byte per branch, so counting does not
# distort the memory measured for 100,000 branches. Each slot is written by one leaf only.
HITS = bytearray()


def count(slot: int) -> None:
    if HITS[slot] < 255:
        HITS[slot] += 1


def reset_hits(n: int) -> None:
    global HITS
    HITS = bytearray(n)


def rss_now_mb() -> float:
    """Resident set size of this process now."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------- leaves
def noop(ctx: Any, i: int) -> int:
    count(i)
    return i


def sleeper(ctx: Any, i: int) -> int:
    count(i)
    time.sleep(SLEEP_S)
    return i


LOG_FD = -1  # the recovery workers' step log
PAUSE_AT = -1  # the step at which the process to be killed stops, so the kill lands mid-step


def logged(ctx: Any, i: int) -> int:
    """A step of the recovery workflow: appends ``"i pid"`` to the log before it returns."""
    os.write(LOG_FD, f"{i} {os.getpid()}\n".encode())  # O_APPEND: one atomic line per write
    if i == PAUSE_AT:
        time.sleep(3600)  # killed here: this step is in flight, every step before it is settled
    return i


# ---------------------------------------------------------------------------------- workflows
def fanout(ctx: Any, n: int, body: str):
    """n concurrent branches, then one fan-in over all of them."""
    fn = sleeper if body == "sleep" else noop
    handles = []
    for i in range(n):
        handles.append((yield ctx.begin_run(fn, i)))
    values = yield ctx.all(handles)
    return sum(values)


def sequential(ctx: Any, n: int):
    """n steps one after another: each waits for the one before."""
    total = 0
    for i in range(n):
        total += yield ctx.run(noop, i)
    return total


def small_fanout(ctx: Any, base: int, k: int):
    """One of many_workflows: k branches using slots base .. base+k-1; returns sum(range(k))."""
    handles = []
    for j in range(k):
        handles.append((yield ctx.begin_run(noop, base + j)))
    values = yield ctx.all(handles)
    return sum(values) - base * k


def logged_sequence(ctx: Any, n: int):
    """The recovery workflow: n logged steps one after another."""
    total = 0
    for i in range(n):
        total += yield ctx.run(logged, i)
    return total


WORKFLOWS = (fanout, sequential, small_fanout, logged_sequence)


def new_vow(store_url: str) -> Any:
    from vow import Vow

    vow = Vow(store=store_url)
    for wf in WORKFLOWS:
        vow.register(wf)
    return vow


# ---------------------------------------------------------------------------------- scenarios
class Outcome:
    """What a scenario measured: the timed wall, its checks and its extra figures."""

    def __init__(self, wall_s: float | None, items: int, ok: bool, notes: list[str], **extra: Any) -> None:
        self.wall_s = wall_s
        self.items = items
        self.ok = ok
        self.notes = notes
        self.extra = extra


def _exactly_once(n: int) -> tuple[int, list[str]]:
    """Total executions and what went wrong (steps not run, or run more than once)."""
    ran = sum(HITS)
    notes = []
    missing = HITS.count(0)
    repeated = n - missing - HITS.count(1)
    if missing:
        notes.append(f"{missing} steps never ran")
    if repeated:
        notes.append(f"{repeated} steps ran more than once")
    return ran, notes


def run_fanout(vow: Any, wid: str, n: int, body: str) -> Outcome:
    reset_hits(n)
    rss_before = rss_now_mb()
    t0 = time.perf_counter()
    result = vow.run(wid, fanout, n, body)
    wall = time.perf_counter() - t0
    ran, notes = _exactly_once(n)
    if result != sum(range(n)):
        notes.append(f"wrong sum {result}")
    extra: dict[str, Any] = {"step_executions": ran, "rss_before_mb": round(rss_before, 1)}
    if body == "sleep":
        extra["ratio_vs_0.1s"] = round(wall / SLEEP_S, 2)
    return Outcome(wall, n, not notes, notes, **extra)


def run_wide_fanout(vow: Any, wid: str, n: int) -> Outcome:
    out = run_fanout(vow, wid, n, "noop")
    grown = peak_rss_mb() - out.extra["rss_before_mb"]
    out.extra["peak_growth_mb"] = round(grown, 1)
    out.extra["bytes_per_branch"] = round(grown * 2**20 / n)
    return out


def run_sequential(vow: Any, wid: str, n: int) -> Outcome:
    reset_hits(n)
    t0 = time.perf_counter()
    result = vow.run(wid, sequential, n)
    wall = time.perf_counter() - t0
    ran, notes = _exactly_once(n)
    if result != sum(range(n)):
        notes.append(f"wrong sum {result}")
    return Outcome(wall, n, not notes, notes, step_executions=ran)


def run_many_workflows(vow: Any, wid: str, workflows: int, fanout: int) -> Outcome:
    reset_hits(workflows * fanout)
    t0 = time.perf_counter()
    handles = [vow.begin_run(f"{wid}-{k}", small_fanout, k * fanout, fanout) for k in range(workflows)]
    total = sum(h.result() for h in handles)
    wall = time.perf_counter() - t0
    ran, notes = _exactly_once(workflows * fanout)
    if total != workflows * sum(range(fanout)):
        notes.append(f"wrong total {total}")
    return Outcome(wall, workflows, not notes, notes, step_executions=ran,
                   workflows_per_s=round(workflows / wall, 1))


def run_replay_cached(vow: Any, wid: str, n: int) -> Outcome:
    """Run the sequential workflow (untimed), then time joining the settled id again."""
    reset_hits(n)
    t0 = time.perf_counter()
    first = vow.run(wid, sequential, n)
    first_s = time.perf_counter() - t0
    _, notes = _exactly_once(n)
    reset_hits(n)
    t0 = time.perf_counter()
    second = vow.run(wid, sequential, n)
    wall = time.perf_counter() - t0
    again = sum(HITS)
    if again:
        notes.append(f"the second run re-executed {again} steps")
    if not first == second == sum(range(n)):
        notes.append(f"results {first} and {second}, expected {sum(range(n))}")
    return Outcome(wall, n, not notes, notes, first_run_s=round(first_s, 4), reexecuted_steps=again)


def run_recovery(store_url: str, workdir: str, n: int, kill_after: int) -> Outcome:
    """SIGKILL a process running ``logged_sequence(n)`` in step ``kill_after``; finish it in a new one.

    The first process stops inside step ``kill_after`` (steps before it are settled and stored)
    and is killed there. The timed figure is how long the new process takes from ``vow.run(id)``
    to the result: the lease is free by then, because vow sees at once that the owner process
    on this machine is dead. ``spawn_to_result_s`` adds interpreter start-up, imports and
    opening the store, as the peers' harness measures it.
    """
    log = os.path.join(workdir, "steps.log")
    wid = f"recovery-{os.getpid()}"
    cmd = [sys.executable, os.path.abspath(__file__), "recovery-worker"]
    first = subprocess.Popen([*cmd, "run", store_url, log, wid, str(n), str(kill_after)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while first.poll() is None and time.monotonic() < deadline and _log_lines(log) <= kill_after:
        time.sleep(0.002)
    if first.poll() is not None or _log_lines(log) <= kill_after:
        first.kill()
        err = first.stderr.read().decode(errors="replace")[-300:] if first.stderr else ""
        return Outcome(None, n, False, [f"the first process did not reach step {kill_after} "
                                        f"(rc={first.returncode}): {err}"])
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    started_before = {i for i, _ in _read_log(log)}
    settled_before = _settled_steps(store_url, wid)

    t0 = time.perf_counter()
    second = subprocess.Popen([*cmd, "recover", store_url, log, wid, str(n), "-1"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    line = second.stdout.readline() if second.stdout else ""
    spawn_to_result = time.perf_counter() - t0
    _, err = second.communicate(timeout=120)
    try:
        info = json.loads(line)
    except json.JSONDecodeError:
        return Outcome(None, n, False, [f"the recovering process failed (rc={second.returncode}): {err[-300:]}"])
    lines = _read_log(log)
    after = [i for i, pid in lines if pid == info["pid"]]
    rerun_settled = sorted(set(after) & settled_before)
    rerun_in_flight = sorted((set(after) & started_before) - settled_before)
    notes = []
    if rerun_settled:
        notes.append(f"{len(rerun_settled)} settled steps ran again: {rerun_settled[:10]}")
    if len(rerun_in_flight) > 1:
        notes.append(f"{len(rerun_in_flight)} in-flight steps ran again (at most 1 expected)")
    if {i for i, _ in lines} != set(range(n)) or len(after) != n - len(settled_before):
        notes.append(f"steps ran {len(lines)} times in all for {n} steps ({len(settled_before)} settled "
                     f"before the kill, {len(after)} after)")
    if info["result"] != sum(range(n)):
        notes.append(f"wrong sum {info['result']}")
    return Outcome(info["recover_s"], n - len(settled_before), not notes, notes,
                   spawn_to_result_s=round(spawn_to_result, 4),
                   import_and_open_s=info["ready_s"],
                   steps_started_before_kill=len(started_before),
                   steps_settled_before_kill=len(settled_before),
                   steps_run_after_restart=len(after),
                   reexecuted_settled_steps=len(rerun_settled),
                   rerun_in_flight_steps=len(rerun_in_flight),
                   recovering_peak_rss_mb=info["peak_rss_mb"])


def _log_lines(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def _read_log(path: str) -> list[tuple[int, int]]:
    with open(path) as f:
        return [(int(a), int(b)) for a, b in (line.split() for line in f if line.strip())]


def _settled_steps(store_url: str, wid: str) -> set[int]:
    """Step numbers the store holds as settled (child ``{wid}.{k}`` is step ``k - 1``)."""
    from vow.stores import open_store

    store = open_store(store_url)
    try:
        return {int(r.id.rsplit(".", 1)[1]) - 1 for r in store.tree(wid) if r.id != wid and r.settled}
    finally:
        store.close()


def recovery_worker(phase: str, store_url: str, log: str, wid: str, n: int, pause_at: int) -> None:
    """``run``: start the workflow and stop in step ``pause_at`` (to be killed there).
    ``recover``: run the same id to its end and print what it measured as one JSON line."""
    global LOG_FD, PAUSE_AT
    t_start = time.perf_counter()
    LOG_FD = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    PAUSE_AT = pause_at
    vow = new_vow(store_url)
    ready = time.perf_counter() - t_start
    t0 = time.perf_counter()
    result = vow.run(wid, logged_sequence, n)
    recover_s = time.perf_counter() - t0
    print(json.dumps({"pid": os.getpid(), "result": result, "recover_s": round(recover_s, 4),
                      "ready_s": round(ready, 4), "peak_rss_mb": round(peak_rss_mb(), 1)}), flush=True)
    vow.close()
    os._exit(0 if phase == "recover" else 3)


# ---------------------------------------------------------------------------------- dispatch
def run_scenario(name: str, params: dict[str, Any], store_url: str, workdir: str, vow: Any,
                 wid: str) -> Outcome:
    """Run scenario ``name`` with ``params`` on an open client ``vow`` (``recovery`` opens its own)."""
    runners: dict[str, Callable[[], Outcome]] = {
        "fanout_sleep": lambda: run_fanout(vow, wid, params["n"], "sleep"),
        "fanout_noop": lambda: run_fanout(vow, wid, params["n"], "noop"),
        "sequential_steps": lambda: run_sequential(vow, wid, params["n"]),
        "many_workflows": lambda: run_many_workflows(vow, wid, params["workflows"], params["fanout"]),
        "replay_cached": lambda: run_replay_cached(vow, wid, params["n"]),
        "recovery": lambda: run_recovery(store_url, workdir, params["n"], params["kill_after"]),
        "wide_fanout": lambda: run_wide_fanout(vow, wid, params["n"]),
    }
    return runners[name]()


if __name__ == "__main__":
    if len(sys.argv) == 8 and sys.argv[1] == "recovery-worker":
        recovery_worker(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), int(sys.argv[7]))
    else:
        sys.exit(f"usage: {sys.argv[0]} recovery-worker run|recover STORE LOG ID N PAUSE_AT")
