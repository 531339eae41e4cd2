"""Ownership where users deploy: forked clients, two PID namespaces, stepped clocks, a busy
process, runs that kill their process, SIGTERM, and a store file replaced under a process.

Each test runs real processes on a real SQLite file and counts effects at the sink: a leaf that
starts twice at once, or a run that never settles, is a failure whatever the timing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.durability import deploy_app
from tests.durability.support import app as start_app
from tests.durability.support import importable
from tests.support import TIMEOUT, kill, python, read_line, spawn, vow_command
from vow import Vow
from vow.records import State
from vow.testing import wait_until


def app(*args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    """``deploy_app`` with ``args`` (its usage is in its docstring)."""
    return start_app("deploy_app", *args, env=env, prefix=prefix)


def effects(sink: Path, kind: str | None = None) -> list[list[str]]:
    if not sink.exists():
        return []
    lines = [line.split() for line in sink.read_text().splitlines()]
    return [line for line in lines if kind is None or line[0] == kind]


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM a worker (inside its namespace when it runs under unshare, which blocks SIGTERM itself),
    and read its output to the end."""
    if proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                children = [int(pid) for pid in f.read().split()]
        except OSError:
            children = []
        if Path(proc.args[0]).name == "unshare" and children:  # type: ignore[index]
            for pid in children:
                os.kill(pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=TIMEOUT)
    finally:
        kill(proc)  # only one that hangs after SIGTERM is still there to kill; every pipe is closed


def submit(store: Path, run_id: str, workflow: str, *args: object) -> None:
    with Vow(store=f"sqlite:{store}") as vow:
        vow.register(deploy_app.WORKFLOWS[workflow], name=workflow)
        vow.submit(run_id, workflow, *args)


def no_overlap(sink: Path, root: str) -> None:
    """The leaf of ``root`` started once and was never running twice at once."""
    starts = [line for line in effects(sink, "start") if line[1] == root]
    assert len(starts) == 1, effects(sink)


# -- fork ---------------------------------------------------------------------------------------


def test_children_forked_from_a_used_client_get_their_own_owner_and_run_a_leaf_once(tmp_path: Path) -> None:
    store, sink = tmp_path / "vow.sqlite", tmp_path / "sink"
    proc = app("fork-run", str(store), str(sink), "4")
    try:
        out, err = proc.communicate(timeout=120)  # a child that hangs would hold this up: the timeout fails it
    finally:
        kill(proc)
    assert proc.returncode == 0, err
    lines = [line.split() for line in out.splitlines()]
    parent = next(line[1] for line in lines if line[0] == "parent")
    children = [line for line in lines if line[0] == "child"]
    assert len(children) == 4 and all(line[3] == "held" for line in children), out
    owners = {line[2] for line in children}
    assert len(owners) == 4 and parent not in owners  # a fresh identity in every child
    assert next(line for line in lines if line[0] == "codes")[1:] == ["0"] * 4
    no_overlap(sink, "fork/1")


def test_workers_forked_from_one_parent_that_used_the_client_run_each_workflow_once(tmp_path: Path) -> None:
    store, sink = tmp_path / "vow.sqlite", tmp_path / "sink"
    parent = app("fork-workers", str(store), str(sink), "4")
    try:
        for i in range(40):
            submit(store, f"fw/{i}", "job", 0.05)
        with Vow(store=f"sqlite:{store}") as vow:
            wait_until(lambda: all(vow.get(f"fw/{i}").settled for i in range(40)), timeout=120,
                       message="every workflow to finish", proc=parent)
            assert {vow.get(f"fw/{i}").state for i in range(40)} == {State.RESOLVED}
    finally:
        out, _ = stop(parent)
    starts = Counter(line[1] for line in effects(sink, "start") if line[1].startswith("fw/"))
    assert starts == {f"fw/{i}": 1 for i in range(40)}
    lines = [line.split() for line in out.splitlines()]
    owners = {line[2] for line in lines if line[0] == "worker"}
    assert len(owners) == 4 and next(line[1] for line in lines if line[0] == "parent") not in owners


# -- containers: two PID namespaces on one file ---------------------------------------------------


def _unshare() -> tuple[str, ...]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to start processes in their own PID namespace (CI runs as root)")
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"this kernel refuses new PID namespaces here: {probe.stderr.decode().strip()}")
    return ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM")


def test_workers_in_two_pid_namespaces_never_take_a_live_workers_run(tmp_path: Path) -> None:
    prefix = _unshare()
    store, sink = tmp_path / "vow.sqlite", tmp_path / "sink"
    submit(store, "ns/1", "job", 3.0)  # one run; its leaf takes 3 s, six lease times of 0.5 s
    first = app("worker", str(store), str(sink), "0.5", prefix=prefix)
    second = None
    try:
        wait_until(lambda: effects(sink, "start"), message="the leaf to start", proc=first)
        second = app("worker", str(store), str(sink), "0.5", prefix=prefix)
        assert read_line(second).startswith("owner ")
        with Vow(store=f"sqlite:{store}") as vow:
            wait_until(lambda: vow.get("ns/1").settled, timeout=60, message="the run to finish", proc=first)
            assert vow.result("ns/1") == "held"
    finally:
        stop(first)
        if second is not None:
            stop(second)
    no_overlap(sink, "ns/1")
    pids = {line[2] for line in effects(sink)}
    assert pids == {"1"}  # each worker is pid 1 in its own namespace: a PID says nothing across them


