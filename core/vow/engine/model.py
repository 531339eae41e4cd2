"""What the engine keeps in memory for the runs it is stepping.

* :class:`PromiseNode` — the engine's record of one promise a workflow made, which is also the
  :class:`~vow.context.Handle` the workflow holds. A root keeps only the nodes still pending
  (``RootRun.live``): a settled node lives on only while the workflow holds its handle, so a
  workflow of a million steps needs memory for what is in flight, not for its history.
* :class:`WorkflowRun` — one execution of a generator (a root or a child workflow).
* :class:`RootRun` — one incarnation of a root workflow on this engine: its lease token, the
  callers waiting for it, the records found in the store when it was (re)started. A root whose
  commit is refused is dropped and replayed as a new incarnation; anything that still points at
  the old one (a timer, a late leaf result) sees ``done`` and does nothing.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any

from vow.context import Call, Handle, Options
from vow.records import Kind, PromiseRecord, State

__all__ = ["PromiseNode", "RootRun", "WorkflowRun"]

_NO_KWARGS: dict[str, Any] = {}  # shared by every call made without keyword arguments; never changed
_ENDING_TRIES = 3  # throws of _Stopped into a workflow that went on after it was closed
_log = logging.getLogger("vow.engine")


class _Stopped(BaseException):
    """Thrown into a workflow that caught GeneratorExit and went on, so it ends now: left suspended,
    Python would try to close it again when it is collected, and print a traceback from there."""


class PromiseNode(Handle):
    """One promise as the engine tracks it while its workflow runs; the workflow holds it as its
    :class:`~vow.context.Handle`."""

    __slots__ = ("id", "kind", "func", "state", "value", "error", "settled_at", "waiter", "more_waiters", "fn",
                 "args", "kwargs", "opts", "root", "run", "attempt", "key", "deadline", "child", "running", "tags",
                 "timer", "adopted", "due", "created_at")

    def __init__(self, id: str, kind: Kind, func: str, root: RootRun, run: WorkflowRun | None,
                 call: Call | None, attempt: int, key: str, deadline: float | None, tags: dict[str, str]) -> None:
        self.id = id
        self.kind = kind
        self.func = func
        self.state = State.PENDING
        self.value: Any = None
        self.error: BaseException | None = None
        self.settled_at = 0.0
        # Who waits for this promise: (run, what it waits on: this node or a combinator). Almost
        # always one run or none, so the first has a slot of its own and a list is made only for more.
        self.waiter: tuple[WorkflowRun, Any] | None = None
        self.more_waiters: list[tuple[WorkflowRun, Any]] | None = None
        # What the call asked for, not the Call itself: the Call dies with the workflow's step, so
        # a large fan-out keeps one object fewer per branch for the garbage collector to traverse.
        if call is None:
            self.fn: Callable[..., Any] | None = None
            self.args: tuple[Any, ...] = ()
            self.kwargs: dict[str, Any] = _NO_KWARGS
            self.opts: Options | None = None
        else:
            self.fn, self.args, self.opts = call.fn, call.args, call.opts
            self.kwargs = call.kwargs or _NO_KWARGS  # the call's own empty dict need not outlive it
        self.root = root
        self.run = run  # the workflow that made this promise (None for a root)
        self.attempt = attempt
        self.key = key
        self.deadline = deadline  # store-clock epoch seconds
        # A sleep made by this process: when it wakes on the monotonic clock, fixed when it was made,
        # so a wall-clock step between its commit and its timer moves nothing. None otherwise: a
        # sleep read from the store is timed by the store's clock when armed, and a timeout is the
        # store's to judge by its clock.
        self.due: float | None = None
        self.child: WorkflowRun | None = None  # the execution of a child workflow
        self.running = False  # a leaf attempt is out in the pool
        self.tags = tags
        self.timer: Any = None  # a timer to cancel when this settles
        self.adopted = False  # found pending in the store on a replay (its leaf may be in flight)
        self.created_at: float | None = None  # when stored, for a promise adopted from the store (events)

    def add_waiter(self, waiter: tuple[WorkflowRun, Any]) -> None:
        """``waiter`` is woken when this promise settles (the engine takes ``waiter`` and
        ``more_waiters`` then, in the order they came)."""
        if self.waiter is None:
            self.waiter = waiter
        elif self.more_waiters is None:
            self.more_waiters = [waiter]
        else:
            self.more_waiters.append(waiter)

    @property
    def parent_id(self) -> str | None:
        return self.run.id if self.run is not None else None

    def label(self) -> str:
        """How errors and logs name this promise: ``func (id)``."""
        return f"{self.func or self.kind.value} ({self.id})"


class WorkflowRun:
    """One execution of a generator function (a root or a child workflow)."""

    __slots__ = ("id", "root", "node", "fn", "args", "kwargs", "gen", "counter", "policy", "waiting",
                 "non_retryable", "patches")

    def __init__(self, node: PromiseNode, root: RootRun, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any], policy: Any, non_retryable: tuple[type[BaseException], ...] = ()) -> None:
        self.id = node.id
        self.root = root
        self.node = node
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.gen: Any = None
        self.counter = 0  # calls made so far: the n of the next child id "{id}.{n}"
        self.policy = policy
        self.waiting: Any = None  # the node or combinator it is blocked on
        self.non_retryable = non_retryable
        self.patches: dict[str, bool] | None = None  # ctx.patched(name)'s answer, once asked: the same all run long

    def close(self) -> None:
        """Stop this execution: the generator is closed and will not be stepped again."""
        gen, self.gen = self.gen, None
        self.waiting = None
        if gen is None:
            return
        try:
            gen.close()
            return
        except RuntimeError:  # it went on (caught GeneratorExit, yields in `finally`), or its cleanup raised
            if gen.gi_frame is None:
                return  # it ended: its cleanup's own error, nothing to stop

        except BaseException:  # noqa: BLE001 - it raised something else while closing: it has ended
            return
        _log.warning("workflow %r would not stop (it caught GeneratorExit, or yields in a finally block); "
                     "vow ended it. Let GeneratorExit through, and do no steps in finally blocks", self.id)
        for _ in range(_ENDING_TRIES):
            try:
                gen.throw(_Stopped)
            except BaseException:  # noqa: BLE001 - ended, by _Stopped or by what it raised instead
                return


class RootRun:
    """One incarnation of a root workflow on this engine."""

    __slots__ = ("id", "token", "futures", "stored", "live", "run", "args_text", "limit", "done", "unsaved",
                 "stamped")

    def __init__(self, id: str, token: int, stored: dict[str, PromiseRecord], limit: int | None,
                 args_text: str, futures: list[concurrent.futures.Future[Any]], since: float = 0.0) -> None:
        self.id = id
        self.token = token  # the lease's fencing token, sent with every commit
        self.futures = futures
        self.stored = stored  # records found in the store at (re)start, taken as the workflow meets them
        self.live: dict[str, PromiseNode] = {}  # pending promises by id
        self.run: WorkflowRun | None = None
        self.args_text = args_text
        self.limit = limit  # most leaves of this root in flight at once
        self.done = False  # finished, lost or replaced by a newer incarnation
        self.unsaved: list[Any] = []  # leaf outcomes applied this round, not yet in a committed batch
        # The latest time stored for this run (``since``: its root's), so what it stores next comes after
        # (see stamp).
        self.stamped = max(since, max((max(r.created_at, r.settled_at or 0.0) for r in stored.values()), default=0.0))

    def stamp(self, now: float) -> float:
        """``now`` as the time of a promise this run creates or settles: or, while the clock reads no
        later than the last time stored for the run (it stepped back), a microsecond after that one.

        A run's times then keep the order its promises were made and settled, whatever the wall
        clock does; fork and retry go by that order, and a store lists a tree by it.
        """
        if now <= self.stamped:
            now = self.stamped + 1e-6
        self.stamped = now
        return now

    def __repr__(self) -> str:
        return f"<RootRun {self.id} live={len(self.live)} done={self.done}>"
