"""Shared rate limits: a token bucket per channel or provider, kept in the store.

Slack takes about one message per second per channel, a Twilio long code one SMS per second: a
limit that each worker kept for itself would be broken as soon as two workers send. So the
bucket lives in the store (:meth:`vow.stores.base.Store.take_token`), and every worker sharing
the store takes its tokens from the same row.

Declared where a channel or an image provider is used::

    # a pipeline file: on one branch's options, or in defaults for every branch
    defaults:
      rate_limit: {per_second: 2}
    fan_out:
      - channel: slack
        options: {rate_limit: {per_second: 1, burst: 1}}

    # Python: the same key in the options of deliver / generate_image
    yield ctx.begin_run(deliver, "slack", message, {"rate_limit": {"per_second": 1}})

    # any leaf of your own: take a token from a bucket you name
    vow.ratelimit.take(ctx, "crm-api", per_second=5)

Each channel and provider has its own bucket (``channel:slack``, ``image:openai``) unless
``bucket:`` names another, so two branches over the same channel share one limit, and ``burst``
(default 1) is how many calls may go at once after a quiet spell. A rate is from one call a day
to a million a second, a burst from 1 to a million (:func:`check_rate`): anything else is a slip.

A call that finds the bucket empty does not wait in its thread: it raises
:class:`~vow.errors.Throttled` with the seconds until its turn (the calls of a process waiting
for one bucket take turns, a token's interval apart), and the engine holds the leaf back with a
durable timer and starts it again then, without counting a failed attempt. A
provider's answer that carries ``Retry-After`` (a 429) holds the shared bucket for that long too,
so every worker slows down, not only the one that was told.
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from vow.config import structure
from vow.errors import ConfigError, Throttled, TransientError, VowError
from vow.leaf import LeafContext
from vow.retry import MAX_RETRY_AFTER, retry_after_of

__all__ = ["MAX_BURST", "MAX_PER_SECOND", "MIN_PER_SECOND", "OPTION", "RateLimit", "bucket_store", "check_rate",
           "hold", "limited", "parse", "split_options", "take"]

OPTION = "rate_limit"
"""The key in a channel's or provider's options (and in a pipeline's ``defaults``) that holds its limit."""

JITTER = 0.2
"""A throttled call waits up to this fraction longer than the bucket says, so that the calls
waiting for one bucket do not all wake at the same instant and find it empty again."""


MIN_PER_SECOND = 1 / 86400
"""The slowest rate: one call a day. A slower one (1e-300) is a slip, and its first wait
(``1 / per_second`` seconds) would overflow every clock."""
MAX_PER_SECOND = 1_000_000
"""The fastest rate: a million calls a second, beyond any provider's limit (a faster one limits nothing)."""
MAX_BURST = 1_000_000
"""The largest burst: calls at once after a quiet spell (a bucket holds as many tokens)."""
_RANGE = "from 1/86400 (one a day) to 1000000"


def check_rate(per_second: Any, burst: Any) -> None:
    """Refuse a rate limit out of range with a :class:`~vow.errors.ConfigError` naming the key:
    ``per_second`` from :data:`MIN_PER_SECOND` to :data:`MAX_PER_SECOND`, ``burst`` a whole number
    from 1 to :data:`MAX_BURST`. The one rule for :class:`RateLimit` and :func:`take`."""
    for key, problem in (("per_second", _per_second_problem(per_second)), ("burst", _burst_problem(burst))):
        if problem is not None:
            raise ConfigError(problem, path=(key,))


def _per_second_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return f"expected a number of calls per second above 0, got {value!r}"
    if not math.isfinite(value):  # .nan is not <= 0 either: it meant no limit
        return f"expected a finite number of calls per second, got {value}"
    if not MIN_PER_SECOND <= value <= MAX_PER_SECOND:
        return f"expected a number of calls per second {_RANGE}, got {value!r}"
    return None


def _burst_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BURST:
        return f"expected a whole number of calls from 1 to {MAX_BURST}, got {value!r}"
    return None


def _positive(_instance: Any, _attribute: Any, value: Any) -> None:
    problem = _per_second_problem(value)
    if problem is not None:
        raise ValueError(problem)


def _burst(_instance: Any, _attribute: Any, value: Any) -> None:
    problem = _burst_problem(value)
    if problem is not None:
        raise ValueError(problem)


@attrs.frozen
class RateLimit:
    """At most ``per_second`` calls a second on average, ``burst`` at once, shared through the store.

    ``bucket`` names the token bucket (default: ``channel:NAME`` or ``image:NAME``); limits that
    name the same bucket share it.
    """

    per_second: float = attrs.field(validator=_positive)
    burst: int = attrs.field(default=1, validator=_burst)
    bucket: str | None = attrs.field(default=None, validator=attrs.validators.optional(
        attrs.validators.min_len(1)))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what a stored pipeline spec keeps)."""
        data: dict[str, Any] = {"per_second": self.per_second, "burst": self.burst}
        if self.bucket is not None:
            data["bucket"] = self.bucket
        return data


def parse(data: Mapping[str, Any] | RateLimit, *, where: str = OPTION) -> RateLimit:
    """A :class:`RateLimit` from ``{"per_second": 2, "burst": 1}``; a :class:`~vow.errors.ConfigError`
    naming the key otherwise."""
    if isinstance(data, RateLimit):
        return data
    return structure(RateLimit, data, where=where)


def split_options(options: Mapping[str, Any] | None, *, where: str = "options"
                  ) -> tuple[dict[str, Any] | None, RateLimit | None]:
    """``options`` without their ``rate_limit`` key (what the channel or provider itself takes),
    and the limit that key held."""
    if not options or OPTION not in options:
        return (dict(options) if options else None), None
    rest = {k: v for k, v in options.items() if k != OPTION}
    return (rest or None), parse(options[OPTION], where=f"{where}.{OPTION}")


def take(ctx: LeafContext, bucket: str, per_second: float, burst: int = 1) -> None:
    """Take one token from ``bucket`` for this call, or raise :class:`~vow.errors.Throttled` with
    the seconds to wait (call it from a leaf, before the call the limit protects); a rate out of range
    (see :func:`check_rate`) is a :class:`~vow.errors.ConfigError`."""
    check_rate(per_second, burst)
    store = bucket_store(ctx)
    wait = store.take_token(bucket, float(per_second), int(burst))
    if wait > 0:
        turn = _in_turn(store, bucket, ctx.id, float(per_second), wait)
        raise Throttled(f"rate limit {bucket!r} ({per_second:g}/s): this call may go in {turn:.3f}s", wait=turn)
    _took(store, bucket, ctx.id)


class _Line:
    """The calls of this process waiting for one bucket: when the next free turn is, and each one's turn."""

    __slots__ = ("next", "turns")

    def __init__(self) -> None:
        self.next = 0.0
        self.turns: dict[str, float] = {}


