"""The :class:`Vow` client: register workflows, run them by id, settle promises from outside."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from typing import Any, Callable, Iterable

import attrs

from vow import encoding
from vow.engine import Engine, StartRequest, mismatch_error
from vow.outcomes import set_future_from_record
from vow.errors import ConfigError, PromiseNotFoundError, VowError
from vow.plugins import Plugins, default_plugins
from vow.pool import DEFAULT_MAX_THREADS
from vow.records import Kind, PromiseRecord, State
from vow.stores import open_store
from vow.stores.base import Store, new_owner_id

_log = logging.getLogger("vow")

CLAIM_BATCH = 16
"""How many pending workflows a worker claims per look at the store."""


@attrs.frozen
class Registered:
    """A workflow registered on a client."""

    name: str
    fn: Callable[..., Any]
    retry: Any = None
    concurrency: int | None = None


class RunHandle:
    """A root workflow started with :meth:`Vow.begin_run`; ``result()`` waits for its value."""

    def __init__(self, id: str, future: concurrent.futures.Future[Any]) -> None:
        self.id = id
        self._future = future

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the workflow and return its value, or raise its error."""
        return self._future.result(timeout)

    def done(self) -> bool:
        """Whether the result is available."""
        return self._future.done()

    def __await__(self):
        return asyncio.wrap_future(self._future).__await__()

    def __repr__(self) -> str:
        return f"<RunHandle {self.id} done={self.done()}>"


