"""What a promise went through, read from the store: every failed attempt with its error, and
every wait for a rate limit.

When attempt ``n`` of a promise fails and its policy retries it, the engine stores a durable
back-off timer ``{id}.backoff.{n+1}`` under the promise (kind ``sleep``, func :data:`BACKOFF_FUNC`):
created when attempt ``n`` failed, due when attempt ``n+1`` may start, settled when it starts, and
holding attempt ``n``'s stored failure as its ``args``. The last attempt's outcome is the promise's
own. So a promise's history is its back-off timers in order, then the promise — which is how
``vow show``, ``vow run``'s summary and the web console list every attempt's error, not only the
last. A leaf held back by a shared rate limit (:class:`~vow.errors.Throttled`) gets a timer
``{id}.throttle.{attempt}.{n}`` (func :data:`THROTTLE_FUNC`) for each wait; the same attempt then
starts again.

Nothing here imports an exception's module: a stored failure is read as text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import attrs

from vow.records import Kind, PromiseRecord, State
from vow.reserved import BACKOFF_FUNC, THROTTLE_FUNC

__all__ = ["BACKOFF_FUNC", "THROTTLE_FUNC", "FailedAttempt", "RateLimitWait", "failed_attempts", "failure_text",
           "held_back", "is_backoff", "is_engine_timer", "rate_limit_waits"]



@attrs.frozen
class FailedAttempt:
    """Attempt ``attempt`` of a promise failed with ``error``; the next could start at ``retry_at``."""

    attempt: int
    error: str  # the failure as one line: ``Type: message``
    failed_at: float  # when the back-off began
    retry_at: float | None  # when the next attempt was due
    waited: bool  # the back-off is over (the next attempt started, or the promise settled)


@attrs.frozen
class RateLimitWait:
    """Attempt ``attempt`` waited for a rate limit from ``began`` until ``until`` (its ``n``-th wait)."""

    attempt: int
    n: int
    began: float
    until: float | None
    waited: bool  # the wait is over


def failure_text(stored: str | None) -> str:
    """A failure as the store keeps it (JSON with ``type`` and ``message``) as one line,
    ``Type: message``, without importing the type; text that is no stored failure comes back as is."""
    try:
        payload = json.loads(stored) if stored else None
    except ValueError:
        return str(stored)
    if isinstance(payload, dict) and "type" in payload:
        return f"{str(payload['type']).rsplit('.', 1)[-1]}: {payload.get('message', '')}"
    return "" if payload is None else str(payload)


def is_backoff(record: PromiseRecord) -> bool:
    """Whether ``record`` is one of the engine's back-off timers (bookkeeping, not a step)."""
    return record.kind is Kind.SLEEP and record.func == BACKOFF_FUNC


def is_engine_timer(record: PromiseRecord) -> bool:
    """Whether ``record`` is a timer the engine keeps for a promise (a back-off or a rate-limit wait)."""
    return record.kind is Kind.SLEEP and record.func in (BACKOFF_FUNC, THROTTLE_FUNC)


def held_back(timer: PromiseRecord) -> int:
    """``n`` of a back-off timer ``{id}.backoff.{n}``: the attempt it holds back (0 if it names none)."""
    try:
        return int(timer.id.rsplit(".", 1)[1])
    except (IndexError, ValueError):
        return 0


def failed_attempts(record: PromiseRecord, children: Iterable[PromiseRecord]) -> list[FailedAttempt]:
    """Every attempt of ``record`` that failed and was retried, oldest first, from its back-off
    timers among ``children`` (its stored children). The attempt it ended on is the record's own."""
    timers = sorted((c for c in children if is_backoff(c) and c.parent == record.id), key=held_back)
    return [FailedAttempt(held_back(t) - 1, failure_text(t.args) if t.args else "", t.created_at, t.timeout,
                          t.settled or record.state is not State.PENDING)
            for t in timers if held_back(t) > 1]


def rate_limit_waits(record: PromiseRecord, children: Iterable[PromiseRecord]) -> list[RateLimitWait]:
    """Every wait of ``record`` for a rate limit, oldest first, from its timers among ``children``."""
    found = []
    for timer in children:
        if timer.kind is not Kind.SLEEP or timer.func != THROTTLE_FUNC or timer.parent != record.id:
            continue
        try:
            attempt, n = (int(part) for part in timer.id.rsplit(".", 2)[1:])
        except ValueError:
            continue
        found.append(RateLimitWait(attempt, n, timer.created_at, timer.timeout,
                                   timer.settled or record.state is not State.PENDING))
    return sorted(found, key=lambda w: (w.attempt, w.n))
