"""The :class:`Vow` client: register workflows, run them by id, settle promises from outside."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import math
import os
import queue
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from vow import encoding
from vow.engine import Engine, StartRequest, same_run_error
from vow.engine.catalog import Catalog
from vow.engine.stepper import check_text
from vow.errors import ConfigError, PromiseNotFoundError, VowError
from vow.failures import FailureCodec
from vow.naming import function_name, lasting, looked_up
from vow.outcomes import set_future_from_record
from vow.plugins import Plugins, default_plugins
from vow.pool import DEFAULT_MAX_THREADS
from vow.records import Batch, Kind, PromiseRecord, Settle, State
from vow.retention import AutoPrune, PruneResult, parse_age, parse_states
from vow.retry import policy_problem
from vow.stores import open_store
from vow.stores.base import Store, new_owner_id, tree_holding

_log = logging.getLogger("vow")

CLAIM_BATCH = 64
"""How many pending workflows a worker claims per look at the store."""

MAX_RACES_LOST = 8
"""Claims in a row that other workers may win every run of before a worker pauses a poll interval."""

DEFAULT_MAX_RECOVERIES = 5
"""Takeovers in a row (each after the process running a root died) before the root is parked."""


@attrs.frozen
class Registered:
    """A workflow registered on a client."""

    name: str
    fn: Callable[..., Any]
    retry: Any = None
    concurrency: int | None = None
    timeout: float | None = None


class RunHandle:
    """A root workflow started with :meth:`Vow.begin_run`; ``result()`` waits for its value."""

    def __init__(self, id: str, future: concurrent.futures.Future[Any], engine: Engine | None = None,
                 client: Vow | None = None) -> None:
        self.id = id
        self._future = future
        self._engine = engine
        self._client = client  # a client is closed once collected: not while a handle of its is held

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the workflow and return its value, or raise its error. A wait that can never end (a
        leaf waiting for its own run or for one waiting for it, a workflow's body or an observer waiting
        for any) raises :class:`~vow.errors.PermanentError` at once."""
        if self._engine is None or self._future.done():
            return self._future.result(timeout)
        with self._engine.waiting(self.id):
            return self._future.result(timeout)

    def done(self) -> bool:
        """Whether the result is available."""
        return self._future.done()

    def __await__(self) -> Any:
        return self._wait().__await__()

    async def _wait(self) -> Any:
        if self._engine is None or self._future.done():
            return await asyncio.wrap_future(self._future)
        with self._engine.waiting(self.id):
            return await asyncio.wrap_future(self._future)

    def __repr__(self) -> str:
        return f"<RunHandle {self.id} done={self.done()}>"