# -- clocks --------------------------------------------------------------------------------------

SHIM = '''
import os, time
_path = os.environ.get("VOW_TEST_CLOCK")
if _path:  # this process's wall clock = the real one + the offset in that file (the test steps it)
    _real, _real_ns = time.time, time.time_ns
    def _offset():
        try:
            with open(_path) as f:
                return float(f.read() or 0)
        except (OSError, ValueError):
            return 0.0
    time.time = lambda: _real() + _offset()
    time.time_ns = lambda: _real_ns() + int(_offset() * 1e9)
'''


@pytest.fixture
def clock(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A clock shim for every process started with the returned environment, and the file that steps it."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SHIM)
    offset = tmp_path / "clock-offset"
    offset.write_text("0")
    path = os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")]))
    return offset, {**importable({"PYTHONPATH": path}), "VOW_TEST_CLOCK": str(offset)}


def test_a_clock_stepped_forward_does_not_let_an_idle_worker_take_a_live_run(tmp_path: Path, clock) -> None:
    offset, env = clock
    store, sink = tmp_path / "vow.sqlite", tmp_path / "sink"
    submit(store, "step/1", "job", 3.0)
    busy = app("worker", str(store), str(sink), "1.0", env=env)
    idle = None
    try:
        wait_until(lambda: effects(sink, "start"), message="the leaf to start", proc=busy)
        idle = app("worker", str(store), str(sink), "1.0", env=env)
        assert read_line(idle).startswith("owner ")
        offset.write_text("60")  # every lease now looks expired by a minute
        with Vow(store=f"sqlite:{store}") as vow:
            wait_until(lambda: vow.get("step/1").settled, timeout=60, message="the run to finish", proc=busy)
    finally:
        stop(busy)
        if idle is not None:
            stop(idle)
    no_overlap(sink, "step/1")


@pytest.mark.parametrize(("step", "seconds"), [(-3600, 2.0), (3600, 600.0)])
def test_a_sleep_waits_its_own_length_whatever_the_wall_clock_does(tmp_path: Path, clock, step: int,
                                                                   seconds: float) -> None:
    offset, env = clock
    store, sink = tmp_path / "vow.sqlite", tmp_path / "sink"
    proc = app("run", str(store), str(sink), "sleeper", "sleep/1", str(seconds), env=env)
    with Vow(store=f"sqlite:{store}") as vow:
        try:
            wait_until(lambda: vow.get("sleep/1.1"), 60, "the sleep to be stored", proc=proc)
            offset.write_text(str(step))
            if step < 0:  # an hour back: the 2 s sleep still wakes after about 2 s, not in an hour
                out, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, err
                assert "result woke" in out
            else:  # an hour ahead: the 600 s sleep is still asleep a while later
                woke = [line for line in effects(sink, "woke")]
                assert proc.poll() is None and woke == []
                wait_until(lambda: vow.store.now() > vow.get("sleep/1.1").created_at + 2, message="2 s to pass")
                assert proc.poll() is None and effects(sink, "woke") == []
                assert vow.get("sleep/1.1").state is State.PENDING
        finally:
            kill(proc)


def test_a_clock_stepped_back_does_not_hold_a_rate_limit_until_it_catches_up(tmp_path: Path, clock) -> None:
    """Tokens taken, then the wall clock an hour back: the bucket's stamps lie an hour ahead, and
    the rest of the calls still go at the limit's rate, not after an hour."""
    offset, env = clock
    store, sink = tmp_path / "vow.sqlite", tmp_path / "sink"
    proc = app("run", str(store), str(sink), "limited", "limited/1", "8", env=env)
    try:
        wait_until(lambda: len(effects(sink, "sent")) >= 2, 60, "two calls to go", proc=proc)
        offset.write_text("-3600")
        out, err = proc.communicate(timeout=60)
    finally:
        kill(proc)
    assert proc.returncode == 0, err
    assert "result sent" in out
    assert len(effects(sink, "sent")) == 8


# -- a busy process ------------------------------------------------------------------------------


@pytest.mark.parametrize("busy", ["leaf", "body"])
def test_a_process_busy_on_the_cpu_keeps_its_lease(tmp_path: Path, busy: str) -> None:
    store, sink = tmp_path / "vow.sqlite", tmp_path / "sink"
    remote = {"VOW_TEST_REMOTE": "1"}  # no liveness lock: only a lapsed lease could hand the run over
    if busy == "leaf":
        submit(store, "cpu/1", "job", 4.0, "cpu")
    else:
        submit(store, "cpu/1", "busy_body", 4.0)
    first = app("worker", str(store), str(sink), "1.0", env=remote)
    second = None
    try:
        wait_until(lambda: effects(sink), message="the run to start", proc=first)
        second = app("worker", str(store), str(sink), "1.0", env=remote)
        with Vow(store=f"sqlite:{store}") as vow:
            wait_until(lambda: vow.get("cpu/1").settled, timeout=60, message="the run to finish", proc=first)
    finally:
        stop(first)
        if second is not None:
            stop(second)
    kind = "start" if busy == "leaf" else "body"
    assert len([line for line in effects(sink, kind) if line[1] == "cpu/1"]) == 1, effects(sink)


# -- poison runs ---------------------------------------------------------------------------------


def test_a_run_that_kills_its_process_is_parked_after_the_recoveries_allowed(tmp_path: Path) -> None:
    store, sink = tmp_path / "vow.sqlite", tmp_path / "sink"
    submit(store, "poison/1", "poisoned")
    deaths = 0
    with Vow(store=f"sqlite:{store}") as vow:
        while deaths < 10:
            worker = app("worker", str(store), str(sink), "2.0", "2")
            try:
                wait_until(lambda w=worker: w.poll() is not None or (vow.store.lease("poison/1") or None)
                           and vow.store.lease("poison/1").parked, timeout=60, message="a death or the parking")
                parked_it = worker.poll() is None  # this one parked it instead of dying
            finally:
                stop(worker)  # a dead one: reaped, its pipes closed
            if parked_it:
                break
            deaths += 1
        lease = vow.store.lease("poison/1")
        assert deaths == 3 and lease.parked and "vow resume --force poison/1" in lease.parked
        assert vow.get("poison/1").state is State.PENDING and vow.store.claimable() == []
        listing = vow_command("ls", "--store", f"sqlite:{store}")
        assert "parked" in listing.stdout and "poison/1" in listing.stdout
        # the cause fixed, a forced resume runs it again
        forced = python("-m", "tests.durability.deploy_app", "run", str(store), str(sink), "poisoned", "poison/1",
                        env=importable({"VOW_TEST_FIXED": "1"}))
        assert "RunParkedError" in forced.stdout + forced.stderr  # a plain start is refused, with the reason
        deploy_app.SINK = str(sink)
        vow.register(deploy_app.poisoned, name="poisoned")
        os.environ["VOW_TEST_FIXED"] = "1"
        try:
            assert vow.resume("poison/1", force=True).result(timeout=60) == "fixed"
        finally:
            del os.environ["VOW_TEST_FIXED"]
    assert len(effects(sink, "start")) == 4


# -- signals and files ----------------------------------------------------------------------------

PIPELINE = """
version: 1
name: slow
id: "slow/1"
fan_out:
  - channel: sms
    to: "+14155550100"
    body: hello
    options: {latency: 30}
"""


def test_sigterm_stops_vow_run_and_gives_its_lease_back(tmp_path: Path) -> None:
    store = tmp_path / "vow.sqlite"
    (tmp_path / "slow.yaml").write_text(PIPELINE)
    proc = spawn("-m", "vow", "run", "slow.yaml", "--store", f"sqlite:{store}", cwd=tmp_path)
    with Vow(store=f"sqlite:{store}") as vow:
        try:
            wait_until(lambda: vow.get("slow/1.sms") is not None, 60, "the branch to start", proc=proc)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        finally:
            kill(proc)
        assert proc.returncode == 143, err
        assert "terminated: slow/1 stays pending" in err
        lease = vow.store.lease("slow/1")
        assert lease is not None and lease.owner == ""  # released: the next worker starts at once


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_store_file_deleted_or_replaced_under_a_run_stops_it_with_a_store_error(tmp_path: Path, how: str) -> None:
    store, sink = tmp_path / "vow.sqlite", tmp_path / "sink"
    proc = app("run", str(store), str(sink), "ticker", "tick/1", "2000")

    def ticked() -> bool:
        if not store.exists():
            return False
        con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
        try:
            return con.execute("SELECT count(*) FROM promises WHERE root = 'tick/1'").fetchone()[0] > 3
        except sqlite3.Error:
            return False
        finally:
            con.close()

    try:
        wait_until(ticked, 60, "a few ticks stored", proc=proc)
        if how == "deleted":
            store.unlink()
        else:
            other = tmp_path / "other.sqlite"
            with contextlib.closing(sqlite3.connect(other)) as con:
                con.execute("CREATE TABLE t (x)")
                con.commit()
            os.replace(other, store)
        out, err = proc.communicate(timeout=60)
    finally:
        kill(proc)  # nothing to do once it exited; else no process or pipe left behind
    assert proc.returncode == 3, err
    assert f"store-error SQLite store {store}: the file was deleted or replaced" in out
