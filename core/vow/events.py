"""Lifecycle events delivered to observers (progress displays, tracing, metrics)."""

from __future__ import annotations

import contextlib
import enum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    from vow.leaf import LeafContext

class EventKind(str, enum.Enum):
    """What happened to a promise."""

    CREATED = "created"  # the promise was stored
    STARTED = "started"  # an attempt began (a leaf call, a workflow body)
    RETRY_SCHEDULED = "retry_scheduled"  # an attempt failed; the next one waits ``delay`` seconds
    SETTLED = "settled"  # the promise reached a settled state
    RESUMED = "resumed"  # a root workflow was picked up again from the store
    STOPPED = "stopped"  # this process stopped running a root without settling it (lease lost, client
    # closed, store failed): the run stays pending for another process to go on with

    def __str__(self) -> str:
        return self.value


@attrs.frozen(slots=True)
class Event:
    """One event. ``error`` is the failure's text for retries and rejections."""

    kind: EventKind
    id: str
    root: str
    parent: str | None
    func: str
    promise_kind: str
    attempt: int
    time: float
    state: str | None = None
    error: str | None = None
    delay: float | None = None
    idempotency_key: str = ""
    created_at: float | None = None
    """When the promise was stored: for a run's root (made here or resumed) and for a promise this
    process found in the store rather than made (a pending promise adopted on a replay); ``None`` for
    another promise it made (``time`` of its ``created`` event)."""


@runtime_checkable
class Observer(Protocol):
    """Receives events on the engine thread; must return quickly.

    An observer that wants only some kinds of event says so with a class attribute
    ``event_kinds = frozenset({EventKind.RETRY_SCHEDULED})``: the engine then never builds the
    others for it (a step costs less when no observer takes its events). Without one it gets
    every event.
    """

    def on_event(self, event: Event) -> None:
        """Handle one event."""


class LeafScope(Protocol):
    """An observer that also wants to run code around every leaf attempt defines ``leaf_scope``.

    ``leaf_scope(ctx)`` returns a context manager that the engine enters in the leaf's own
    thread (sync leaves) or task (``async def`` leaves) just before the call and exits just
    after it, so context variables it sets (a tracing span, a log context) are visible to the
    leaf's code and to the HTTP clients it uses.
    """

    def leaf_scope(self, ctx: LeafContext) -> contextlib.AbstractContextManager[Any]:
        """The context manager to run one leaf attempt in."""