class Vow:
    """A vow client: a store, the workflows registered on it, and the engine that runs them.

    ``Vow()`` keeps promises in ``./.vow/vow.sqlite``. ``store`` takes a URL
    (``"memory:"``, ``"sqlite:/path/file.sqlite"``), a path, or a store object.

    ``max_threads`` bounds the pool that runs blocking leaves; ``max_concurrency`` bounds how
    many leaves run at once across all workflows (per workflow: ``register(concurrency=...)``).
    A root workflow runs under a lease of ``lease_ttl`` seconds, renewed while it runs; a worker
    that dies loses it after that long (at once, when it ran on this machine).
    """

    def __init__(self, store: str | Store | None = None, *, plugins: Plugins | None = None,
                 max_threads: int = DEFAULT_MAX_THREADS, max_concurrency: int | None = None,
                 lease_ttl: float = 15.0, poll_interval: float = 0.05, observers: Iterable[Any] = ()) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if lease_ttl <= 0:
            raise ConfigError(f"lease_ttl must be > 0 seconds, got {lease_ttl}")
        self.plugins = plugins or default_plugins()
        self.store: Store = open_store(store, plugins=self.plugins)
        self.owner = new_owner_id()
        self.store.hold_owner(self.owner)
        self._functions: dict[str, Registered] = {}
        self._names: dict[Any, str] = {}
        built = [self.plugins.observers.build(reg.name) for reg in self.plugins.observers]
        self._engine = Engine(
            self.store, owner=self.owner, name_of=self._name_of, lookup=self._functions.get,
            observers=[o for o in (*observers, *built) if o is not None], max_threads=max_threads,
            max_concurrency=max_concurrency, lease_ttl=lease_ttl, poll_interval=poll_interval)
        self._closed = False
        from vow.pipeline.workflow import NAME, pipeline  # every client (so every worker) runs YAML pipelines

        self.register(pipeline, name=NAME)

    # ------------------------------------------------------------------ registration
    def register(self, fn: Callable[..., Any] | None = None, *, name: str | None = None, retry: Any = None,
                 concurrency: int | None = None) -> Any:
        """Register a generator workflow (as a decorator, with or without arguments).

        ``name`` defaults to the function's name; ``retry`` re-runs the whole workflow (with the
        same child ids, so settled children are not run again: a child that failed for good fails
        the same way again, so retry flaky leaves with their own policy); ``concurrency`` caps how
        many of its leaves run at once.
        """
        def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
            reg_name = name or f.__name__
            taken = self._functions.get(reg_name)
            if taken is not None and taken.fn is not f and _qualname(taken.fn) != _qualname(f):
                raise ConfigError(f"a workflow named {reg_name!r} is already registered ({_qualname(taken.fn)})")
            if concurrency is not None and concurrency < 1:
                raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
            self._functions[reg_name] = Registered(reg_name, f, retry, concurrency)
            self._names[f] = reg_name
            return f

        return decorate(fn) if fn is not None else decorate

    def registered(self) -> dict[str, Registered]:
        """The workflows registered on this client, by name."""
        return dict(self._functions)

    def _name_of(self, fn: Any) -> str:
        name = self._names.get(fn)
        if name is None:
            name = self._names[fn] = _qualname(fn)
        return name

    def _resolve(self, fn: Callable[..., Any] | str) -> Registered:
        if isinstance(fn, str):
            reg = self._functions.get(fn)
            if reg is None:
                known = ", ".join(sorted(self._functions)) or "none"
                raise ConfigError(f"no workflow named {fn!r} is registered (registered: {known})")
            return reg
        name = self._names.get(fn)
        if name is None or name not in self._functions:
            self.register(fn)
            name = self._names[fn]
        return self._functions[name]

    # ------------------------------------------------------------------ running
    def begin_run(self, id: str, fn: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> RunHandle:
        """Start root workflow ``id`` (or join it if it exists) and return at once."""
        self._check_open()
        if not isinstance(id, str) or not id:
            raise ConfigError(f"a workflow id must be a non-empty string, got {id!r}")
        reg = self._resolve(fn)
        args_text = encoding.encode_args(args, kwargs, what=f"workflow {reg.name} ({id})")
        # The workflow gets its arguments as the store keeps them, so a first run and a resumed one agree.
        stored_args, stored_kwargs = encoding.decode_args(args_text)
        request = StartRequest(id, reg.name, reg.fn, tuple(stored_args), stored_kwargs, args_text, reg.retry,
                               reg.concurrency, {})
        return RunHandle(id, self._engine.submit(request))

    def run(self, id: str, fn: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Any:
        """Run root workflow ``id`` and wait for its value. The same id again returns the stored
        result, joins the run in progress, or resumes it after a crash."""
        return self.begin_run(id, fn, *args, **kwargs).result()

    async def begin_run_async(self, id: str, fn: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> RunHandle:
        """:meth:`begin_run` for callers inside an event loop; ``await handle`` for the value."""
        return self.begin_run(id, fn, *args, **kwargs)

    async def run_async(self, id: str, fn: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Any:
        """:meth:`run` for callers inside an event loop."""
        return await self.begin_run(id, fn, *args, **kwargs)

    def submit(self, id: str, fn: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> PromiseRecord:
        """Store root workflow ``id`` as pending without running it; a worker (``vow worker``,
        :meth:`worker`) picks it up. An existing id is returned as it is (same rules as ``run``)."""
        self._check_open()
        reg = self._resolve(fn)
        args_text = encoding.encode_args(args, kwargs, what=f"workflow {reg.name} ({id})")
        record, _created = self.store.create(PromiseRecord(
            id, State.PENDING, Kind.WORKFLOW, id, reg.name, args_text, None, None, None, id, 1, time.time()))
        probe = StartRequest(id, reg.name, reg.fn, args, kwargs, args_text, None, None, {})
        error = mismatch_error(probe, record.func, record.args)
        if error is not None:
            raise error
        return record

    def resume(self, id: str) -> RunHandle:
        """Resume a pending root workflow from the store by its registered name."""
        self._check_open()
        request = StartRequest(id, "", None, (), {}, "", None, None, {}, resume_only=True)
        return RunHandle(id, self._engine.submit(request))

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
        """
        stop = stop or threading.Event()
        running: dict[str, RunHandle] = {}
        while not stop.is_set():
            for rid in [rid for rid, h in running.items() if h.done()]:
                running.pop(rid)
            room = max_running - len(running)
            started = 0
            if room > 0:
                try:
                    # A few at a time, so workers sharing a store share the work too.
                    wanted = [r.id for r in self.store.claimable(limit=min(room, CLAIM_BATCH))
                              if r.id not in running and r.func in self._functions]
                    # Claim first, so a root another worker took in the meantime holds no slot here.
                    for rid in self.store.claim_many(wanted, self.owner, self._engine.lease_ttl):
                        running[rid] = self.resume(rid)
                        started += 1
                except VowError as exc:  # a busy or failing store: look again later, keep running
                    _log.warning("worker: could not claim workflows: %s", exc)
            if not started:
                stop.wait(poll_interval)

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
        set_future_from_record(future, record)
        return future.result()

    def resolve(self, id: str, value: Any = None) -> PromiseRecord:
        """Resolve a promise made by ``ctx.promise``; the waiting workflow wakes up.

        Resolving again with the same value does nothing; with another value it is an error.
        """
        text = encoding.encode(value, what=f"the value for promise {id!r}")
        return self._settle_outside(id, State.RESOLVED, text)

    def reject(self, id: str, error: BaseException | str) -> PromiseRecord:
        """Reject a promise made by ``ctx.promise``; the waiting workflow gets the error."""
        exc = error if isinstance(error, BaseException) else VowError(str(error))
        return self._settle_outside(id, State.REJECTED, encoding.encode_error(exc))

    def cancel(self, id: str) -> PromiseRecord:
        """Cancel a pending promise; for a root workflow, every pending promise under it too."""
        record = self._require(id)
        if record.settled:
            return record
        now = time.time()
        from vow.records import Batch, Settle

        settles = [Settle(id, State.CANCELED, None, now)]
        if record.parent is None:
            settles += [Settle(r.id, State.CANCELED, None, now) for r in self.store.tree(id)
                        if r.id != id and not r.settled]
        self.store.apply(Batch(settles=settles))
        self._engine.wake([s.id for s in settles])
        return self._require(id)

    def _settle_outside(self, id: str, state: State, text: str) -> PromiseRecord:
        record = self._require(id)
        if record.kind is not Kind.PROMISE:
            raise VowError(f"{id!r} is a {record.kind.value}, not a promise made by ctx.promise(); "
                           "only those are settled from outside (use cancel for the others)")
        settled = self.store.settle(id, state, text)
        self._engine.wake([id])
        return settled

    def _require(self, id: str) -> PromiseRecord:
        record = self.store.get(id)
        if record is None:
            raise PromiseNotFoundError(f"no promise with id {id!r}")
        return record

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Stop the engine and close the store; running workflows stay pending and resume later."""
        if self._closed:
            return
        self._closed = True
        self._engine.stop()
        self.store.close()

    def _check_open(self) -> None:
        if self._closed:
            raise VowError("this Vow client is closed")

    def __enter__(self) -> "Vow":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Vow store={getattr(self.store, 'url', self.store)!r}>"


def _qualname(fn: Any) -> str:
    module = getattr(fn, "__module__", None) or ""
    qual = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{qual}" if module and module != "__main__" else qual
