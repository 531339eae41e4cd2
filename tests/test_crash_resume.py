"""Crash and restart in real processes on a real SQLite file: nothing settled runs twice."""

from __future__ import annotations

import collections
import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import finish, kill, read_line, spawn
from vow import PromiseRecord, Vow
from vow.testing import wait_until

APP = Path(__file__).with_name("crash_app.py")


def start(workflow: str, store: str, log: Path, wid: str, *args: object,
          env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return spawn(APP, workflow, store, str(log), wid, json.dumps(list(args)), env=env)


def result(proc: subprocess.Popen[str]) -> object:
    """The value the app printed last, once it exited 0."""
    out, _ = finish(proc)
    return json.loads(out.strip().splitlines()[-1])


def runs(log: Path) -> collections.Counter[str]:
    if not log.exists():
        return collections.Counter()
    return collections.Counter(line.split()[0] for line in log.read_text().splitlines() if line.strip())


def ready_at(proc: subprocess.Popen[str]) -> float:
    """The wall-clock time at which ``proc`` had its client built and was about to run (its first line)."""
    line = read_line(proc)
    assert line.startswith("started"), line
    return float(line.split()[2])


def stored(store: str, id: str) -> PromiseRecord | None:
    """The record ``id`` as the store holds it now (read through a fresh client)."""
    reader = Vow(store=store)
    try:
        return reader.get(id)
    finally:
        reader.close()


def settled_children(store: str, root: str) -> set[str]:
    """Ids of the promises under ``root`` that the store holds as settled."""
    reader = Vow(store=store)
    try:
        return {r.id for r in reader.store.tree(root) if r.settled and r.id != root}
    finally:
        reader.close()


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:{tmp_path / 'vow.sqlite'}"


def test_sigkill_mid_fan_in_resumes_without_rerunning_settled_leaves(tmp_path: Path, store: str) -> None:
    log, gate = tmp_path / "leaves.log", tmp_path / "gate"
    # b0 and b1 run; b2..b4 wait at the gate: the kill lands with exactly two settled, however
    # fast or slow the machine (a kill timed by a pause could land after all five settled).
    held = {"CRASH_APP_GATE": str(gate), "CRASH_APP_HOLD_FROM": "2"}
    first = start("fanout", store, log, "order/1", 5, 0.15, env=held)
    wait_until(lambda: len(settled_children(store, "order/1")) >= 2, message="two branches settled", proc=first)
    kill(first)
    settled = settled_children(store, "order/1")
    assert settled == {"order/1.b0", "order/1.b1"}, f"the kill must land with b0, b1 settled, not {settled}"
    assert set(runs(log)) == settled  # the three others were in flight, held before their side effect

    gate.touch()
    second = start("fanout", store, log, "order/1", 5, 0.15)
    assert result(second) == sum(i * 10 for i in range(5))
    after = runs(log)
    assert set(after) == {f"order/1.b{i}" for i in range(5)}
    for leaf in settled:
        assert after[leaf] == 1, f"{leaf} settled before the crash and ran again"
    # Leaves that were still running when the process died run again (same idempotency key):
    # at most twice in all, never more.
    assert all(count <= 2 for count in after.values())


def test_a_leaf_killed_mid_attempt_is_told_it_may_have_run(tmp_path: Path, store: str) -> None:
    """A leaf that checks its provider before sending again (the Slack bot reads the channel's
    history) must do so after a crash too: the attempt the dead process began may have arrived."""
    log = tmp_path / "leaves.log"
    first = start("sender", store, log, "send/1", env={"CRASH_APP_HANG": "1"})
    wait_until(lambda: log.exists() and log.read_text().strip(), message="the first attempt began", proc=first)
    kill(first)

    second = start("sender", store, log, "send/1")
    assert result(second) == [1, True]  # the same attempt, which knows it was begun before
    fresh = start("sender", store, log, "send/2")
    assert result(fresh) == [1, False]


def test_same_id_started_twice_in_two_processes_runs_once(tmp_path: Path, store: str) -> None:
    log = tmp_path / "leaves.log"
    procs = [start("fanout", store, log, "order/2", 3, 0.1) for _ in range(2)]
    results = [result(p) for p in procs]
    assert results == [30, 30]
    assert runs(log) == collections.Counter({f"order/2.b{i}": 1 for i in range(3)})


def test_durable_sleep_survives_a_restart(tmp_path: Path, store: str) -> None:
    log = tmp_path / "leaves.log"
    first = start("sleeper", store, log, "nap/1", 2.0)
    nap = wait_until(lambda: stored(store, "nap/1.2"), message="the first process stored its sleep", proc=first)
    # Kill the first process half-way through its sleep (a condition on the clock the sleep is
    # judged by, not a pause), so that a restart sleeping the whole 2 s again would wake late.
    wait_until(lambda: time.time() >= nap.created_at + 1.0, message="half the sleep passed")
    kill(first)
    second = start("sleeper", store, log, "nap/1", 2.0)
    restarted_at = ready_at(second)
    assert result(second) == 3
    assert runs(log) == collections.Counter({"nap/1.1": 1, "nap/1.3": 1})
    nap = stored(store, "nap/1.2")
    assert nap is not None and nap.settled_at is not None and nap.timeout is not None
    # Judged on the times the store recorded, so no interpreter start-up is inside a margin:
    # the timer woke no earlier than the time it was given...
    assert nap.settled_at >= nap.timeout == pytest.approx(nap.created_at + 2.0)
    # ...and the restart slept only what was left: a full 2 s counted from the restart would end
    # at restarted_at + 2.0, which is at least a second after the wake-up time.
    assert nap.settled_at < restarted_at + 2.0


def test_promise_resolved_from_another_process_wakes_the_workflow(tmp_path: Path, store: str) -> None:
    log = tmp_path / "leaves.log"
    waiting = start("approval", store, log, "deploy/7")
    outside = Vow(store=store)
    try:
        wait_until(lambda: outside.get("deploy/7.approval") is not None, message="the approval promise is stored",
                   proc=waiting)
        # Nothing settles the approval but the resolve below: the workflow is parked on it.
        assert waiting.poll() is None, "the workflow must still be waiting"
        assert not outside.get("deploy/7.approval").settled and "deploy/7.2" not in runs(log)
        outside.resolve("deploy/7.approval", {"approved_by": "ops"})
    finally:
        outside.close()
    assert result(waiting) == {"approved_by": "ops"}
    assert runs(log) == collections.Counter({"deploy/7.2": 1})


def test_sigkill_of_a_long_sequence_reruns_no_settled_step(tmp_path: Path, store: str) -> None:
    log, gate = tmp_path / "leaves.log", tmp_path / "gate"
    # Step 60 waits at the gate: the kill lands with exactly steps 0..59 settled and step 60 in
    # flight (a kill timed by a pause could land after all 200 finished, and prove nothing).
    held = {"CRASH_APP_GATE": str(gate), "CRASH_APP_HOLD_FROM": "60"}
    first = start("sequence", store, log, "seq/1", 200, 0.002, env=held)
    wait_until(lambda: len(settled_children(store, "seq/1")) >= 60, message="60 steps settled", proc=first)
    kill(first)
    settled = settled_children(store, "seq/1")
    assert len(settled) == 60, f"the kill must land with 60 of 200 steps settled, not {len(settled)}"
    assert set(runs(log)) == settled

    gate.touch()
    second = start("sequence", store, log, "seq/1", 200, 0.002)
    assert result(second) == sum(i * 10 for i in range(200))
    after = runs(log)
    assert len(after) == 200
    assert all(after[leaf] == 1 for leaf in settled)
    assert sum(after.values()) <= 201  # only the step in flight at the kill may have run twice
