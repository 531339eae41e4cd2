"""The leaf runner: runs leaf calls off the engine thread and reports how they ended.

Synchronous leaves run on the engine thread itself while they prove quick
(:mod:`vow.engine.inline`), otherwise in a pool sized for I/O; ``async def`` leaves run on one
event loop thread.
Each finished attempt is encoded in the leaf's own thread (a value that cannot be stored fails that
attempt with :class:`~vow.errors.EncodeError` there, never in a shared commit) and reported to the
engine thread through ``report``. The runner keeps the leaves in flight by promise id, so a root
replayed from the store while a leaf of it runs adopts that attempt instead of starting it twice,
and it holds back leaves over the ``max_concurrency`` (per client) or a root's own limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from vow import encoding
from vow.engine.inline import InlineLeaves
from vow.engine.model import PromiseNode
from vow.errors import EncodeError
from vow.leaf import LeafContext, make_leaf_context
from vow.naming import MAX_KNOWN_FUNCTIONS, function_key, looked_up
from vow.pool import ThreadPool
from vow.records import State

__all__ = ["LEAF_ROOT", "LeafOutcome", "LeafRunner"]

_log = logging.getLogger("vow.leaves")
_PENDING = State.PENDING
_BLOCKED_AFTER = 1.0  # seconds the async leaves' event loop may run one step before it is reported blocked

LEAF_ROOT: contextvars.ContextVar[str | None] = contextvars.ContextVar("vow_leaf_root", default=None)
"""The root id of the leaf running in this thread or task (``None`` outside leaves): a leaf that
waits for its own run would wait for ever (:meth:`vow.engine.Engine.waiting`)."""

LeafOutcome = tuple[str, str, int, bool, Any, "str | None"]
"""``(promise id, root id, attempt, ok, value or exception, encoded value)`` as reported."""


class LeafRunner:
    """Starts leaf attempts within the concurrency limits and reports their outcomes."""

    def __init__(self, report: Callable[[LeafOutcome], None], *, max_threads: int, max_concurrency: int | None,
                 plugins: Any = None, store: Any = None,
                 relieve: Callable[[], None] | None = None) -> None:
        self._report = report
        self.pool = ThreadPool(max_threads)
        # without ``relieve`` (a way to move the engine off a leaf that blocks) every leaf runs in the pool
        self.inline = None if relieve is None else InlineLeaves(
            self._attempt_of, to_pool=self._to_pool, report=report, relieve=relieve)
        self._max = max_concurrency
        # observers' leaf scopes, set by the engine while it holds its client's catalog (every leaf runs then)
        self.scopes: tuple[Callable[[LeafContext], Any], ...] = ()
        self._plugins = plugins
        self._store = store
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Future[None]] = set()  # running async attempts (the loop keeps only weak refs)
        self._running: dict[str, int] = {}  # promise id -> attempt in flight
        self._per_root: dict[str, int] = {}  # attempts in flight per root, for the roots with a limit
        self._total = 0
        self._queued: deque[tuple[PromiseNode, int | None]] = deque()
        self._coroutine_fns: dict[Any, bool] = {}
        self._async_batch: list[tuple[LeafContext, PromiseNode]] = []  # async attempts to hand the loop at flush()

    def in_flight(self) -> int:
        """How many leaf attempts are out in the pool or the event loop now."""
        return self._total

    def running(self, promise_id: str) -> int | None:
        """The attempt of ``promise_id`` in flight, or ``None``."""
        return self._running.get(promise_id)

    def start(self, node: PromiseNode, root_limit: int | None) -> bool:
        """Start the current attempt of ``node`` now, or queue it behind a concurrency limit.

        Returns whether it started (a queued node starts from :meth:`finished` when room is made)."""
        if (self._max is not None and self._total >= self._max) or (
                root_limit is not None and self._per_root.get(node.root.id, 0) >= root_limit):
            self._queued.append((node, root_limit))
            return False
        self._launch(node, root_limit)
        return True

    def _launch(self, node: PromiseNode, root_limit: int | None) -> None:
        self._running[node.id] = node.attempt
        if root_limit is not None:  # counted per root only where a limit needs the count
            root = node.root.id
            self._per_root[root] = self._per_root.get(root, 0) + 1
        self._total += 1
        node.running = True
        fn = node.fn
        coroutine = looked_up(self._coroutine_fns, fn)  # found for a function that is its own key
        if coroutine is None:
            key = function_key(fn)
            coroutine = self._is_coroutine(fn, key)
        else:
            key = fn
        if coroutine:
            self._async_batch.append((self._context(node), node))
        elif self.inline is None or not self.inline.take(node, key):
            self._to_pool(node)

    def _context(self, node: PromiseNode) -> LeafContext:
        """The context of the current attempt of ``node``'s leaf."""
        run = node.run
        assert run is not None
        return make_leaf_context(node.id, node.attempt, node.key, node.root.id, run.id, node.func, node.deadline,
                                 node.tags, self._plugins, self._store, node.adopted)

    def _attempt_of(self, node: PromiseNode) -> LeafOutcome:
        return self._attempt(self._context(node), node)

    def _to_pool(self, node: PromiseNode) -> None:
        self.pool.submit(self._run_sync, self._context(node), node)

    def flush(self) -> None:
        """Hand the ``async def`` attempts started this round to the event loop, in one wake-up."""
        if self._async_batch:
            batch, self._async_batch = self._async_batch, []
            self._event_loop().call_soon_threadsafe(self._spawn, batch)

    def _spawn(self, batch: list[tuple[LeafContext, PromiseNode]]) -> None:
        for ctx, node in batch:  # on the event loop's thread
            task = asyncio.ensure_future(self._run_async(ctx, node))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def finished(self, promise_id: str, root_id: str) -> None:
        """Account for an attempt that ended, and start queued leaves that fit now."""
        if self._running.pop(promise_id, None) is None:
            return
        self._total -= 1
        left = self._per_root.pop(root_id, 0) - 1  # counted only for roots with a limit
        if left > 0:
            self._per_root[root_id] = left
        queued = self._queued
        if not queued:
            return
        for _ in range(len(queued)):
            if self._max is not None and self._total >= self._max:
                return
            node, root_limit = queued.popleft()
            if node.root.done or node.state is not _PENDING or node.running:
                continue  # settled (a timeout, a cancel) or its root stopped while it waited
            if root_limit is not None and self._per_root.get(node.root.id, 0) >= root_limit:
                queued.append((node, root_limit))
                continue
            self._launch(node, root_limit)

    # -- in the leaf's thread or task

    def _scoped(self, ctx: LeafContext, scopes: tuple[Callable[[LeafContext], Any], ...]) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        for scope in scopes:
            try:
                stack.enter_context(_Guarded(scope, scope(ctx)))
            except Exception:  # noqa: BLE001 - an observer must never break a leaf
                _log.warning("observer %r: leaf_scope failed on entering %s (%s)", _owner(scope), ctx.func, ctx.id,
                             exc_info=True)
        return stack

    def _run_sync(self, ctx: LeafContext, node: PromiseNode) -> None:
        inline = self.inline
        if inline is None:
            self._report(self._attempt(ctx, node))
            return
        began = time.perf_counter()
        outcome = self._attempt(ctx, node)
        took = time.perf_counter() - began
        self._report(outcome)
        inline.observe(function_key(node.fn), took)  # so a quick function goes back to the engine thread

    def _attempt(self, ctx: LeafContext, node: PromiseNode) -> LeafOutcome:
        """Run the leaf of ``node`` once, with ``ctx``; never raises (an exception is its outcome)."""
        fn = node.fn
        assert fn is not None
        token = LEAF_ROOT.set(ctx.root_id)
        try:
            scopes = self.scopes
            if scopes:
                with self._scoped(ctx, scopes):
                    result = _awaited(fn(ctx, *node.args, **node.kwargs))
            else:
                result = _awaited(fn(ctx, *node.args, **node.kwargs))
        except BaseException as exc:  # noqa: BLE001 - reported to the engine, which decides on a retry
            return (ctx.id, ctx.root_id, ctx.attempt, False, exc, None)
        finally:
            LEAF_ROOT.reset(token)
        return self._finish(ctx, result)

    async def _run_async(self, ctx: LeafContext, node: PromiseNode) -> None:
        fn = node.fn
        assert fn is not None
        LEAF_ROOT.set(ctx.root_id)  # in this task's own context
        try:
            scopes = self.scopes
            if scopes:
                with self._scoped(ctx, scopes):
                    result = await fn(ctx, *node.args, **node.kwargs)
            else:
                result = await fn(ctx, *node.args, **node.kwargs)
        except BaseException as exc:  # noqa: BLE001
            self._report((ctx.id, ctx.root_id, ctx.attempt, False, exc, None))
            return
        self._report(self._finish(ctx, result))

    def _finish(self, ctx: LeafContext, result: Any) -> LeafOutcome:
        try:
            value, text = encoding.normalize(result, what=lambda: f"the result of {ctx.func} ({ctx.id})")
        except Exception as exc:  # noqa: BLE001 - whatever it is, this attempt reports it: never silence
            if not isinstance(exc, EncodeError):
                exc = EncodeError(f"the result of {ctx.func} ({ctx.id}) cannot be stored: {type(exc).__name__}: {exc}")
            return (ctx.id, ctx.root_id, ctx.attempt, False, exc, None)
        return (ctx.id, ctx.root_id, ctx.attempt, True, value, text)

    # -- plumbing

    def _is_coroutine(self, fn: Any, key: Any) -> bool:
        """Whether ``fn`` is an ``async def`` function, learnt once per :func:`function_key`."""
        known = self._coroutine_fns.get(key)
        if known is None:
            if len(self._coroutine_fns) >= MAX_KNOWN_FUNCTIONS:
                self._coroutine_fns.clear()
            known = self._coroutine_fns[key] = inspect.iscoroutinefunction(fn) or (
                not inspect.isroutine(fn) and inspect.iscoroutinefunction(type(fn).__call__))
        return known

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=_run_until_stopped, args=(loop,), name="vow-async-leaves", daemon=True)
            thread.start()
            threading.Thread(target=_watch_loop, args=(loop, thread), name="vow-async-watchdog", daemon=True).start()
            self._loop = loop
        return self._loop

    def close(self) -> None:
        """Stop taking leaves; threads finish their current attempt and exit, and the event loop of
        ``async def`` leaves stops and is closed."""
        self.pool.close()
        if self.inline is not None:
            self.inline.close()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)


