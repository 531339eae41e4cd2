"""What a settled promise means to whoever waits on it: a value or an error, for one promise or
for a combinator (``all``, ``any``, ``first``, ``all_settled``), and for a caller's future.

Pure functions over the engine's promise nodes and stored records, shared by the engine and the
client. Anything with the fields ``id``, ``kind``, ``func``, ``state``, ``value``, ``error`` and
``settled_at`` serves as a node.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Protocol

from vow import encoding
from vow.context import Combinator, Outcome
from vow.errors import CanceledError, PromiseTimeoutError, VowError
from vow.failures import FailureCodec
from vow.records import Kind, PromiseRecord, State

__all__ = ["combine", "combine_update", "fill_from_record", "outcome", "record_outcome", "set_future",
           "set_future_from_record"]


class Settled(Protocol):
    id: str
    kind: Kind
    func: str
    state: State
    value: Any
    error: BaseException | None
    settled_at: float


class _Node:
    """A settled promise rebuilt from its record, for a caller's future."""

    __slots__ = ("id", "kind", "func", "state", "value", "error", "settled_at")

    def __init__(self, record: PromiseRecord) -> None:
        self.id, self.kind, self.func = record.id, record.kind, record.func
        self.state = State.PENDING
        self.value: Any = None
        self.error: BaseException | None = None
        self.settled_at = 0.0


def outcome(node: Settled) -> tuple[Any, BaseException | None]:
    """``(value, None)`` for a resolved promise, ``(None, error)`` for any other settled one."""
    if node.state is State.RESOLVED:
        return node.value, None
    return None, node.error or error_for_state(node)


def error_for_state(node: Settled) -> BaseException:
    """The error a canceled or timed-out promise raises in whoever waits for it."""
    if node.state is State.CANCELED:
        return CanceledError(f"{node.func or node.kind.value} ({node.id}) was canceled")
    if node.state is State.TIMEDOUT:
        return PromiseTimeoutError(f"{node.func or node.kind.value} ({node.id}) timed out")
    return VowError(f"{node.id} was rejected")


def combine(c: Combinator) -> tuple[bool, Any, BaseException | None]:
    """Evaluate a combinator from scratch (when it is yielded); sets its running counts."""
    nodes = c.nodes
    mode = c.mode
    c.pending = sum(1 for n in nodes if n.state is State.PENDING)
    c.failed = sum(1 for n in nodes if n.state is not State.PENDING and n.state is not State.RESOLVED)
    if mode == "all":
        if c.failed:
            first_failed = min((n for n in nodes if n.state not in (State.PENDING, State.RESOLVED)),
                               key=lambda n: n.settled_at)
            return True, None, outcome(first_failed)[1]
        return _combine_result(c)
    if mode == "all_settled":
        return _combine_result(c)
    if not nodes:
        return True, None, ValueError(f"ctx.{mode}() of no handles")
    settled = sorted((n for n in nodes if n.state is not State.PENDING), key=lambda n: n.settled_at)
    if mode == "first":
        if not settled:
            return False, None, None
        return (True, *outcome(settled[0]))
    for n in settled:  # any: the first resolved; fails only when every branch failed
        if n.state is State.RESOLVED:
            return True, n.value, None
    if not c.pending:
        return True, None, outcome(settled[-1])[1]
    return False, None, None


def combine_update(c: Combinator, node: Settled) -> tuple[bool, Any, BaseException | None]:
    """Account for one more settled branch of a waiting combinator."""
    c.pending -= 1
    ok = node.state is State.RESOLVED
    mode = c.mode
    if mode == "all":
        if not ok:
            return True, None, outcome(node)[1]
        return _combine_result(c)
    if mode == "all_settled":
        return _combine_result(c)
    if mode == "first":
        return (True, *outcome(node))
    if ok:
        return True, node.value, None
    c.failed += 1
    if not c.pending:
        return True, None, outcome(node)[1]
    return False, None, None


def _combine_result(c: Combinator) -> tuple[bool, Any, BaseException | None]:
    if c.pending:
        return False, None, None
    if c.mode == "all":
        return True, [n.value for n in c.nodes], None
    return True, [Outcome(n.id, n.state, n.value, None if n.state is State.RESOLVED else outcome(n)[1])
                  for n in c.nodes], None


def fill_from_record(node: Settled, record: PromiseRecord, codec: FailureCodec) -> None:
    """Give ``node`` the outcome stored in ``record`` (decoded as a replay would decode it)."""
    node.state = record.state
    node.settled_at = record.settled_at or 0.0
    if record.state is State.RESOLVED:
        node.value = encoding.decode(record.value)
    elif record.state is State.REJECTED:
        node.error = codec.decode(record.value)
    elif record.value:  # a timeout or cancel stored with its own error text
        node.error = codec.decode(record.value)
    else:
        node.error = error_for_state(node)


def set_future_from_record(future: concurrent.futures.Future[Any], record: PromiseRecord,
                           codec: FailureCodec) -> None:
    """Complete ``future`` with the outcome stored in ``record`` (unless it is done already)."""
    if future.done():
        return
    node = _Node(record)
    fill_from_record(node, record, codec)
    set_future(future, node)


def record_outcome(record: PromiseRecord, codec: FailureCodec) -> tuple[Any, BaseException | None]:
    """:func:`outcome` of the settled promise stored in ``record``."""
    node = _Node(record)
    fill_from_record(node, record, codec)
    return outcome(node)


def set_future(future: concurrent.futures.Future[Any], node: Settled | None) -> None:
    """Complete ``future`` with ``node``'s outcome (unless it is done already)."""
    if node is None or future.done():
        return
    value, exc = outcome(node)
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)
