"""A promise's history read from its records: the engine's back-off timers hold each failed attempt."""

from __future__ import annotations

import json

from vow import Context, Exponential, LeafContext, TransientError, Vow
from vow.engine import BACKOFF_FUNC, backoff_id
from vow.history import BACKOFF_FUNC as READ_AS
from vow.history import failed_attempts, failure_text, held_back
from vow.records import State


def test_the_history_reads_the_timers_the_engine_writes() -> None:
    assert READ_AS == BACKOFF_FUNC
    assert backoff_id("run/1.sms", 3) == "run/1.sms.backoff.3"


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