class _Guarded:
    """An observer's leaf scope that can neither fail the leaf on its way out (the leaf's work is done:
    a retry would do it twice) nor hide the leaf's own error."""

    __slots__ = ("_scope", "_cm")

    def __init__(self, scope: Any, cm: Any) -> None:
        self._scope = scope
        self._cm = cm

    def __enter__(self) -> None:
        self._cm.__enter__()

    def __exit__(self, *exc: Any) -> None:
        try:
            self._cm.__exit__(*exc)
        except Exception:  # noqa: BLE001 - an observer must never break a leaf
            _log.warning("observer %r: leaf_scope failed on exit", _owner(self._scope), exc_info=True)


def _owner(scope: Any) -> Any:
    """The observer a bound ``leaf_scope`` belongs to."""
    return getattr(scope, "__self__", scope)


def _awaited(result: Any) -> Any:
    """``result``, or its value when it is a coroutine: the leaf was an ``async def`` behind a plain
    decorator, which no check can tell from a plain function before it is called."""
    return asyncio.run(result) if inspect.iscoroutine(result) else result


def _run_until_stopped(loop: asyncio.AbstractEventLoop) -> None:
    """The async leaves' thread: run ``loop`` until :meth:`LeafRunner.close` stops it, then close it."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()  # attempts still running when the client closed: the run resumes them later
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


def _watch_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Warn, while it lasts, when an ``async def`` leaf blocks the event loop every async leaf shares
    (``time.sleep``, a blocking client): all the others wait for it, which looks like a hang."""
    beat = threading.Event()
    while True:
        beat.clear()
        try:
            loop.call_soon_threadsafe(beat.set)
        except RuntimeError:  # the loop is closed: the client closed
            return
        if beat.wait(_BLOCKED_AFTER):
            time.sleep(_BLOCKED_AFTER)
            continue
        if loop.is_closed() or not thread.is_alive():
            return
        frame = _blocking_coroutine(sys._current_frames().get(thread.ident or 0))
        where = "" if frame is None else (
            f" in {frame.f_code.co_qualname} ({os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno})")
        _log.warning("the event loop of async def leaves has been blocked for over %.0f s%s: every other async "
                     "leaf waits meanwhile; await instead of blocking, use asyncio.to_thread for blocking calls, "
                     "or make that leaf a plain def (it then runs in the thread pool)", _BLOCKED_AFTER, where)
        beat.wait()  # one warning per stall


def _blocking_coroutine(frame: Any) -> Any:
    """The innermost ``async def`` frame of the stack ending at ``frame`` (the leaf, or a coroutine it
    awaits), not counting vow's own; ``frame`` itself when there is none."""
    found = frame
    while found is not None and not (found.f_code.co_flags & inspect.CO_COROUTINE
                                     and found.f_code.co_filename != __file__):
        found = found.f_back
    return found if found is not None else frame
