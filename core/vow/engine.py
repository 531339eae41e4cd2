"""The engine: one thread that runs workflows and makes every call a durable promise.

Each turn of the loop

1. takes every message waiting in the inbox (leaf results, starts, wake-ups) and fires due timers;
2. steps every workflow that can move, collecting the promises it creates and settles;
3. commits all of those writes in **one** store transaction (a group commit);
4. only then starts the leaves, timers and callers' results that depend on them.

A generator may run ahead of the commit because it has no effects of its own: its only way to
touch the world is through a leaf, and a leaf starts after the commit that stored its promise.
So a promise is always stored before its function runs, and a value reported to a caller is
always on disk first.

Ownership: a root workflow runs under a lease whose fencing token goes with every commit; if
another worker has taken the lease, the commit writes nothing and this worker stops the run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import inspect
import itertools
import logging
import queue
import threading
import time
from collections import deque
from typing import Any, Callable

from vow import encoding
from vow.context import Call, Combinator, Context, Handle
from vow.errors import (
    ArgumentMismatchError,
    EncodeError,
    LeaseLostError,
    NonDeterminismError,
    PromiseNotFoundError,
    PromiseTimeoutError,
    VowError,
)
from vow.events import Event, EventKind
from vow.outcomes import (
    combine,
    combine_update,
    fill_from_record,
    outcome,
    set_future_from_handle,
    set_future_from_record,
)
from vow.leaf import LeafContext
from vow.pool import ThreadPool
from vow.records import Batch, Kind, Lease, PromiseRecord, Settle, State
from vow.retry import DEFAULT_LEAF_POLICY, DEFAULT_WORKFLOW_POLICY, next_delay

_log = logging.getLogger("vow.engine")

BACKOFF_FUNC = "retry backoff"
"""The ``func`` of the durable timers that hold back a retry (ids ``{promise id}.backoff.{attempt}``)."""

# inbox message tags
_LEAF_DONE, _START, _WAKE, _CALL, _STOP = range(5)


class StartRequest:
    """A caller's request to run (or join) root workflow ``id``."""

    __slots__ = ("id", "name", "fn", "args", "kwargs", "args_text", "policy", "concurrency", "tags",
                 "future", "resume_only")

    def __init__(self, id: str, name: str, fn: Callable[..., Any] | None, args: tuple[Any, ...],
                 kwargs: dict[str, Any], args_text: str, policy: Any, concurrency: int | None,
                 tags: dict[str, str], resume_only: bool = False) -> None:
        self.id = id
        self.name = name
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.args_text = args_text
        self.policy = policy
        self.concurrency = concurrency
        self.tags = tags
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.resume_only = resume_only


class RootRun:
    """A root workflow this engine is running, with everything that lives and dies with it."""

    __slots__ = ("id", "lease", "futures", "stored", "handles", "inflight", "limit", "done", "run", "args_text")

    def __init__(self, id: str, lease: Lease, stored: dict[str, PromiseRecord], limit: int | None,
                 args_text: str) -> None:
        self.id = id
        self.args_text = args_text
        self.lease = lease
        self.futures: list[concurrent.futures.Future[Any]] = []
        self.stored = stored  # records found in the store when the run was resumed
        self.handles: dict[str, Handle] = {}
        self.inflight = 0
        self.limit = limit
        self.done = False
        self.run: WorkflowRun | None = None


class WorkflowRun:
    """One generator execution (a root or a child workflow)."""

    __slots__ = ("id", "root", "handle", "fn", "args", "kwargs", "gen", "counter", "policy", "waiting",
                 "non_retryable")

    def __init__(self, handle: Handle, root: RootRun, fn: Callable[..., Any], args: tuple[Any, ...] | list[Any],
                 kwargs: dict[str, Any], policy: Any, non_retryable: tuple[type[BaseException], ...] = ()) -> None:
        self.id = handle.id
        self.root = root
        self.handle = handle
        self.fn = fn
        self.args = tuple(args)
        self.kwargs = kwargs
        self.gen: Any = None
        self.counter = 0
        self.policy = policy
        self.waiting: Any = None
        self.non_retryable = non_retryable


