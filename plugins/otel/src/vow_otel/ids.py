"""Trace and span ids derived from promise ids, so every process that runs a run agrees on them.

A run is resumed by re-running its workflow, maybe in another process on another machine, after
the first one was killed. If ids were random, the resumed half would start a new trace and the
spans of the first half would dangle under a parent nobody exported. Deriving them instead from
what vow already keeps durable with the run makes the resumed process continue the same trace:

* the trace id of a run is a hash of its root promise id and of the ``created_at`` stored with
  its root promise;
* the span id of a promise is a hash of its promise id (unique within a store, so within a run)
  and of that same ``created_at``.

The root id alone would not do: after ``vow prune`` deleted a finished run, its id may be used
again (``order/{{ input.order }}``, a webhook sent twice), and the new run would land in the old
run's trace with the old run's span ids. Its root is stored anew, at another time, so it gets
ids of its own; every process that resumes it reads the same time from the store (stores give
back the float they were given, bit for bit: the store contract checks it).

The OpenTelemetry SDK draws ids from its tracer provider's :class:`IdGenerator`, with no way to
pass one per span; :class:`PromiseIdGenerator` hands out the derived ids while the observer
starts a promise's span (:func:`promise_ids`) and random ids for every other span (HTTP client
spans, the application's own).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import struct
from collections.abc import Iterator

from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

_TRACE_SALT = b"vow trace\x00"
_SPAN_SALT = b"vow span\x00"
# With the root's created_at: other salts, then the time as 8 bytes, so no id text can make an
# input that one without a time makes too.
_RUN_TRACE_SALT = b"vow run trace\x00"
_RUN_SPAN_SALT = b"vow run span\x00"
_TIME = struct.Struct(">d")


def _hash(salt: bytes, text: str, size: int) -> int:
    value = int.from_bytes(hashlib.blake2b(salt + text.encode("utf-8"), digest_size=size).digest(), "big")
    return value or 1  # all zeros is the invalid id in W3C Trace Context


def trace_id_for(root_id: str, root_created_at: float | None = None) -> int:
    """The 128-bit trace id of the run whose root promise is ``root_id``.

    ``root_created_at`` is the ``created_at`` stored with that root promise: it tells a run from
    an earlier one under the same id that was pruned. Without it, the id is the one of the root
    id alone (what vow-otel derived before it took the time into account).
    """
    if root_created_at is None:
        return _hash(_TRACE_SALT, root_id, 16)
    return _hash(_RUN_TRACE_SALT + _TIME.pack(root_created_at), root_id, 16)


def span_id_for(promise_id: str, root_created_at: float | None = None) -> int:
    """The 64-bit span id of promise ``promise_id``, in the run whose root promise was stored at
    ``root_created_at`` (see :func:`trace_id_for`; ``None``: the id of the promise id alone)."""
    if root_created_at is None:
        return _hash(_SPAN_SALT, promise_id, 8)
    return _hash(_RUN_SPAN_SALT + _TIME.pack(root_created_at), promise_id, 8)


def traceparent(root_id: str, span_id: int, sampled: bool = True, root_created_at: float | None = None) -> str:
    """The W3C ``traceparent`` header a request made under span ``span_id`` of run ``root_id`` (whose
    root promise was stored at ``root_created_at``) carries."""
    return f"00-{trace_id_for(root_id, root_created_at):032x}-{span_id:016x}-{'01' if sampled else '00'}"


_next: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("vow_otel_next_ids", default=None)


@contextlib.contextmanager
def promise_ids(root_id: str, promise_id: str, root_created_at: float | None = None) -> Iterator[None]:
    """Within this block, the next span started takes the ids of ``promise_id`` in run ``root_id``
    (whose root promise was stored at ``root_created_at``)."""
    token = _next.set((trace_id_for(root_id, root_created_at), span_id_for(promise_id, root_created_at)))
    try:
        yield
    finally:
        _next.reset(token)


class PromiseIdGenerator(IdGenerator):
    """Derived ids for the spans vow opens for promises (see :func:`promise_ids`), random ids otherwise.

    The trace id is asked for only when a span has no parent, which for vow is the root promise.
    """

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        wanted = _next.get()
        return wanted[1] if wanted is not None else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        wanted = _next.get()
        return wanted[0] if wanted is not None else self._random.generate_trace_id()
