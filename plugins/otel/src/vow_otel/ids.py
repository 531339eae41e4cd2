"""Trace and span ids derived from promise ids, so every process that runs a run agrees on them.

A run is resumed by re-running its workflow, maybe in another process on another machine, after
the first one was killed. If ids were random, the resumed half would start a new trace and the
spans of the first half would dangle under a parent nobody exported. Deriving them instead from
the ids vow already keeps durable makes the resumed process continue the same trace:

* the trace id of a run is a hash of its root promise id;
* the span id of a promise is a hash of its promise id (unique within a store, so within a run).

The OpenTelemetry SDK draws ids from its tracer provider's :class:`IdGenerator`, with no way to
pass one per span; :class:`PromiseIdGenerator` hands out the derived ids while the observer
starts a promise's span (:func:`promise_ids`) and random ids for every other span (HTTP client
spans, the application's own).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from collections.abc import Iterator

from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

_TRACE_SALT = b"vow trace\x00"
_SPAN_SALT = b"vow span\x00"


def _hash(salt: bytes, text: str, size: int) -> int:
    value = int.from_bytes(hashlib.blake2b(salt + text.encode("utf-8"), digest_size=size).digest(), "big")
    return value or 1  # all zeros is the invalid id in W3C Trace Context


def trace_id_for(root_id: str) -> int:
    """The 128-bit trace id of the run whose root promise is ``root_id``."""
    return _hash(_TRACE_SALT, root_id, 16)


def span_id_for(promise_id: str) -> int:
    """The 64-bit span id of promise ``promise_id``."""
    return _hash(_SPAN_SALT, promise_id, 8)


def traceparent(root_id: str, span_id: int, sampled: bool = True) -> str:
    """The W3C ``traceparent`` header a request made under span ``span_id`` of run ``root_id`` carries."""
    return f"00-{trace_id_for(root_id):032x}-{span_id:016x}-{'01' if sampled else '00'}"


_next: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("vow_otel_next_ids", default=None)


@contextlib.contextmanager
def promise_ids(root_id: str, promise_id: str) -> Iterator[None]:
    """Within this block, the next span started takes the ids of ``promise_id`` in run ``root_id``."""
    token = _next.set((trace_id_for(root_id), span_id_for(promise_id)))
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