class Engine:
    """Runs workflows for one :class:`vow.Vow` client on a dedicated thread."""

    def __init__(self, store: Any, *, owner: str, name_of: Callable[[Any], str],
                 lookup: Callable[[str], Any], observers: list[Any], max_threads: int,
                 max_concurrency: int | None, lease_ttl: float, poll_interval: float) -> None:
        self.store = store
        self.owner = owner
        self._name_of = name_of
        self._lookup = lookup
        self._observers = observers
        self._leaf_scopes = [o.leaf_scope for o in observers if callable(getattr(o, "leaf_scope", None))]
        self.pool = ThreadPool(max_threads)
        self._max_concurrency = max_concurrency
        self.lease_ttl = lease_ttl
        self._poll_interval = poll_interval
        self.inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._roots: dict[str, RootRun] = {}
        self._starts: list[StartRequest] = []
        self._remote: dict[str, list[StartRequest]] = {}  # roots another worker runs, polled
        self._watched: dict[str, Handle] = {}  # promises settled from outside, polled
        self._ready: deque[tuple[WorkflowRun, Any, BaseException | None]] = deque()
        self._batch = Batch()
        self._after: list[Callable[[], None]] = []
        self._to_dispatch: list[Handle] = []  # leaves to start once their promises are committed
        self._releases: list[Lease] = []
        self._queued: deque[Handle] = deque()  # leaves waiting for a concurrency slot
        self._inflight = 0
        self._timers: list[tuple[float, int, Callable[..., None], Any]] = []
        self._seq = itertools.count()
        self._poll_armed = False
        self._loop_thread: threading.Thread | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._lock = threading.Lock()
        self._generators: dict[Any, bool] = {}
        self._coroutines: dict[Any, bool] = {}

    # ------------------------------------------------------------------ public (any thread)
    def start(self) -> None:
        """Start the engine thread (idempotent)."""
        with self._lock:
            if self._loop_thread is None:
                self._loop_thread = threading.Thread(target=self._main, name="vow-engine", daemon=True)
                self._loop_thread.start()

    def submit(self, request: StartRequest) -> concurrent.futures.Future[Any]:
        """Run or join a root workflow; the future gets its result."""
        self.start()
        self.inbox.put((_START, request))
        return request.future

    def wake(self, ids: list[str]) -> None:
        """Tell the engine these promises may have been settled from outside."""
        if self._loop_thread is not None:
            self.inbox.put((_WAKE, ids))

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the engine thread."""
        self.start()
        self.inbox.put((_CALL, fn))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop; running roots stay pending in the store with their leases released."""
        thread = self._loop_thread
        if thread is None:
            self.pool.close()
            return
        self.inbox.put((_STOP,))
        thread.join(timeout)
        self.pool.close()
        if self._async_loop is not None:
            self._async_loop.call_soon_threadsafe(self._async_loop.stop)

    # ------------------------------------------------------------------ the loop
    def _main(self) -> None:
        try:
            self._loop()
        except BaseException:  # pragma: no cover - a bug in the engine must not hang callers
            _log.exception("vow engine crashed")
            self._fail_everything(VowError("the vow engine stopped after an internal error; see the log"))

    def _loop(self) -> None:
        inbox = self.inbox
        while True:
            timeout = None
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - time.time())
            try:
                msg = inbox.get(timeout=timeout) if timeout != 0.0 else inbox.get_nowait()
            except queue.Empty:
                msg = None
            while msg is not None:
                if msg[0] == _STOP:
                    self._shutdown()
                    return
                try:
                    self._handle(msg)
                except Exception:  # noqa: BLE001 - one bad message must not stop every workflow
                    _log.exception("vow engine: handling a message failed")
                try:
                    msg = inbox.get_nowait()
                except queue.Empty:
                    msg = None
            try:
                self._fire_timers()
                self._settle_round()
            except Exception:  # noqa: BLE001
                _log.exception("vow engine: a round failed")

    def _handle(self, msg: tuple[Any, ...]) -> None:
        tag = msg[0]
        if tag == _LEAF_DONE:
            self._on_leaf_done(msg[1], msg[2], msg[3], msg[4], msg[5])
        elif tag == _START:
            request: StartRequest = msg[1]
            root = self._roots.get(request.id)
            if root is not None and self._check_join(request, root):
                root.futures.append(request.future)
            elif root is None:
                self._starts.append(request)
        elif tag == _WAKE:
            self._refresh(msg[1])
        elif tag == _CALL:
            msg[1]()

    def _settle_round(self) -> None:
        while True:
            if self._starts:
                self._process_starts()
            while self._ready:
                run, value, exc = self._ready.popleft()
                self._step(run, value, exc)
            if self._batch or self._releases:
                self._commit()
            leaves, self._to_dispatch = self._to_dispatch, []
            for handle in leaves:
                self._dispatch(handle)
            after, self._after = self._after, []
            for action in after:
                action()
            if not (self._ready or self._starts or self._batch or self._after or self._to_dispatch):
                return

    # ------------------------------------------------------------------ timers
    def _timer(self, when: float, fn: Callable[[Any], None], arg: Any) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), fn, arg))

    def _fire_timers(self) -> None:
        timers = self._timers
        now = time.time()
        while timers and timers[0][0] <= now:
            _, _, fn, arg = heapq.heappop(timers)
            fn(arg)

    # ------------------------------------------------------------------ starting roots
    def _check_join(self, request: StartRequest, root: RootRun) -> bool:
        """Whether ``request`` may join the run of ``root`` here; if not, its future gets the reason."""
        if request.resume_only or root.run is None:
            return True
        error = mismatch_error(request, root.run.handle.func, root.args_text)
        if error is not None:
            request.future.set_exception(error)
            return False
        return True

    def _process_starts(self) -> None:
        requests, self._starts = self._starts, []
        try:
            found = self.store.get_many([r.id for r in requests if r.id not in self._roots])
        except Exception as exc:  # noqa: BLE001 - the store failed: these callers get the error, others go on
            _fail_requests(requests, exc)
            return
        fresh: dict[str, tuple[StartRequest, PromiseRecord]] = {}
        joiners: list[StartRequest] = []
        now = time.time()
        for req in requests:
            root = self._roots.get(req.id)
            if root is not None:
                if self._check_join(req, root):
                    root.futures.append(req.future)
                continue
            record = found.get(req.id)
            if record is not None:
                _guarded(req, self._start_existing, req, record)
            elif req.id in fresh:
                joiners.append(req)
            elif req.resume_only:
                req.future.set_exception(PromiseNotFoundError(f"no workflow with id {req.id!r}"))
            else:
                fresh[req.id] = (req, PromiseRecord(
                    req.id, State.PENDING, Kind.WORKFLOW, req.id, req.name, req.args_text, None, None, None,
                    req.id, 1, now, None, req.tags))
        if fresh:
            try:
                result = self.store.apply(Batch(creates=[rec for _, rec in fresh.values()]))
            except Exception as exc:  # noqa: BLE001 - nothing of this batch was stored
                _fail_requests([req for req, _ in fresh.values()] + joiners, exc)
                return
            created = []
            for req, record in fresh.values():
                existing = result.existing.get(req.id)
                if existing is not None:
                    _guarded(req, self._start_existing, req, existing)
                else:
                    created.append((req, record))
            if created:
                try:
                    leases = self.store.claim_many([req.id for req, _ in created], self.owner, self.lease_ttl)
                except Exception as exc:  # noqa: BLE001 - stored but unclaimed: a worker or a retry picks them up
                    _fail_requests([req for req, _ in created], exc)
                    created = []
                for req, record in created:
                    self._emit(EventKind.CREATED, record.id, record.id, None, record.func, Kind.WORKFLOW, 1)
                    lease = leases.get(req.id)
                    if lease is None:
                        self._wait_remote(req)
                    else:
                        _guarded(req, self._launch_root, req, record, lease, {})
        for req in joiners:
            root = self._roots.get(req.id)
            if root is not None and self._check_join(req, root):
                root.futures.append(req.future)
            elif root is None:
                self._wait_remote(req)

    def _start_existing(self, req: StartRequest, record: PromiseRecord) -> None:
        error = None if req.resume_only else mismatch_error(req, record.func, record.args)
        if error is not None:
            req.future.set_exception(error)
            return
        if record.settled:
            set_future_from_record(req.future, record)
            return
        lease = self.store.claim(req.id, self.owner, self.lease_ttl)
        if lease is None:
            self._wait_remote(req)
            return
        self._resume(req, record, lease)

    def _resume(self, req: StartRequest, record: PromiseRecord, lease: Lease) -> None:
        if req.fn is None:
            registered = self._lookup(record.func)
            if registered is None:
                self.store.release(lease)
                req.future.set_exception(VowError(
                    f"workflow {record.func!r} (id {record.id!r}) is not registered in this process; "
                    "register it with @vow.register before resuming"))
                return
            req.fn, req.policy, req.concurrency = registered.fn, registered.retry, registered.concurrency
            args, kwargs = encoding.decode_args(record.args)
            req.args, req.kwargs = tuple(args), kwargs
        tree = self.store.tree(record.id)
        current = next((r for r in tree if r.id == record.id), record)
        if current.settled:  # it finished between our read and our claim: answer from the store
            self.store.release(lease)
            set_future_from_record(req.future, current)
            return
        stored = {r.id: r for r in tree if r.id != record.id}
        self._emit(EventKind.RESUMED, record.id, record.id, None, record.func, Kind.WORKFLOW, record.attempt)
        self._launch_root(req, record, lease, stored)

    def _launch_root(self, req: StartRequest, record: PromiseRecord, lease: Lease,
                     stored: dict[str, PromiseRecord]) -> None:
        root = RootRun(record.id, lease, stored, req.concurrency, record.args)
        root.futures.append(req.future)
        handle = Handle(record.id, Kind.WORKFLOW, record.func)
        handle.root = root
        handle.attempt = record.attempt or 1
        handle.tags = dict(record.tags)
        run = WorkflowRun(handle, root, req.fn, req.args, req.kwargs, req.policy or DEFAULT_WORKFLOW_POLICY)
        handle.child_run = run
        root.run = run
        self._roots[record.id] = root
        self._start_workflow(run)
        if len(self._roots) == 1:
            self._timer(time.time() + self.lease_ttl / 3, self._renew_leases, None)

    def _begin_run(self, run: WorkflowRun) -> None:
        handle = run.handle
        ctx = Context(run.id, run.root.id, handle.parent_run.id if handle.parent_run else None, handle.attempt,
                      handle.tags)
        run.counter = 0
        run.waiting = None
        try:
            run.gen = run.fn(ctx, *run.args, **run.kwargs)
        except BaseException as exc:  # noqa: BLE001 - bad arguments fail the workflow like any error
            self._finish_run(run, False, exc)
            return
        if not inspect.isgenerator(run.gen):
            value, run.gen = run.gen, None
            self._finish_run(run, False, TypeError(
                f"workflow {handle.func!r} must be a generator function (use yield); it returned {value!r}"))
            return
        self._emit(EventKind.STARTED, run.id, run.root.id, ctx.parent_id, handle.func, Kind.WORKFLOW, handle.attempt)
        self._ready.append((run, None, None))

    def _wait_remote(self, req: StartRequest) -> None:
        self._remote.setdefault(req.id, []).append(req)
        self._arm_poll()

    # ------------------------------------------------------------------ stepping generators
    def _step(self, run: WorkflowRun, value: Any, exc: BaseException | None) -> None:
        gen = run.gen
        if gen is None or run.root.done:
            return
        while True:
            try:
                yielded = gen.send(value) if exc is None else gen.throw(exc)
            except StopIteration as stop:
                self._finish_run(run, True, stop.value)
                return
            except NonDeterminismError as error:
                self._abort_root(run.root, error)
                return
            except BaseException as error:  # noqa: BLE001 - the workflow's own failure
                self._finish_run(run, False, error)
                return
            value, exc = None, None
            if type(yielded) is Call:
                try:
                    handle = self._start_call(run, yielded)
                except NonDeterminismError as error:
                    self._abort_root(run.root, error)
                    return
                except (EncodeError, TypeError) as error:
                    exc = error
                    continue
                if not yielded.wait:
                    value = handle
                    continue
                yielded = handle
            if type(yielded) is Handle:
                if yielded.state is not State.PENDING:
                    value, exc = outcome(yielded)
                    continue
                run.waiting = yielded
                yielded.waiters.append((run, yielded))
                return
            if type(yielded) is Combinator:
                done, value, exc = combine(yielded)
                if done:
                    continue
                run.waiting = yielded
                for h in yielded.handles:
                    if h.state is State.PENDING:
                        h.waiters.append((run, yielded))
                return
            exc = TypeError(
                f"workflow {run.handle.func!r} yielded {yielded!r}; yield ctx.run(...), ctx.begin_run(...), "
                "ctx.sleep(...), ctx.promise(...), a handle, or ctx.all/any/first/all_settled(...)")

    def _start_call(self, run: WorkflowRun, call: Call) -> Handle:
        root = run.root
        run.counter += 1
        opts = call.opts
        cid = opts.id or f"{run.id}.{run.counter}"
        kind = call.kind
        fn = call.fn
        if kind is Kind.STEP:
            if fn is None or not callable(fn):
                raise TypeError(f"ctx.run/begin_run needs a function, got {fn!r}")
            if self._is_generator(fn):
                kind = Kind.WORKFLOW
            func = self._name_of(fn)
        else:
            func = ""
        handle = root.handles.get(cid)
        if handle is not None:
            if handle.func != func or handle.kind is not kind:
                raise NonDeterminismError(_nondeterminism(cid, handle.func or handle.kind.value, func or kind.value))
            return handle
        record = root.stored.pop(cid, None) if root.stored else None
        if record is not None:
            if record.func != func or record.kind is not kind:
                raise NonDeterminismError(_nondeterminism(cid, record.func or record.kind.value, func or kind.value))
            handle = self._adopt(run, call, record)
        else:
            handle = self._create(run, call, cid, kind, func)
        root.handles[cid] = handle
        return handle

    def _create(self, run: WorkflowRun, call: Call, cid: str, kind: Kind, func: str) -> Handle:
        root = run.root
        opts = call.opts
        now = time.time()
        args_text = encoding.encode_args(call.args, call.kwargs, what=f"{func} ({cid})") if call.fn else ""
        deadline = None
        if kind is Kind.SLEEP:
            deadline = now + (call.seconds or 0.0)
        elif opts.timeout is not None:
            deadline = now + opts.timeout
        record = PromiseRecord(cid, State.PENDING, kind, root.id, func, args_text, None, run.id, deadline,
                               opts.idempotency_key or cid, 1, now, None, opts.tags)
        self._batch.creates.append(record)
        self._batch.fences[root.id] = root.lease.token
        handle = self._handle_for(run, call, record)
        if self._observers:
            self._emit(EventKind.CREATED, cid, root.id, run.id, func, kind, 1, key=record.idempotency_key)
        self._launch(handle)
        return handle

    def _adopt(self, run: WorkflowRun, call: Call, record: PromiseRecord) -> Handle:
        handle = self._handle_for(run, call, record)
        if record.settled:
            fill_from_record(handle, record)
        else:
            self._launch(handle)
        return handle

    @staticmethod
    def _handle_for(run: WorkflowRun, call: Call, record: PromiseRecord) -> Handle:
        """The engine's handle on the promise ``record`` that ``run`` makes with ``call``."""
        handle = Handle(record.id, record.kind, record.func)
        handle.call = call
        handle.root = run.root
        handle.parent_run = run
        handle.key = record.idempotency_key or record.id
        handle.deadline = record.timeout
        handle.attempt = record.attempt or 1
        handle.tags = record.tags
        return handle

    def _launch(self, handle: Handle) -> None:
        kind = handle.kind
        if kind is Kind.WORKFLOW:
            call = handle.call
            policy = call.opts.retry or DEFAULT_WORKFLOW_POLICY
            child = WorkflowRun(handle, handle.root, call.fn, call.args, call.kwargs, policy, call.opts.non_retryable)
            handle.child_run = child
            self._start_workflow(child)
            return
        if kind is Kind.STEP:
            backoff = handle.root.stored.pop(_backoff_id(handle), None) if handle.attempt > 1 else None
            if backoff is not None and not backoff.settled:  # resumed during a retry back-off: wait it out
                self._after.append(lambda: self._timer(backoff.timeout or 0.0, self._end_backoff, handle))
            else:
                self._to_dispatch.append(handle)
        elif kind is Kind.SLEEP:
            self._after.append(lambda: self._timer(handle.deadline or 0.0, self._wake_sleep, handle))
            return
        elif kind is Kind.PROMISE:
            self._watched[handle.id] = handle
            self._after.append(self._arm_poll)
        if handle.deadline is not None:
            self._after.append(lambda: self._timer(handle.deadline or 0.0, self._on_deadline, handle))

    # ------------------------------------------------------------------ leaves
    def _dispatch(self, handle: Handle) -> None:
        root = handle.root
        if root.done or handle.state is not State.PENDING or handle.running:
            return
        if handle.deadline is not None and time.time() >= handle.deadline:
            self._on_deadline(handle)  # e.g. its timeout ran out while the process was down: never run it
            return
        if (self._max_concurrency is not None and self._inflight >= self._max_concurrency) or (
                root.limit is not None and root.inflight >= root.limit):
            self._queued.append(handle)
            return
        root.inflight += 1
        self._inflight += 1
        handle.running = True
        call = handle.call
        ctx = LeafContext(handle.id, handle.attempt, handle.key, root.id, handle.parent_run.id, handle.func,
                          handle.deadline, handle.tags, plugins=self._name_of.__self__.plugins)
        if self._observers:
            self._emit(EventKind.STARTED, handle.id, root.id, ctx.parent_id, handle.func, Kind.STEP, handle.attempt,
                       key=handle.key)
        if self._is_coroutine(call.fn):
            asyncio.run_coroutine_threadsafe(self._run_async_leaf(handle, ctx, call), self._loop_for_async())
        else:
            self.pool.submit(self._run_sync_leaf, handle, ctx, call)

    def _run_sync_leaf(self, handle: Handle, ctx: LeafContext, call: Call) -> None:
        try:
            if self._leaf_scopes:
                with contextlib.ExitStack() as scopes:
                    for scope in self._leaf_scopes:
                        scopes.enter_context(scope(ctx))
                    result = call.fn(ctx, *call.args, **call.kwargs)
            else:
                result = call.fn(ctx, *call.args, **call.kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported to the engine, which decides on retry
            self.inbox.put((_LEAF_DONE, handle, ctx.attempt, False, exc, None))
            return
        self._report(handle, ctx, result)

    async def _run_async_leaf(self, handle: Handle, ctx: LeafContext, call: Call) -> None:
        try:
            if self._leaf_scopes:
                with contextlib.ExitStack() as scopes:
                    for scope in self._leaf_scopes:
                        scopes.enter_context(scope(ctx))
                    result = await call.fn(ctx, *call.args, **call.kwargs)
            else:
                result = await call.fn(ctx, *call.args, **call.kwargs)
        except BaseException as exc:  # noqa: BLE001
            self.inbox.put((_LEAF_DONE, handle, ctx.attempt, False, exc, None))
            return
        self._report(handle, ctx, result)

    def _report(self, handle: Handle, ctx: LeafContext, result: Any) -> None:
        try:
            value, text = encoding.normalize(result, what=f"the result of {handle.func} ({handle.id})")
        except EncodeError as exc:
            self.inbox.put((_LEAF_DONE, handle, ctx.attempt, False, exc, None))
            return
        self.inbox.put((_LEAF_DONE, handle, ctx.attempt, True, value, text))

    def _loop_for_async(self) -> asyncio.AbstractEventLoop:
        if self._async_loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="vow-async-leaves", daemon=True).start()
            self._async_loop = loop
        return self._async_loop

    def _on_leaf_done(self, handle: Handle, attempt: int, ok: bool, value: Any, text: str | None) -> None:
        root = handle.root
        if handle.running:
            handle.running = False
            root.inflight -= 1
            self._inflight -= 1
            if self._queued:
                self._drain_queued()
        if root.done or handle.state is not State.PENDING or attempt != handle.attempt:
            return  # a late answer for a promise that settled (timeout, cancel) or was retried
        if ok:
            self._settle(handle, State.RESOLVED, value, None, text)
            return
        error: BaseException = value
        call = handle.call
        delay = None
        if not isinstance(error, EncodeError):
            delay = next_delay(call.opts.retry or DEFAULT_LEAF_POLICY, attempt, error, call.opts.non_retryable)
        now = time.time()
        if delay is not None and (handle.deadline is None or now + delay < handle.deadline):
            handle.attempt = attempt + 1
            self._store_backoff(handle, now + delay)
            if self._observers:
                self._emit(EventKind.RETRY_SCHEDULED, handle.id, root.id, handle.parent_run.id, handle.func,
                           Kind.STEP, attempt, error=_describe(error), delay=delay, key=handle.key)
            _log.info("%s failed on attempt %d (%s); retrying in %.2fs", handle.id, attempt, _describe(error), delay)
            self._timer(now + delay, self._end_backoff, handle)
            return
        self._settle(handle, State.REJECTED, None, error, encoding.encode_error(error))

    def _store_backoff(self, handle: Handle, until: float) -> None:
        """Record the next attempt number and, as a durable timer, when it may start: a crash
        cannot cut a back-off (or a provider's Retry-After) short."""
        root = handle.root
        backoff = _backoff_id(handle)
        self._batch.attempts[handle.id] = handle.attempt
        self._batch.creates.append(PromiseRecord(
            backoff, State.PENDING, Kind.SLEEP, root.id, BACKOFF_FUNC, "", None, handle.id, until, backoff, 1,
            time.time(), None, {}))
        self._batch.fences[root.id] = root.lease.token

    def _end_workflow_backoff(self, run: WorkflowRun) -> None:
        handle = run.handle
        if handle.state is not State.PENDING or run.root.done:
            return
        self._batch.settles.append(Settle(_backoff_id(handle), State.RESOLVED, "null", time.time()))
        self._batch.fences[run.root.id] = run.root.lease.token
        self._begin_run(run)

    def _start_workflow(self, run: WorkflowRun) -> None:
        """Begin a workflow's body, unless it is resumed inside a back-off: then once that ends."""
        handle = run.handle
        backoff = run.root.stored.pop(_backoff_id(handle), None) if handle.attempt > 1 else None
        if backoff is not None and not backoff.settled:
            self._timer(backoff.timeout or 0.0, self._end_workflow_backoff, run)
        else:
            self._begin_run(run)

    def _end_backoff(self, handle: Handle) -> None:
        if handle.state is not State.PENDING or handle.root.done:
            return
        self._batch.settles.append(Settle(_backoff_id(handle), State.RESOLVED, "null", time.time()))
        self._batch.fences[handle.root.id] = handle.root.lease.token
        self._to_dispatch.append(handle)  # after the commit that records this attempt

    def _drain_queued(self) -> None:
        for _ in range(len(self._queued)):
            if self._max_concurrency is not None and self._inflight >= self._max_concurrency:
                return
            handle = self._queued.popleft()
            self._dispatch(handle)

    def _wake_sleep(self, handle: Handle) -> None:
        if handle.state is State.PENDING and not handle.root.done:
            self._settle(handle, State.RESOLVED, None, None, "null")

    def _on_deadline(self, handle: Handle) -> None:
        if handle.state is State.PENDING and not handle.root.done:
            error = PromiseTimeoutError(f"{handle.func or handle.kind.value} ({handle.id}) timed out")
            self._settle(handle, State.TIMEDOUT, None, error, encoding.encode_error(error))

    # ------------------------------------------------------------------ settling
    def _settle(self, handle: Handle, state: State, value: Any, error: BaseException | None, text: str | None) -> None:
        now = time.time()
        handle.state = state
        handle.value = value
        handle.error = error
        handle.settled_at = now
        root = handle.root
        self._batch.settles.append(Settle(handle.id, state, text, now))
        self._batch.fences[root.id] = root.lease.token
        if handle.kind is Kind.PROMISE:
            self._watched.pop(handle.id, None)
        if self._observers:
            self._emit(EventKind.SETTLED, handle.id, root.id, handle.parent_run.id if handle.parent_run else None,
                       handle.func, handle.kind, handle.attempt, state=state.value,
                       error=_describe(error) if error is not None else None)
        if handle.id == root.id:
            self._finish_root(root)
        else:
            self._wake_waiters(handle)

    def _wake_waiters(self, handle: Handle) -> None:
        waiters = handle.waiters
        if not waiters:
            return
        handle.waiters = []
        for run, awaited in waiters:
            if run.waiting is not awaited or run.root.done:
                continue
            if awaited is handle:
                value, exc = outcome(handle)
            else:
                done, value, exc = combine_update(awaited, handle)
                if not done:
                    continue
            run.waiting = None
            self._ready.append((run, value, exc))

    def _finish_run(self, run: WorkflowRun, ok: bool, value: Any) -> None:
        handle = run.handle
        run.gen = None
        if ok:
            try:
                value, text = encoding.normalize(value, what=f"the result of workflow {handle.func} ({handle.id})")
            except EncodeError as exc:
                ok, value = False, exc
            else:
                self._settle(handle, State.RESOLVED, value, None, text)
                return
        error: BaseException = value
        delay = None if isinstance(error, EncodeError) else next_delay(run.policy, handle.attempt, error,
                                                                       run.non_retryable)
        if delay is not None:
            handle.attempt += 1
            self._store_backoff(handle, time.time() + delay)
            if self._observers:
                self._emit(EventKind.RETRY_SCHEDULED, handle.id, run.root.id, None, handle.func, Kind.WORKFLOW,
                           handle.attempt - 1, error=_describe(error), delay=delay)
            self._timer(time.time() + delay, self._end_workflow_backoff, run)
            return
        self._settle(handle, State.REJECTED, None, error, encoding.encode_error(error))

    def _finish_root(self, root: RootRun) -> None:
        root.done = True
        handle = root.run.handle if root.run else None
        now = time.time()
        for child in root.handles.values():  # branches nobody waits for any more (after first/any)
            if child.state is State.PENDING:
                child.state = State.CANCELED
                self._batch.settles.append(Settle(child.id, State.CANCELED, None, now))
                self._watched.pop(child.id, None)
        self._releases.append(root.lease)

        def report() -> None:
            if self._roots.get(root.id) is not root:
                return  # its commit failed or its lease was lost: the value is not on disk, say nothing
            del self._roots[root.id]
            for future in root.futures:
                if not future.done():
                    set_future_from_handle(future, handle)

        self._after.append(report)

    def _abort_root(self, root: RootRun, error: BaseException) -> None:
        """Stop running ``root`` here without settling it: its stored state stays as it was."""
        if self._roots.get(root.id) is not root:
            return
        root.done = True
        del self._roots[root.id]
        _drop_writes(self._batch, [root])
        self._releases.append(root.lease)
        _log.warning("workflow %s stopped: %s", root.id, error)
        for future in root.futures:
            if not future.done():
                future.set_exception(error)

    # ------------------------------------------------------------------ committing
    def _commit(self) -> None:
        batch, self._batch = self._batch, Batch()
        releases, self._releases = self._releases, []
        result = None
        for _ in range(3):
            if not batch:
                break
            try:
                result = self.store.apply(batch)
                break
            except LeaseLostError as exc:  # those roots are someone else's now: drop their writes, keep the rest
                lost_ids = set(getattr(exc, "roots", ()) or batch.fences)
                lost = [root for rid in lost_ids if (root := self._roots.get(rid)) is not None]
                _drop_writes(batch, lost, lost_ids)
                for root in lost:
                    self._lose_root(root)
            except Exception as exc:  # noqa: BLE001 - the store failed: nothing of this batch is durable
                _log.exception("store commit failed")
                for rid in list(batch.fences):
                    root = self._roots.get(rid)
                    if root is not None:
                        self._abort_root(root, exc)
                releases += self._releases
                self._releases = []
                break
        if result is not None:
            for record in result.existing.values():
                self._adopt_existing(record)
            for record in result.conflicts.values():
                self._adopt_conflict(record)
        if releases:
            try:
                self.store.release_many(releases)
            except Exception:  # noqa: BLE001 - an unreleased lease only delays a takeover until it expires
                _log.warning("could not release the leases on %s", [x.root for x in releases], exc_info=True)

    def _adopt_existing(self, record: PromiseRecord) -> None:
        root = self._roots.get(record.root)
        handle = root.handles.get(record.id) if root else None
        if handle is None or not record.settled or handle.state is not State.PENDING:
            return
        fill_from_record(handle, record)
        self._wake_waiters(handle)

    def _adopt_conflict(self, record: PromiseRecord) -> None:
        """Someone else settled this promise first (``vow cancel``); the stored outcome wins."""
        root = self._roots.get(record.root)
        if root is None:
            return
        if record.id == root.id:
            for future in root.futures:
                if not future.done():
                    set_future_from_record(future, record)
            root.futures.clear()
            return
        handle = root.handles.get(record.id)
        if handle is not None:
            fill_from_record(handle, record)

    def _lose_root(self, root: RootRun) -> None:
        """Another worker holds the lease now: stop here and wait for its result."""
        root.done = True
        self._roots.pop(root.id, None)
        _log.warning("lost the lease on %s to another worker; waiting for its result", root.id)
        for future in root.futures:
            req = StartRequest(root.id, root.run.handle.func if root.run else "", None, (), {}, "", None, None, {},
                               resume_only=True)
            req.future = future
            self._wait_remote(req)

    def _renew_leases(self, _: Any) -> None:
        if not self._roots:
            return
        leases = [root.lease for root in self._roots.values()]
        try:
            kept = {lease.root: lease for lease in self.store.renew(leases, self.lease_ttl)}
        except Exception:  # noqa: BLE001 - try again next round; the lease is still valid for a while
            _log.warning("lease renewal failed", exc_info=True)
            kept = {lease.root: lease for lease in leases}
        for root in list(self._roots.values()):
            lease = kept.get(root.id)
            if lease is None:
                self._lose_root(root)
            else:
                root.lease = lease
        self._timer(time.time() + self.lease_ttl / 3, self._renew_leases, None)

    # ------------------------------------------------------------------ outside settlement and remote roots
    def _arm_poll(self) -> None:
        if not self._poll_armed and (self._remote or self._watched):
            self._poll_armed = True
            self._timer(time.time() + self._poll_interval, self._poll, None)

    def _poll(self, _: Any) -> None:
        self._poll_armed = False
        ids = list(self._remote) + list(self._watched)
        if not ids:
            return
        try:
            self._apply_outside(self.store.get_many(ids))
        except Exception:  # noqa: BLE001 - try again next poll; waiters must not be dropped
            _log.warning("polling the store failed", exc_info=True)
        finally:
            self._arm_poll()

    def _refresh(self, ids: list[str]) -> None:
        relevant = [i for i in ids if i in self._watched or i in self._remote or i in self._roots
                    or any(i in r.handles for r in self._roots.values())]
        if relevant:
            self._apply_outside(self.store.get_many(relevant))

    def _apply_outside(self, found: dict[str, PromiseRecord]) -> None:
        for rid, record in found.items():
            handle = self._watched.get(rid)
            if handle is not None and (handle.root.done or handle.state is not State.PENDING):
                del self._watched[rid]  # its run ended here: stop watching (and holding) it
            elif handle is not None and record.settled:
                del self._watched[rid]
                fill_from_record(handle, record)
                self._wake_waiters(handle)
            if rid in self._remote:
                if record.settled:
                    for req in self._remote.pop(rid):
                        set_future_from_record(req.future, record)
                else:
                    lease = self.store.claim(rid, self.owner, self.lease_ttl)
                    if lease is not None:
                        waiting = self._remote.pop(rid)
                        first = waiting[0]
                        _guarded(first, self._resume, first, record, lease)
                        root = self._roots.get(rid)
                        for other in waiting[1:]:
                            if root is not None:
                                root.futures.append(other.future)
            root = self._roots.get(rid)
            if root is not None and record.settled and rid == root.id:
                self._stop_settled_root(root, record)
                continue
            for root in list(self._roots.values()):
                child = root.handles.get(rid)
                if child is not None and record.settled and child.state is State.PENDING:
                    fill_from_record(child, record)
                    self._wake_waiters(child)

    def _stop_settled_root(self, root: RootRun, record: PromiseRecord) -> None:
        root.done = True
        self._roots.pop(root.id, None)
        self._releases.append(root.lease)
        for future in root.futures:
            if not future.done():
                set_future_from_record(future, record)

    # ------------------------------------------------------------------ shutdown
    def _shutdown(self) -> None:
        self._settle_round()
        error = VowError("the vow client was closed; the workflow stays pending and resumes on the next start")
        while True:  # starts that raced with the close: answer them rather than leave them waiting
            try:
                msg = self.inbox.get_nowait()
            except queue.Empty:
                break
            if msg[0] == _START:
                self._starts.append(msg[1])
        _fail_requests(self._starts, error)
        self._starts = []
        for root in list(self._roots.values()):
            root.done = True
            try:
                self.store.release(root.lease)
            except Exception:  # noqa: BLE001
                pass
            for future in root.futures:
                if not future.done():
                    future.set_exception(error)
        self._roots.clear()
        for requests in self._remote.values():
            for req in requests:
                if not req.future.done():
                    req.future.set_exception(error)
        self._remote.clear()

    def _fail_everything(self, error: BaseException) -> None:
        _fail_requests(self._starts, error)
        for root in self._roots.values():
            for future in root.futures:
                if not future.done():
                    future.set_exception(error)
        for requests in self._remote.values():
            for req in requests:
                if not req.future.done():
                    req.future.set_exception(error)

    # ------------------------------------------------------------------ helpers
    def _is_generator(self, fn: Any) -> bool:
        known = self._generators.get(fn)
        if known is None:
            known = self._generators[fn] = inspect.isgeneratorfunction(fn)
        return known

    def _is_coroutine(self, fn: Any) -> bool:
        known = self._coroutines.get(fn)
        if known is None:
            known = self._coroutines[fn] = inspect.iscoroutinefunction(fn)
        return known

    def _emit(self, kind: EventKind, id: str, root: str, parent: str | None, func: str, promise_kind: Kind,
              attempt: int, *, state: str | None = None, error: str | None = None, delay: float | None = None,
              key: str = "") -> None:
        if not self._observers:
            return
        event = Event(kind, id, root, parent, func, promise_kind.value, attempt, time.time(), state, error, delay,
                      key)
        for observer in self._observers:
            try:
                observer.on_event(event)
            except Exception:  # noqa: BLE001 - an observer must never break a workflow
                _log.warning("observer %r failed on %s", observer, kind, exc_info=True)


