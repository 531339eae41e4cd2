"""A leaf attempt starts only after the commit that stores it.

This is what makes a crash safe: if an attempt could start before its promise (or its attempt
number) is on disk, a crash at that moment would lose the record of an effect that happened,
and the restart would repeat an attempt number or run a call the store never heard of.

Commits are slowed down (every ``apply`` waits before writing) so that an attempt started too
early sees the store's old state, every time.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from vow import Constant, Context, LeafContext, TransientError, Vow
from vow.stores.memory import MemoryStore


class SlowCommits:
    """A memory store whose every commit waits ``delay`` seconds before it writes."""

    def __init__(self, delay: float = 0.05) -> None:
        self.inner = MemoryStore()
        self.url = self.inner.url
        self.delay = delay

    def apply(self, batch: Any) -> Any:
        time.sleep(self.delay)
        return self.inner.apply(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class SeenAtStart:
    """What the store held for each leaf attempt at the moment it started."""

    def __init__(self, store: SlowCommits) -> None:
        self.store = store
        self.lock = threading.Lock()
        self.seen: list[tuple[str, int, Any]] = []

    def look(self, ctx: LeafContext) -> None:
        record = self.store.inner.get(ctx.id)
        with self.lock:
            self.seen.append((ctx.id, ctx.attempt, None if record is None else (record.state.value, record.attempt)))


def test_every_branch_of_a_fan_out_starts_after_its_promise_is_stored() -> None:
    store = SlowCommits()
    seen = SeenAtStart(store)

    def branch(ctx: LeafContext, i: int) -> int:
        seen.look(ctx)
        return i

    with Vow(store=store) as vow:
        @vow.register
        def wf(ctx: Context):
            handles = []
            for i in range(5):
                handles.append((yield ctx.begin_run(branch, i)))
            return (yield ctx.all(handles))

        assert vow.run("fan/1", wf) == [0, 1, 2, 3, 4]
    assert sorted(seen.seen) == [(f"fan/1.{i}", 1, ("pending", 1)) for i in range(1, 6)]


def test_every_retry_starts_after_the_commit_that_records_its_attempt() -> None:
    delay = 0.0  # the back-off ends at once: the engine must still commit before it retries
    store = SlowCommits()
    seen = SeenAtStart(store)

    def flaky(ctx: LeafContext) -> int:
        seen.look(ctx)
        if ctx.attempt < 3:
            raise TransientError(f"attempt {ctx.attempt} fails")
        return ctx.attempt

    with Vow(store=store) as vow:
        @vow.register
        def wf(ctx: Context):
            return (yield ctx.run(flaky).options(retry=Constant(delay=delay, max_attempts=3)))

        assert vow.run("order/1", wf) == 3
    assert seen.seen == [("order/1.1", 1, ("pending", 1)), ("order/1.1", 2, ("pending", 2)),
                         ("order/1.1", 3, ("pending", 3))]