class Vow:
    """A vow client: a store, the workflows registered on it, and the engine that runs them.

    ``Vow()`` keeps promises in ``./.vow/vow.sqlite``. ``store`` takes a URL
    (``"memory:"``, ``"sqlite:/path/file.sqlite"``), a path, or a store object.

    ``max_threads`` bounds the pool that runs blocking leaves; ``max_concurrency`` bounds how
    many leaves run at once across all workflows (per workflow: ``register(concurrency=...)``).
    A root workflow runs under a lease of ``lease_ttl`` seconds, renewed while it runs; a worker
    that dies loses it at once when the store can tell (a process on this machine, for SQLite),
    otherwise when it expires. A root taken over ``max_recoveries`` times in a row from processes
    that died running it is parked (``vow resume --force`` runs it again).

    A synchronous leaf runs on the engine's own thread as long as its function proves quick: a leaf
    still running after 2 ms moves the engine to a new thread, and that function runs in the pool
    (so does one whose attempts average 1 ms or more) until its attempts there average under half
    a millisecond. ``inline_leaves=False`` runs every leaf in the pool.

    ``retry`` is the retry policy of every leaf that sets none itself (``vow.Exponential(delay=1)``, say;
    the default is exponential back-off from 0.1 s, 8 attempts; a rate limit, a 429, from 5 s, 16 attempts:
    see :class:`vow.retry.RateLimitPatience`).

    ``retention`` (``"30d"``, seconds) prunes finished runs older than that in the background, once
    an hour (see :meth:`prune`).

    A client may be created at import time and then forked (gunicorn ``--preload``, Celery,
    multiprocessing): the child gets a fresh owner identity and its own engine on first use.

    A client keeps its threads and the store open until :meth:`close` (or the end of a ``with``
    block). One that nothing refers to any more (no variable, no :class:`RunHandle`) is closed when
    it is collected, with a :class:`ResourceWarning` as an unclosed file gives, once no run it
    started or resumed is still going on (a run it started goes on to its end even if its handle
    was dropped), and so is its store unless it was given a store object, which the caller keeps.
    Its workflows, leaves and observers may refer back to it (a closure, an app object's bound
    methods): the engine holds them only while it runs something. A run a worker claimed
    (:meth:`worker`) does not keep its client: collected meanwhile, the client stops it as a crash
    would (what settled stays settled; the next client resumes the run). Still, make one per process
    and share it: a client costs a few threads and a store connection.
    """

    def __init__(self, store: str | Store | None = None, *, plugins: Plugins | None = None,
                 max_threads: int = DEFAULT_MAX_THREADS, max_concurrency: int | None = None,
                 lease_ttl: float = 15.0, poll_interval: float = 0.05, observers: Iterable[Any] = (),
                 max_recoveries: int | None = DEFAULT_MAX_RECOVERIES, retention: float | str | None = None,
                 retry: Any = None, inline_leaves: bool = True) -> None:
        _check_count(max_concurrency, "max_concurrency", 1)
        _check_seconds(lease_ttl, "lease_ttl")
        _check_seconds(poll_interval, "poll_interval")
        _check_count(max_recoveries, "max_recoveries", 0)
        _check_policy(retry, "Vow(retry=...)")
        self.plugins = plugins or default_plugins()
        self.store: Store = open_store(store, plugins=self.plugins)
        self._owns_store = self.store is not store  # opened here from a URL, not the caller's object
        self.codec = FailureCodec(self.plugins.declared_errors())
        self._functions: dict[str, Registered] = {}
        self._names: dict[Any, str] = {}
        built = [self.plugins.observers.build(reg.name) for reg in self.plugins.observers]
        self._observers = [o for o in (*observers, *built) if o is not None]
        # Owned here; the engine holds it weakly while idle, so workflows and observers that refer back
        # to this client (closures, an app's bound methods) do not keep it alive (vow.engine.catalog).
        self._catalog = Catalog(self._functions.get, functools.partial(_name_of, self._names), self._observers)
        self._engine_options = dict(max_threads=max_threads, max_concurrency=max_concurrency, lease_ttl=lease_ttl,
                                    poll_interval=poll_interval, max_recoveries=max_recoveries, default_retry=retry,
                                    inline_leaves=inline_leaves)
        self._closed = False
        self._pruner = AutoPrune(self.store, retention) if retention is not None else None
        self._collected: weakref.finalize[Any, Vow] | None = None
        _start_closer()
        self._new_engine()
        _clients.add(self)
        if self._pruner is not None:
            self._pruner.start()
        from vow.pipeline.workflow import NAME, pipeline  # every client (so every worker) runs YAML pipelines

        self.register(pipeline, name=NAME)

    def _new_engine(self) -> None:
        self.owner = new_owner_id()
        # Nothing the engine's threads hold may refer to the client, or it could never be collected.
        self._engine = Engine(self.store, owner=self.owner, catalog=self._catalog, codec=self.codec,
                              plugins=self.plugins, **self._engine_options)
        if self._collected is not None:
            self._collected.detach()
        self._collected = weakref.finalize(self, _close_unreferenced, self._engine, self.store, self._pruner,
                                           self.owner, self._owns_store)
        self._collected.atexit = False  # at exit the threads die with the process, as before

    def _after_fork(self) -> None:
        # The parent's engine threads do not exist here, and its owner id is the parent's: a child
        # that kept them would hang, or run the parent's roots under the parent's fencing token.
        if not self._closed:
            self._new_engine()

    # ------------------------------------------------------------------ registration
    def register(self, fn: Callable[..., Any] | None = None, *, name: str | None = None, retry: Any = None,
                 concurrency: int | None = None, timeout: float | None = None) -> Any:
        """Register a generator workflow (as a decorator, with or without arguments).

        ``name`` defaults to the function's name; ``retry`` re-runs the whole workflow (with the
        same child ids, so settled children are not run again: a child that failed for good fails
        the same way again, so retry flaky leaves with their own policy); ``concurrency`` caps how
        many of its leaves run at once; ``timeout`` is how many seconds a run may take from its
        first start before it and its pending promises time out (``run(..., timeout=)`` overrides).
        """
        def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
            if not inspect.isgeneratorfunction(f):
                kind = "an async function" if inspect.iscoroutinefunction(f) else f"{type(f).__name__} {f!r}"
                raise ConfigError(
                    f"a workflow must be a generator function (a def that yields ctx.run(...)), got {kind}; "
                    "async def and plain functions are leaves: call them with ctx.run(...) from a workflow")
            reg_name = name or f.__name__
            taken = self._functions.get(reg_name)
            if taken is not None and taken.fn is not f and function_name(taken.fn) != function_name(f):
                raise ConfigError(f"a workflow named {reg_name!r} is already registered ({function_name(taken.fn)})")
            if concurrency is not None and concurrency < 1:
                raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
            _check_timeout(timeout)
            _check_policy(retry, "register(retry=...)")
            if taken is not None and taken.fn is not f and self._names.get(taken.fn) == reg_name:
                del self._names[taken.fn]  # replaced (a closure made for each run): not kept for ever
            self._functions[reg_name] = Registered(reg_name, f, retry, concurrency, timeout)
            self._names[f] = reg_name
            return f

        return decorate(fn) if fn is not None else decorate

    def register_error(self, cls: type[BaseException]) -> type[BaseException]:
        """Let stored failures of exception class ``cls`` come back as ``cls`` (usable as a decorator).

        A workflow receives a leaf's failure as the store keeps it, decoded the same way live and after
        a restart; only declared classes are rebuilt, anything else arrives as
        :class:`~vow.errors.RejectedError` (see :mod:`vow.failures`).
        """
        return self.codec.declare(cls)

    def registered(self) -> dict[str, Registered]:
        """The workflows registered on this client, by name."""
        return dict(self._functions)

    def _resolve(self, fn: Callable[..., Any] | str) -> Registered:
        if isinstance(fn, str):
            reg = self._functions.get(fn)
            if reg is None:
                known = ", ".join(sorted(self._functions)) or "none"
                raise ConfigError(f"no workflow named {fn!r} is registered (registered: {known})")
            return reg
        name = looked_up(self._names, fn)
        if name is None or name not in self._functions:
            self.register(fn)
            name = self._names[fn]
        return self._functions[name]

    # ------------------------------------------------------------------ running
    def begin_run(self, id: str, fn: Callable[..., Any] | str, *args: Any, timeout: float | None = None,
                  **kwargs: Any) -> RunHandle:
        """Start root workflow ``id`` (or join it if it exists) and return at once.

        ``timeout``: seconds the run may take from its first start; then the run and its pending
        promises time out (stored before anything acts on it). It is vow's, not the workflow's:
        pass a workflow argument named ``timeout`` positionally.
        """
        self._check_open()
        _check_id(id)
        _check_timeout(timeout)
        reg = self._resolve(fn)
        args_text = encoding.encode_args(args, kwargs, what=lambda: f"workflow {reg.name} ({id})")
        # The workflow gets its arguments as the store keeps them, so a first run and a resumed one agree.
        stored_args, stored_kwargs = encoding.decode_args(args_text)
        request = StartRequest(id, reg.name, reg.fn, tuple(stored_args), stored_kwargs, args_text, reg.retry,
                               reg.concurrency, {}, timeout=timeout if timeout is not None else reg.timeout,
                               keepalive=self)  # the client stays open while the run goes on, handle or not
        return RunHandle(id, self._engine.submit(request), self._engine, self)

    def run(self, id: str, fn: Callable[..., Any] | str, *args: Any, timeout: float | None = None,
            **kwargs: Any) -> Any:
        """Run root workflow ``id`` and wait for its value. The same id again returns the stored
        result, joins the run in progress, or resumes it after a crash. ``timeout`` as in :meth:`begin_run`."""
        return self.begin_run(id, fn, *args, timeout=timeout, **kwargs).result()

    async def begin_run_async(self, id: str, fn: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> RunHandle:
        """:meth:`begin_run` for callers inside an event loop; ``await handle`` for the value."""
        return self.begin_run(id, fn, *args, **kwargs)

    async def run_async(self, id: str, fn: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Any:
        """:meth:`run` for callers inside an event loop."""
        return await self.begin_run(id, fn, *args, **kwargs)

    def submit(self, id: str, fn: Callable[..., Any] | str, *args: Any, timeout: float | None = None,
               **kwargs: Any) -> PromiseRecord:
        """Store root workflow ``id`` as pending without running it; a worker (``vow worker``,
        :meth:`worker`) that registered the same workflow picks it up. An existing id is returned as it
        is (same rules as ``run``)."""
        self._check_open()
        _check_id(id)
        _check_timeout(timeout)
        if isinstance(fn, str):
            reg = self._resolve(fn)
        else:
            name = looked_up(self._names, fn)
            if name is None or name not in self._functions:
                raise ConfigError(
                    f"workflow {function_name(fn)!r} is not registered: register it with @vow.register (in the "
                    "code your workers import, e.g. `vow worker --app module`) before submitting it, or no worker "
                    "could ever run it")
            reg = self._functions[name]
        args_text = encoding.encode_args(args, kwargs, what=lambda: f"workflow {reg.name} ({id})")
        now = self.store.now()
        seconds = timeout if timeout is not None else reg.timeout
        record, _created = self.store.create(PromiseRecord(
            id, State.PENDING, Kind.WORKFLOW, id, reg.name, args_text, None, None,
            now + seconds if seconds is not None else None, id, 1, now), outside=True)
        error = same_run_error(id, record.func, record.args, reg.name, args_text)
        if error is not None:
            raise error
        return record

    def resume(self, id: str, *, force: bool = False) -> RunHandle:
        """Resume a pending root workflow from the store by its registered name. ``force`` first makes
        a parked run (its process kept dying) claimable again."""
        self._check_open()
        if force:
            self.store.unpark(id)
        return RunHandle(id, self._engine.submit(StartRequest.resume(id, keepalive=self)), self._engine, self)

    def resume_all(self, *, limit: int = 1000) -> list[RunHandle]:
        """Resume every pending root workflow whose lease is free and whose function is registered here."""
        handles = []
        for record in self.store.claimable(limit=limit):
            if record.func in self._functions:
                handles.append(self.resume(record.id))
            else:
                _log.warning("skipping %s: workflow %r is not registered here", record.id, record.func)
        return handles

    def worker(self, *, stop: threading.Event | None = None, poll_interval: float = 0.2,
               max_running: int = 256) -> None:
        """Claim and run pending root workflows until ``stop`` is set.

        Several workers may share one store: the lease makes sure each workflow runs in one
        of them at a time, and a workflow whose worker died is picked up once its lease is free.
        A stored run whose workflow is not registered here is reported once and left for a worker
        that has it. To stop on SIGTERM or Ctrl-C, pass an event set by
        :func:`vow.stopping.stop_on_signals` (a handler that calls ``stop.set()`` itself can hang).
        """
        _check_seconds(poll_interval, "poll_interval")
        _check_count(max_running, "max_running", 1, unlimited=False)
        stop = stop or threading.Event()
        running: dict[str, RunHandle] = {}
        finished: list[str] = []  # runs that ended since the last look (appended from the engine thread)
        room_made = threading.Event()  # a batch's worth of runs ended: claim again at once
        unknown: set[str] = set()
        # A busy worker claims once a batch's worth of slots is free (one claim transaction for many
        # runs, not one per run that ended), or a poll interval after its last claim, whichever is first.
        refill = max(1, min(CLAIM_BATCH, max_running // 4))
        from vow.schedules.ticker import Ticker  # issue 16: workers fire due schedule ticks (vow.schedules)

        def ended(rid: str) -> None:
            finished.append(rid)
            if max_running - len(running) + len(finished) >= refill:
                room_made.set()

        ticker = Ticker(self)
        claimed_at = 0.0
        races_lost = 0  # claims in a row that other workers won every run of
        while not stop.is_set():
            ticker.look()  # issue 16: stores the runs of due ticks; the claim below picks them up
            room_made.clear()
            while finished:
                running.pop(finished.pop(), None)
            room = max_running - len(running)
            wait = claimed_at + poll_interval - time.monotonic()
            if room >= refill or (room > 0 and wait <= 0):
                started = lost = 0
                claimed_at = time.monotonic()
                try:
                    started, lost = self._claim_some(running, unknown, min(room, CLAIM_BATCH), ended)
                except VowError as exc:  # a busy or failing store: look again later, keep running
                    _log.warning("worker: could not claim workflows: %s", exc)
                # Workers sharing a store read the same oldest runs and race for them. One that lost
                # every run it read looks again at once: the winners took those, so the next read
                # shows others; waiting a poll interval would idle it while runs pile up.
                races_lost = races_lost + 1 if lost and not started else 0
                if not started and (not lost or races_lost > MAX_RACES_LOST):
                    races_lost = 0
                    stop.wait(poll_interval)  # nothing to claim now (or a race that never ends: a pause)
            else:
                room_made.wait(wait if room > 0 else poll_interval)

    def _claim_some(self, running: dict[str, RunHandle], unknown: set[str], limit: int,
                    ended: Callable[[str], None]) -> tuple[int, int]:
        """Claim up to ``limit`` runnable roots (a few at a time, so workers sharing a store share the
        work) and start them under the leases just taken. Returns how many started, and how many
        were read as claimable but taken by another worker before this one's claim."""
        wanted = []
        for record in self.store.claimable(limit=limit + len(unknown)):
            if record.id in running:
                continue
            if record.func not in self._functions:
                if record.id not in unknown:
                    unknown.add(record.id)
                    _log.warning("worker: run %s needs workflow %r, which is not registered here (registered: %s); "
                                 "left for a worker that has it", record.id, record.func,
                                 ", ".join(sorted(self._functions)))
                continue
            wanted.append(record.id)
            if len(wanted) >= limit:
                break
        if not wanted:
            return 0, 0
        self._engine.start()
        # Claim first, so a root another worker took in the meantime holds no slot here.
        leases = self._engine.keeper.claim_many(wanted)
        for rid, lease in leases.items():
            future = self._engine.submit(StartRequest.resume(rid, lease=lease))
            running[rid] = RunHandle(rid, future)
            future.add_done_callback(lambda _, rid=rid: ended(rid))
        return len(leases), len(wanted) - len(leases)

    # ------------------------------------------------------------------ promises from outside
    def get(self, id: str) -> PromiseRecord | None:
        """The stored record of promise ``id``, or ``None``."""
        return self.store.get(id)

    def result(self, id: str) -> Any:
        """The stored value of a settled promise (raises its error); :class:`VowError` if pending."""
        record = self._require(id)
        if not record.settled:
            raise VowError(f"promise {id!r} is still pending")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        set_future_from_record(future, record, self.codec)
        return future.result()

    def resolve(self, id: str, value: Any = None) -> PromiseRecord:
        """Resolve a promise made by ``ctx.promise``; the waiting workflow wakes up.

        Resolving again with the same value does nothing; with another value it is an error; after
        the promise's deadline it is refused with :class:`~vow.errors.PromiseTimeoutError`.
        """
        text = encoding.encode(value, what=f"the value for promise {id!r}")
        return self._settle_outside(id, State.RESOLVED, text)

    def reject(self, id: str, error: BaseException | str) -> PromiseRecord:
        """Reject a promise made by ``ctx.promise``; the waiting workflow gets the error."""
        exc = error if isinstance(error, BaseException) else VowError(str(error))
        return self._settle_outside(id, State.REJECTED, self.codec.encode(exc))

    def cancel(self, id: str) -> PromiseRecord:
        """Cancel a pending promise — a root, a child workflow, a leaf, a sleep — and every pending
        promise under it. The run stops what the cancel covers at its next commit; a leaf already
        running is not interrupted, but its result is discarded and it is not retried."""
        record = self._require(id)
        if record.settled:
            return record
        now = self.store.now()
        settles = [Settle(id, State.CANCELED, None, now)]
        settles += [Settle(r.id, State.CANCELED, None, now) for r in _under(tree_holding(self.store, record), id)
                    if not r.settled]
        self.store.apply(Batch(settles=settles, outside=True))
        return self._require(id)

    def _settle_outside(self, id: str, state: State, text: str) -> PromiseRecord:
        record = self._require(id)
        if record.kind is not Kind.PROMISE:
            raise VowError(f"{id!r} is a {record.kind.value}, not a promise made by ctx.promise(); "
                           "only those are settled from outside (use cancel for the others)")
        return self.store.settle(id, state, text, outside=True)

    def _require(self, id: str) -> PromiseRecord:
        record = self.store.get(id)
        if record is None:
            raise PromiseNotFoundError(f"no promise with id {id!r}")
        return record

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Stop the engine and close the store; running workflows stay pending and resume later.

        Not from an observer or a workflow's body: they run on the engine's thread, which closing waits
        for (a :class:`~vow.errors.VowError` says so; a leaf may close the client)."""
        if self._closed:
            return
        if self._engine.on_own_thread():
            raise VowError("Vow.close() was called on the engine's own thread (from an observer or a workflow's "
                           "body), which closing waits for: close the client from the code that made it")
        self._closed = True
        _clients.discard(self)
        if self._collected is not None:
            self._collected.detach()
        _close_parts(self._engine, self.store, self._pruner, self.owner)

    def _check_open(self) -> None:
        if self._closed:
            raise VowError("this Vow client is closed")
        if _closer is None:  # a forked child's first use of a client made before the fork
            _start_closer()

    def __enter__(self) -> Vow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Vow store={getattr(self.store, 'url', self.store)!r}>"

    # ------------------------------------------------------------------ retention
    def prune(self, older_than: float | str, *, states: str | Iterable[str | State] | None = None,
              dry_run: bool = False, compact: bool = False) -> PruneResult:
        """Delete the finished runs that settled more than ``older_than`` ago (``"30d"``, ``"12h"``
        or seconds): each root with its whole tree. A pending run is never touched.

        ``states``: which finished runs (``"succeeded,failed,canceled"``, the default: all);
        ``dry_run``: delete nothing, report what would go; ``compact``: let the store rewrite
        its file to give all free space back (SQLite: once per file made without incremental
        vacuum; writers wait meanwhile). Returns a :class:`~vow.retention.PruneResult`.
        """
        self._check_open()
        seconds = parse_age(older_than, what="older_than")
        return self.store.prune(before=self.store.now() - seconds, states=parse_states(states, what="states"),
                                dry_run=dry_run, compact=compact)

    # ------------------------------------------------------------------ schedules (issue 16; vow.schedules)
    def schedule(self, name: str, workflow: Callable[..., Any] | str, *, cron: str | None = None,
                 every: str | int | None = None, timezone: str = "UTC", catch_up: str = "latest",
                 grace: float | str | None = None, args: Iterable[Any] = (),
                 kwargs: dict[str, Any] | None = None) -> Any:
        """Store schedule ``name``: every worker sharing the store (``vow worker``, :meth:`worker`)
        starts ``workflow(*args, **kwargs)`` on each tick, as run ``{name}/{tick in UTC}``, once.

        ``cron`` (five fields, in ``timezone``) or ``every`` (``"30s"``, ``"1h"``, seconds, in UTC:
        ``timezone`` other than ``UTC`` is refused with it) says when;
        ``catch_up`` (``latest``, ``all``, ``none``) what happens to ticks missed while no worker
        ran. The same name again replaces the schedule. Returns a
        :class:`~vow.schedules.manage.ScheduleInfo`; see :mod:`vow.schedules`.
        """
        from vow.schedules.definition import check_name
        from vow.schedules.manage import add_workflow

        self._check_open()
        check_name(name)
        reg = self._resolve(workflow)
        if isinstance(args, (str, bytes, Mapping)):
            raise ConfigError(f"schedule {name!r}: args takes a list of the workflow's arguments, got {args!r} "
                              f"(args=[{args!r}] for one argument; keyword arguments go in kwargs=)")
        args, kwargs = list(args), dict(kwargs or {})
        try:
            inspect.signature(reg.fn).bind(None, *args, **kwargs)  # None for its ctx
        except TypeError as exc:  # every tick would start a run that fails at once
            raise ConfigError(f"schedule {name!r}: workflow {reg.name!r} cannot be called with args={args!r}, "
                              f"kwargs={kwargs!r}: {exc}") from None
        except ValueError:
            pass  # no signature to check against
        args_text = encoding.encode_args(tuple(args), kwargs, what=f"schedule {name!r}")
        return add_workflow(self.store, name, reg.name, args_text, cron=cron, every=every, timezone=timezone,
                            catch_up=catch_up, grace=grace)


def _check_timeout(timeout: object) -> None:
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0):
        raise ConfigError(f"a run's timeout must be a number of seconds > 0, got {timeout!r}")


def _check_seconds(value: object, name: str) -> None:
    # nan passes every comparison's False, and inf overflows a thread's wait: both refused
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigError(f"{name} must be a finite number of seconds > 0, got {value!r}")


def _check_count(value: object, name: str, least: int, *, unlimited: bool = True) -> None:
    if (value is not None or not unlimited) and (isinstance(value, bool) or not isinstance(value, int)
                                                 or value < least):
        hint = " (or None for no limit)" if unlimited else ""
        raise ConfigError(f"{name} must be a whole number >= {least}{hint}, got {value!r}")


def _check_policy(retry: object, what: str) -> None:
    problem = policy_problem(retry)
    if problem is not None:
        raise ConfigError(f"{what}: {problem}")


def _check_id(id: object) -> None:
    if not isinstance(id, str) or not id:
        raise ConfigError(f"a workflow id must be a non-empty string, got {id!r}")
    check_text(id, {}, "workflow")


def _under(tree: list[PromiseRecord], id: str) -> list[PromiseRecord]:
    """The records of ``tree`` below ``id`` (its children, theirs, ...), in tree order."""
    below = {id}
    found = []
    for record in tree:  # oldest first: a parent comes before its children
        if record.parent in below:
            below.add(record.id)
            found.append(record)
    return found


def _name_of(names: dict[Any, str], fn: Any) -> str:
    """The name ``fn`` is stored under, cached in ``names`` when ``fn`` lasts."""
    name = looked_up(names, fn)
    if name is None:
        name = function_name(fn)
        if lasting(fn):  # a closure or partial made for one call is not kept for ever
            names[fn] = name
    return name


def _close_parts(engine: Engine, store: Store, pruner: AutoPrune | None, owner: str, close_store: bool = True) -> None:
    """Stop what a client runs and close its store: the body of :meth:`Vow.close`."""
    if pruner is not None:
        pruner.stop()
    engine.stop()
    try:
        store.release_owner(owner)
    except Exception:  # noqa: BLE001 - a closed or failing store: the owner reads as gone when we exit
        pass
    if close_store:
        store.close()


def _close_unreferenced(engine: Engine, store: Store, pruner: AutoPrune | None, owner: str, owns_store: bool) -> None:
    """Close a client that was collected unclosed (nothing referred to it and no run of its was going on),
    and its store if it opened it: a store object the caller gave it may serve other clients.

    Handed to the closer thread: the collection may happen on the engine's thread, which closing waits
    for, and the cyclic collector may run this where starting a thread would deadlock (within
    threading's own locks); a SimpleQueue's put is safe there. Then a :class:`ResourceWarning`, as
    an unclosed file or SQLite connection gives (shown with ``-X dev`` or ``-W default``)."""
    _to_close.put((engine, store, pruner, owner, owns_store))
    warnings.warn(f"unclosed Vow client (store {getattr(store, 'url', store)!r}) was collected; closing it now. "
                  "Call close() or use `with Vow(...) as vow:`", ResourceWarning,
                  stacklevel=1)  # a finalizer: no caller of ours to point at


_to_close: queue.SimpleQueue[tuple[Engine, Store, AutoPrune | None, str, bool]] = queue.SimpleQueue()
_closer: threading.Thread | None = None
_closer_lock = threading.Lock()


def _start_closer() -> None:
    """Start the thread that closes collected clients, unless it runs (from a client's constructor,
    never from a finalizer)."""
    global _closer
    with _closer_lock:
        if _closer is None or not _closer.is_alive():
            _closer = threading.Thread(target=_close_queued, name="vow-close", daemon=True)
            _closer.start()


def _close_queued() -> None:
    while True:
        parts = _to_close.get()
        try:
            _close_parts(*parts)
        except Exception:  # noqa: BLE001 - one client's failing store must not stop the closing of others
            _log.exception("closing a collected Vow client failed")
        del parts  # not kept alive while waiting for the next


_clients: weakref.WeakSet[Vow] = weakref.WeakSet()
def _after_fork_in_child() -> None:
    global _closer, _closer_lock
    # The parent's closer thread is not here, and its lock may be held. A new one starts when a client
    # is used here, not now: a child that only returns from a leaf must end with its one thread.
    _closer, _closer_lock = None, threading.Lock()
    for client in list(_clients):
        client._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)