def mismatch_error(req: StartRequest, func: str, args_text: str) -> VowError | None:
    if func != req.name:
        return NonDeterminismError(f"workflow id {req.id!r} belongs to workflow {func!r}, not {req.name!r}")
    if args_text != req.args_text:
        return ArgumentMismatchError(
            f"workflow id {req.id!r} was started with arguments {args_text}; starting it again with different "
            f"arguments {req.args_text} is not allowed (use a new id, or the same arguments to join the run)")
    return None


def _fail_requests(requests: list[StartRequest], error: BaseException) -> None:
    for req in requests:
        if not req.future.done():
            req.future.set_exception(error)


def _guarded(req: StartRequest, fn: Callable[..., None], *args: Any) -> None:
    """Run a step of starting ``req``; if the store fails, that caller gets the error and the engine goes on."""
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001
        _log.warning("starting %s failed: %s", req.id, exc)
        if not req.future.done():
            req.future.set_exception(exc)


def _backoff_id(handle: Handle) -> str:
    """The durable timer that holds back attempt ``handle.attempt`` of a leaf."""
    return f"{handle.id}.backoff.{handle.attempt}"


def _drop_writes(batch: Batch, roots: list[RootRun], root_ids: set[str] | None = None) -> None:
    """Take every write of ``roots`` out of ``batch``: their creates, settles, attempts and fences,
    including children with ids of their own and their back-off timers."""
    root_ids = root_ids if root_ids is not None else {root.id for root in roots}
    owned = set(root_ids)
    for root in roots:
        owned.update(root.handles)

    def theirs(pid: str) -> bool:
        return pid in owned or pid.partition(".backoff.")[0] in owned

    batch.creates = [r for r in batch.creates if r.root not in root_ids]
    batch.settles = [st for st in batch.settles if not theirs(st.id)]
    batch.attempts = {k: v for k, v in batch.attempts.items() if not theirs(k)}
    for rid in root_ids:
        batch.fences.pop(rid, None)


def _describe(error: BaseException | None) -> str:
    if error is None:
        return ""
    return f"{type(error).__name__}: {error}"


def _nondeterminism(cid: str, stored: str, now: str) -> str:
    return (f"the workflow changed since promise {cid!r} was stored: it was a call to {stored!r}, "
            f"now the workflow calls {now!r} there. Restore the old code to finish this run, "
            "or start the new code under a new id.")


