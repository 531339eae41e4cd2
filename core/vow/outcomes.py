"""What a settled promise means to whoever waits on it: a value or an error, for one handle or
for a combinator (``all``, ``any``, ``first``, ``all_settled``), and for a caller's future.

Pure functions over handles and records, shared by the engine and the client.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

from vow import encoding
from vow.context import Combinator, Handle, Outcome
from vow.errors import CanceledError, PromiseTimeoutError, VowError
from vow.records import PromiseRecord, State


def outcome(handle: Handle) -> tuple[Any, BaseException | None]:
    if handle.state is State.RESOLVED:
        return handle.value, None
    return None, handle.error or error_for_state(handle)


def error_for_state(handle: Handle) -> BaseException:
    if handle.state is State.CANCELED:
        return CanceledError(f"{handle.func or handle.kind.value} ({handle.id}) was canceled")
    if handle.state is State.TIMEDOUT:
        return PromiseTimeoutError(f"{handle.func or handle.kind.value} ({handle.id}) timed out")
    return VowError(f"{handle.id} was rejected")


def combine(c: Combinator) -> tuple[bool, Any, BaseException | None]:
    """Evaluate a combinator from scratch (when it is yielded); sets its running counts."""
    handles = c.handles
    mode = c.mode
    c.pending = sum(1 for h in handles if h.state is State.PENDING)
    c.failed = sum(1 for h in handles if h.state is not State.PENDING and h.state is not State.RESOLVED)
    if mode == "all":
        if c.failed:
            first_failed = min((h for h in handles if h.state not in (State.PENDING, State.RESOLVED)),
                               key=lambda h: h.settled_at)
            return True, None, outcome(first_failed)[1]
        return _combine_result(c)
    if mode == "all_settled":
        return _combine_result(c)
    if not handles:
        return True, None, ValueError(f"ctx.{mode}() of no handles")
    settled = sorted((h for h in handles if h.state is not State.PENDING), key=lambda h: h.settled_at)
    if mode == "first":
        if not settled:
            return False, None, None
        return (True, *outcome(settled[0]))
    for h in settled:  # any: the first resolved; fails only when every branch failed
        if h.state is State.RESOLVED:
            return True, h.value, None
    if not c.pending:
        return True, None, outcome(settled[-1])[1]
    return False, None, None


def combine_update(c: Combinator, handle: Handle) -> tuple[bool, Any, BaseException | None]:
    """Account for one more settled branch of a waiting combinator."""
    c.pending -= 1
    ok = handle.state is State.RESOLVED
    mode = c.mode
    if mode == "all":
        if not ok:
            return True, None, outcome(handle)[1]
        return _combine_result(c)
    if mode == "all_settled":
        return _combine_result(c)
    if mode == "first":
        return (True, *outcome(handle))
    if ok:
        return True, handle.value, None
    c.failed += 1
    if not c.pending:
        return True, None, outcome(handle)[1]
    return False, None, None


def _combine_result(c: Combinator) -> tuple[bool, Any, BaseException | None]:
    if c.pending:
        return False, None, None
    if c.mode == "all":
        return True, [h.value for h in c.handles], None
    return True, [Outcome(h.id, h.state, h.value, None if h.state is State.RESOLVED else outcome(h)[1])
                  for h in c.handles], None


def fill_from_record(handle: Handle, record: PromiseRecord) -> None:
    handle.state = record.state
    handle.settled_at = record.settled_at or 0.0
    if record.state is State.RESOLVED:
        handle.value = encoding.decode(record.value)
    elif record.state is State.REJECTED:
        handle.error = encoding.decode_error(record.value)
    else:
        handle.error = error_for_state(handle)


def set_future_from_record(future: concurrent.futures.Future[Any], record: PromiseRecord) -> None:
    if future.done():
        return
    handle = Handle(record.id, record.kind, record.func)
    fill_from_record(handle, record)
    set_future_from_handle(future, handle)


def set_future_from_handle(future: concurrent.futures.Future[Any], handle: Handle | None) -> None:
    if handle is None or future.done():
        return
    value, exc = outcome(handle)
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)
