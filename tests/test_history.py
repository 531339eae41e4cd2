"""A promise's history read from its records: the engine's back-off timers hold each failed attempt."""

from __future__ import annotations

import json

from vow import Context, Exponential, LeafContext, Throttled, TransientError, Vow, history
from vow.engine import BACKOFF_FUNC, backoff_id
from vow.engine.retries import THROTTLE_FUNC, throttle_id
from vow.history import failed_attempts, failure_text, held_back, rate_limit_waits
from vow.records import State


def test_the_history_reads_the_timers_the_engine_writes() -> None:
    assert (history.BACKOFF_FUNC, history.THROTTLE_FUNC) == (BACKOFF_FUNC, THROTTLE_FUNC)
    assert backoff_id("run/1.sms", 3) == "run/1.sms.backoff.3"
    assert throttle_id("run/1.sms", 2, 5) == "run/1.sms.throttle.2.5"


def test_every_failed_attempt_is_read_back_in_order_with_its_error() -> None:
    def flaky(ctx: LeafContext) -> int:
        if ctx.attempt < 3:
            raise TransientError(f"busy #{ctx.attempt}")
        return ctx.attempt

    def wf(ctx: Context):
        return (yield ctx.run(flaky).options(id=f"{ctx.id}.flaky", retry=Exponential(delay=0.001)))

    with Vow(store="memory:") as vow:
        assert vow.run("h/1", wf) == 3
        tree = vow.store.tree("h/1")
    by_id = {r.id: r for r in tree}
    attempts = failed_attempts(by_id["h/1.flaky"], tree)
    assert [(a.attempt, a.error, a.waited) for a in attempts] == [
        (1, "TransientError: busy #1", True), (2, "TransientError: busy #2", True)]
    assert all(a.retry_at is not None for a in attempts)
    assert [held_back(by_id[f"h/1.flaky.backoff.{n}"]) for n in (2, 3)] == [2, 3]
    assert by_id["h/1.flaky"].state is State.RESOLVED
    assert failed_attempts(by_id["h/1"], tree) == []  # the run itself was not retried


def test_a_stored_failure_reads_as_one_line_without_importing_its_type() -> None:
    stored = json.dumps({"type": "some_plugin_nobody_installed.errors.QuotaError", "message": "over quota"})
    assert failure_text(stored) == "QuotaError: over quota"
    assert failure_text("not json") == "not json"
    assert failure_text(None) == ""


def test_waits_for_a_rate_limit_are_read_back_per_attempt() -> None:
    calls: list[int] = []

    def limited(ctx: LeafContext) -> int:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            raise Throttled(wait=0.001)
        if len(calls) == 2:
            raise TransientError("busy")
        return ctx.attempt

    def wf(ctx: Context):
        return (yield ctx.run(limited).options(id=f"{ctx.id}.limited", retry=Exponential(delay=0.001)))

    with Vow(store="memory:") as vow:
        assert vow.run("w/1", wf) == 2
        tree = vow.store.tree("w/1")
    record = next(r for r in tree if r.id == "w/1.limited")
    assert [(w.attempt, w.n, w.waited) for w in rate_limit_waits(record, tree)] == [(1, 1, True)]
    assert [(a.attempt, a.error) for a in failed_attempts(record, tree)] == [(1, "TransientError: busy")]
