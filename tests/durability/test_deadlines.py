"""Time limits survive a crash: a call whose timeout passed while no process ran it is not started
again, and a workflow's retry back-off is waited out after a restart. And a sleep lasts its own
length even when the wall clock steps between its commit and its timer."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from vow import Constant, Context, Kind, LeafContext, Never, PromiseTimeoutError, State, Vow
from vow.errors import Throttled
from vow.stores.sqlite import SQLiteStore
from vow.testing import wait_until


def test_a_call_whose_deadline_passed_during_the_crash_is_timed_out_without_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "vow.sqlite"
    release = threading.Event()
    starts: list[float] = []
    # The machine's clock, as every reader sees it: the test steps it past the call's deadline
    # after the crash. The deadline is an hour, so the first client cannot time the call out
    # itself before it closes (with a short one, a test descheduled that long found the call
    # already timed out by the first client, and passed without a deadline passing in a crash).
    offset = [0.0]
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + offset[0])

    def send(ctx: LeafContext) -> str:
        starts.append(time.time())
        release.wait(30)
        return "sent"

    def wf(ctx: Context):
        try:
            return (yield ctx.run(send).options(timeout=3600, retry=Never()))
        except PromiseTimeoutError:
            return "timed out"

    first = Vow(store=f"sqlite:{path}")
    try:
        first.register(wf)
        first.begin_run("deadline/1", wf)
        wait_until(lambda: starts, message="the call started")
    finally:
        first.close()  # stops with the call in flight, as a crash would
    try:
        reader = SQLiteStore(path)
        record = reader.get("deadline/1.1")
        reader.close()
        assert record is not None and record.state is State.PENDING and record.timeout is not None, (
            f"the call must be in flight at the crash, not {record}")
        offset[0] = record.timeout - real() + 1.0  # no process ran the workflow until its call's deadline passed
        resumed_at = time.time()
        with Vow(store=f"sqlite:{path}") as second:
            second.register(wf)
            assert second.resume("deadline/1").result(timeout=30) == "timed out"
            assert second.get("deadline/1.1").state is State.TIMEDOUT
        assert [at for at in starts if at >= resumed_at] == [], "the timed-out call was started again"
        assert len(starts) == 1
    finally:
        release.set()


def test_a_workflow_retry_back_off_cut_by_a_crash_is_still_waited_out(tmp_path: Path) -> None:
    """Like a leaf's, a workflow's back-off before its next attempt outlives the process."""
    path = tmp_path / "vow.sqlite"
    failed_at: list[float] = []
    second_attempt_at: list[float] = []

    def note(ctx: LeafContext, attempt: int) -> int:
        if attempt > 1:
            second_attempt_at.append(time.time())
        return attempt

    def wf(ctx: Context):
        yield ctx.run(note, ctx.attempt).options(id=f"{ctx.id}.note.{ctx.attempt}")
        if ctx.attempt == 1:
            failed_at.append(time.time())
            raise RuntimeError("the first attempt fails; the next one waits 2 s")
        return ctx.attempt

    retry = Constant(delay=2.0, max_attempts=2)
    first = Vow(store=f"sqlite:{path}")
    try:
        first.register(wf, retry=retry)
        first.begin_run("wfretry/1", wf)
        deadline = time.monotonic() + 30
        while (record := first.get("wfretry/1")) is None or record.attempt < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        first.close()  # stops during the back-off, as a crash would
    with Vow(store=f"sqlite:{path}") as second:
        second.register(wf, retry=retry)
        assert second.resume("wfretry/1").result(timeout=30) == 2
    assert second_attempt_at and second_attempt_at[0] >= failed_at[0] + 2.0 - 0.05, (
        f"attempt 2 began {second_attempt_at[0] - failed_at[0]:.2f} s after attempt 1 failed, not 2 s")


class _StepsTheClockAfterItsCommit(SQLiteStore):
    """A store whose machine clock jumps ``step`` seconds the moment the commit that stores a sleep is
    done: before the engine that made the sleep arms its timer."""

    def __init__(self, path: str, clock: list[float], step: float) -> None:
        super().__init__(path)
        self._clock, self._step = clock, step

    def apply(self, batch):  # type: ignore[no-untyped-def]
        result = super().apply(batch)
        if self._step and any(r.kind is Kind.SLEEP for r in batch.creates):
            self._clock[0] += self._step
            self._step = 0.0
        return result


@pytest.mark.parametrize("what", ["sleep", "backoff", "rate limit"])
def test_a_clock_step_between_a_sleeps_commit_and_its_timer_does_not_wake_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str) -> None:
    """The wall clock jumps an hour ahead right after a 10-minute sleep (or a retry's 10-minute
    back-off, or a 10-minute wait for a rate limit's token) is stored, before its timer is armed: it
    still lasts ten minutes from when it was made (a wall-clock step neither wakes a sleep early nor
    late, README "Clocks")."""
    offset = [0.0]
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + offset[0])  # the machine's clock, as every reader sees it
    attempts: list[int] = []

    def fails_once(ctx: LeafContext) -> str:
        attempts.append(ctx.attempt)
        if len(attempts) == 1:
            if what == "rate limit":
                raise Throttled(wait=600)
            raise RuntimeError("not yet")
        return "done"

    def sleeper(ctx: Context):
        if what == "sleep":
            yield ctx.sleep(600)
        else:
            yield ctx.run(fails_once).options(retry=Constant(delay=600))
        return "woke"

    def quick(ctx: Context):
        return (yield ctx.run(lambda c: 1))

    store = _StepsTheClockAfterItsCommit(str(tmp_path / "vow.sqlite"), offset, 3600.0)
    with Vow(store=store) as vow:
        vow.register(sleeper)
        vow.register(quick)
        handle = vow.begin_run("sleeper/1", sleeper)
        try:
            wait_until(lambda: offset[0] == 3600.0, message="the clock to step after the sleep's commit")
            # Rounds of the engine after the one that armed the timer (right after that commit):
            assert vow.run("quick/1", quick) == 1
            assert vow.run("quick/2", quick) == 1
            assert not handle.done()
            assert vow.get("sleeper/1.1").state is State.PENDING
            assert attempts == ([] if what == "sleep" else [1])
        finally:
            offset[0] = 0.0
