"""Deadlines survive a crash: a call whose timeout passed while no process ran it is not started again."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from vow import Context, LeafContext, Never, PromiseTimeoutError, State, Vow
from vow.stores.sqlite import SQLiteStore


def test_a_call_whose_deadline_passed_during_the_crash_is_timed_out_without_running(tmp_path: Path) -> None:
    path = tmp_path / "vow.sqlite"
    release = threading.Event()
    starts: list[float] = []

    def send(ctx: LeafContext) -> str:
        starts.append(time.time())
        release.wait(30)
        return "sent"

    def wf(ctx: Context):
        try:
            return (yield ctx.run(send).options(timeout=0.3, retry=Never()))
        except PromiseTimeoutError:
            return "timed out"

    first = Vow(store=f"sqlite:{path}")
    try:
        first.register(wf)
        first.begin_run("deadline/1", wf)
        deadline = time.monotonic() + 30
        while not starts:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        first.close()  # stops with the call in flight, as a crash would
    reader = SQLiteStore(path)
    record = reader.get("deadline/1.1")
    reader.close()
    while time.time() <= record.timeout:  # no process runs the workflow until its call's deadline has passed
        time.sleep(0.05)
    resumed_at = time.time()
    try:
        with Vow(store=f"sqlite:{path}") as second:
            second.register(wf)
            assert second.resume("deadline/1").result(timeout=30) == "timed out"
            assert second.get("deadline/1.1").state is State.TIMEDOUT
        assert [at for at in starts if at >= resumed_at] == [], "the timed-out call was started again"
    finally:
        release.set()