_lines: weakref.WeakKeyDictionary[Any, dict[str, _Line]] = weakref.WeakKeyDictionary()
_lines_lock = threading.Lock()
SPACING = 1.1
"""The turns of the calls waiting for one bucket are this many token intervals apart: a call takes
its token a little after it is due (a timer is never early), and the next one's comes an interval
after that."""
_FORGET = 60.0
"""Seconds after its turn that a call which never came back (canceled, timed out) is forgotten."""


def _in_turn(store: Any, bucket: str, call: str, per_second: float, wait: float) -> float:
    """How long call ``call``, told to wait ``wait`` seconds for ``bucket``, waits: until a turn of its own.

    The store says when its *next* token comes, and every call of this process waiting for the
    bucket was told the same: had they all waited that long, they would all wake together, one would
    take the token and the rest would wait again, round after round (n waits each for n branches,
    each a stored timer and a write on the bucket). So each waiting call gets the next free turn of
    the bucket in this process, a token's interval after the one before (on the monotonic clock);
    a call whose turn came and that found no token yet (its predecessor took its own late) is first
    in line and waits only what the store says. The limit itself is the store's: a call woken early
    only waits again."""
    now = time.monotonic()
    try:
        with _lines_lock:
            lines = _lines.setdefault(store, {})
            line = lines.get(bucket)
            if line is None:
                line = lines[bucket] = _Line()
            mine = line.turns.get(call)
            if mine is not None and mine <= now and wait < SPACING / per_second:  # its turn came: first in line
                line.turns[call] = now + wait
                return wait * (1 + JITTER * random.random())
            turn = max(now + wait, line.next)
            line.next = turn + SPACING / per_second
            line.turns[call] = turn
            if len(line.turns) > 1000:
                line.turns = {c: t for c, t in line.turns.items() if t > now - _FORGET}
    except TypeError:  # a store that cannot be weakly referenced: the store's wait, jittered
        return wait * (1 + JITTER * random.random())
    return turn - now


def _took(store: Any, bucket: str, call: str) -> None:
    """Call ``call`` took its token: it waits in no line for ``bucket`` any more. A call that had no
    turn and found a token free shows that the turns given before went unused (their calls were
    canceled, or timed out): the line starts again from the bucket."""
    with _lines_lock:
        try:
            line = _lines.get(store, {}).get(bucket)
        except TypeError:
            return
        if line is not None and line.turns.pop(call, None) is None:
            line.next = 0.0


def hold(ctx: LeafContext, bucket: str, seconds: float) -> None:
    """Give no token from ``bucket`` to anyone for ``seconds`` (the provider said ``Retry-After``)."""
    if seconds > 0:
        bucket_store(ctx).hold_bucket(bucket, float(seconds))


@contextlib.contextmanager
def limited(ctx: LeafContext, limit: RateLimit | None, default_bucket: str) -> Iterator[None]:
    """Run the body under ``limit`` (nothing to do for ``None``): take a token first (or raise
    :class:`~vow.errors.Throttled`); a :class:`~vow.errors.TransientError` with ``retry_after`` from
    the body holds the bucket that long before it propagates (one longer than
    :data:`vow.retry.MAX_RETRY_AFTER` holds nothing: its call fails)."""
    if limit is None:
        yield
        return
    bucket = limit.bucket or default_bucket
    take(ctx, bucket, limit.per_second, limit.burst)
    try:
        yield
    except TransientError as exc:
        seconds = retry_after_of(exc)
        # One longer than vow waits out fails its call (vow.retry.next_delay); held, it would stop the
        # bucket for every branch sharing it, for as long (1e20 s: for ever).
        if seconds and seconds <= MAX_RETRY_AFTER and not isinstance(exc, Throttled):
            hold(ctx, bucket, seconds)
        raise


# -- where the bucket is kept -----------------------------------------------------------------


def bucket_store(ctx: LeafContext) -> Any:
    """The store whose buckets this call takes tokens from: the store of the client running the
    leaf (``ctx.store``, given by the engine); a :class:`~vow.errors.VowError` saying how to give
    one to a context built by hand."""
    if ctx.store is None:
        raise VowError(f"{ctx.id}: this call is rate limited, and the buckets are kept in the store, but its "
                       "LeafContext has none: the engine gives it the client's; built by hand, pass "
                       "LeafContext(..., store=MemoryStore()) or another store")
    return ctx.store
