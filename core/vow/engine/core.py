"""The engine: one thread that steps workflows and commits each round's writes together.

Each turn of the loop:

1. takes every message waiting in the inbox (leaf outcomes, starts, outside changes, lost leases)
   and fires the timers that are due;
2. steps every workflow that can move (:mod:`vow.engine.stepper`), collecting the promises it
   creates and settles;
3. commits all of those writes in **one** store transaction (:mod:`vow.engine.committer`); a
   workflow that makes many promises without waiting (a wide fan-out) is paused every
   :data:`~vow.engine.stepper.CALLS_PER_COMMIT` of them for a commit, so their records do not
   all wait in memory and the first branches can start while it makes the rest;
4. only then does what the commit made true: starts leaves, arms timers, answers callers.

Every transition — a leaf's result, a deadline, a cancel or resolve from outside — is judged by a
commit: if the store refuses it (another outcome was stored first), nothing the workflow did
after it is kept or acted on, and the root is replayed from the store. The other parts: the
leaf runner (:mod:`~vow.engine.leaves`), retries and their durable back-offs
(:mod:`~vow.engine.retries`), the lease keeper (:mod:`~vow.engine.leases`), the watcher of
outside changes (:mod:`~vow.engine.watcher`) and the timers (:mod:`~vow.engine.timers`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import math
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from vow import encoding
from vow.engine.catalog import Catalog
from vow.engine.committer import CommitResult, Committer, RootWrites
from vow.engine.leases import LeaseKeeper
from vow.engine.leaves import LEAF_ROOT, LeafOutcome, LeafRunner
from vow.engine.model import PromiseNode, RootRun, WorkflowRun
from vow.engine.retries import Retries
from vow.engine.starts import StartRequest, same_run_error
from vow.engine.stepper import Stepper, duplicate_id, same_function
from vow.engine.timers import Timers
from vow.engine.watcher import Watcher
from vow.errors import (
    ConfigError,
    EncodeError,
    PermanentError,
    PromiseNotFoundError,
    PromiseTimeoutError,
    RunParkedError,
    Throttled,
    VowError,
)
from vow.events import Event, EventKind
from vow.failures import FailureCodec, message_of
from vow.outcomes import combine_update, fill_from_record, outcome, record_outcome
from vow.records import Batch, Kind, Lease, PromiseRecord, State, make_settle
from vow.retry import DEFAULT_WORKFLOW_POLICY
from vow.stores.base import ChangeFeed

__all__ = ["Engine"]

_log = logging.getLogger("vow.engine")

# inbox message tags
_LEAF, _START, _CHANGES, _REMOTE, _LOST, _CALL, _STOP = range(7)
_PENDING = State.PENDING


class Engine:
    """Runs workflows for one :class:`vow.Vow` client on a dedicated thread."""

    def __init__(self, store: Any, *, owner: str, catalog: Catalog, codec: FailureCodec, plugins: Any = None,
                 max_threads: int = 1024,
                 max_concurrency: int | None = None, lease_ttl: float = 15.0, poll_interval: float = 0.05,
                 max_recoveries: int | None = None, default_retry: Any = None, inline_leaves: bool = True) -> None:
        self.store = store
        self.owner = owner
        self.lease_ttl = lease_ttl
        self.codec = codec
        self.plugins = plugins
        # The client's workflows and observers, held strongly only while busy (see _hold()): they may refer
        # back to the client, which an idle engine must not keep alive.
        self._catalog = weakref.ref(catalog)
        self._held: Catalog | None = None
        self._wanted: dict[EventKind, tuple[Any, ...]] = {}  # the held catalog's audiences; none while idle
        self.observed = EventKind.CREATED in catalog.audiences  # read by the stepper for each promise it creates
        self._observed_started = EventKind.STARTED in catalog.audiences  # asked for every leaf ...
        self._observed_settled = EventKind.SETTLED in catalog.audiences  # ... and every settle
        self.inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        put = self.inbox.put
        self.now = store_clock(store)
        self.timers = Timers(self.now)
        self.committer = Committer(store)
        self.keeper = LeaseKeeper(store, owner, lease_ttl, max_recoveries=max_recoveries,
                                  on_lost=lambda roots: put((_LOST, roots)))
        self.watcher = Watcher(store, poll_interval, on_changes=lambda feed: put((_CHANGES, feed)),
                               on_remote=lambda records, free: put((_REMOTE, records, free)))
        self.leaves = LeafRunner(lambda result: put((_LEAF, result)), max_threads=max_threads,
                                 max_concurrency=max_concurrency, plugins=plugins, store=store,
                                 relieve=self._run_on_new_thread if inline_leaves else None)
        self.stepper = Stepper(self, self.committer, now=self.now, name_of=_not_held)
        self.retries = Retries(self.committer, self.timers, self.now, encode_error=codec.encode,
                               decode_error=codec.decode, default_policy=default_retry,
                               on_retry=self._retry_scheduled, start_leaf=self._start_leaf,
                               start_body=self._body_again)
        self._roots: dict[str, RootRun] = {}
        self._starts: list[StartRequest] = []
        self._remote: dict[str, list[StartRequest]] = {}  # roots another worker runs, which callers here wait for
        self._orphans: dict[str, dict[str, LeafOutcome]] = {}  # leaf outcomes no live promise claimed yet, by root
        self._thread: threading.Thread | None = None  # the engine thread now (it moves off a leaf that blocks)
        self._ended = threading.Event()
        self._lock = threading.Lock()
        self._waits: dict[str, list[str]] = {}  # root -> the roots its leaves wait for now, to refuse a cycle
        self._waits_lock = threading.Lock()
        self._asked: weakref.WeakSet[Any] = weakref.WeakSet()  # callers' futures a crash must answer
        self._answers: list[tuple[Any, Any, BaseException | None]] = []  # finished roots' (future, value, error)
        self._crashed: VowError | None = None

    # ------------------------------------------------------------------ any thread
    def start(self) -> None:
        """Start the engine thread and its helpers (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return
            self.keeper.show_alive()
            self.watcher.start()
            self._run_on_new_thread()

    def submit(self, request: StartRequest) -> Any:
        """Run, join or resume a root workflow; returns the future of its result."""
        self.start()
        self._asked.add(request.future)
        self.inbox.put((_START, request))
        if self._crashed is not None:  # no loop reads the inbox any more
            self._fail_asked(self._crashed)
        return request.future

    def _hold(self) -> bool:
        """Hold the client's catalog strongly (on the engine thread, when a start comes in); ``False``
        when the client is gone. Until :meth:`_release_when_idle` the engine's parts use it directly:
        no step pays for a weak reference."""
        if self._held is None:
            catalog = self._catalog()
            if catalog is None:
                return False
            self._held = catalog
            self._wanted = catalog.audiences
            self.stepper.name_of = catalog.name_of
            self.leaves.scopes = catalog.scopes
        return True

    def _release_when_idle(self) -> None:
        """Let go of the client's catalog once nothing runs here (at the end of a round): nothing of the
        engine's keeps an idle client alive then."""
        if self._held is not None and not (self._roots or self._starts or self._remote):
            self._held = None
            self._wanted = {}
            self.stepper.name_of = _not_held
            self.leaves.scopes = ()

    def on_own_thread(self) -> bool:
        """Whether the caller is the engine itself (a workflow's body or an observer), not a leaf."""
        return LEAF_ROOT.get() is None and threading.current_thread() is self._thread

    @contextlib.contextmanager
    def waiting(self, root_id: str) -> Iterator[None]:
        """Around a caller's wait for root ``root_id``: a wait that can never end raises
        :class:`~vow.errors.PermanentError` at once instead — a leaf waiting for its own run or for a run
        that waits (through its leaves, in this process) for the leaf's run, or the engine's own thread
        (a workflow's body, an observer) waiting for any run."""
        waiter = LEAF_ROOT.get()
        if self.on_own_thread():
            raise PermanentError(
                f"the engine's own thread (a workflow's body or an observer) waits for run {root_id!r}, which only "
                "that thread can run: the wait can never end (wait in a leaf, or start the run with begin_run and "
                "do not wait)", code="waits_on_itself")
        if waiter is None:
            yield
            return
        with self._waits_lock:
            chain = self._wait_chain(root_id, waiter)
            if chain is not None:
                path = " -> ".join(repr(r) for r in [waiter, *chain])
                raise PermanentError(f"a leaf of run {waiter!r} waits for run {root_id!r}, which cannot finish before "
                                     f"the leaf does ({path}): the wait can never end", code="waits_on_itself")
            self._waits.setdefault(waiter, []).append(root_id)
        try:
            yield
        finally:
            with self._waits_lock:
                targets = self._waits[waiter]
                targets.remove(root_id)
                if not targets:
                    del self._waits[waiter]

    def _wait_chain(self, start: str, goal: str) -> list[str] | None:
        """Roots from ``start`` to ``goal`` along the waits of leaves in this process, or ``None``."""
        paths, seen = [[start]], {start}
        while paths:
            path = paths.pop()
            if path[-1] == goal:
                return path
            for nxt in self._waits.get(path[-1], ()):
                if nxt not in seen:
                    seen.add(nxt)
                    paths.append([*path, nxt])
        return None

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the engine thread."""
        self.start()
        self.inbox.put((_CALL, fn))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop; running roots stay pending in the store with their leases released."""
        if self._thread is not None:
            self.inbox.put((_STOP,))
            self._ended.wait(timeout)  # not a join: the engine may move to another thread meanwhile
        self.watcher.stop()
        self.keeper.stop()
        self.leaves.close()

    # ------------------------------------------------------------------ the loop
    def _main(self) -> None:
        try:
            self._loop()
        except BaseException:  # noqa: BLE001 - an engine bug must not hang callers
            _log.exception("vow engine crashed")
            error = VowError("the vow engine stopped after an internal error; see the log")
            self._crashed = error
            self._fail_everything(error)
            self._fail_asked(error)
            self._ended.set()

    def _fail_asked(self, error: VowError) -> None:
        """Answer every start request not answered yet with ``error`` (the engine stopped)."""
        for future in list(self._asked):
            with contextlib.suppress(concurrent.futures.InvalidStateError):  # answered meanwhile
                if not future.done():
                    future.set_exception(error)

    def _run_on_new_thread(self) -> None:
        """Run the engine loop on a new thread: at start, and to go on when the thread that ran it
        is held by a leaf that blocks (the inline leaves' ``relieve``)."""
        thread = threading.Thread(target=self._main, name="vow-engine", daemon=True)
        self._thread = thread
        thread.start()

    def _loop(self) -> None:
        inbox, timers, inline = self.inbox, self.timers, self.leaves.inline
        while True:
            if inline is not None and inline.waiting():
                outcomes = inline.run()
                if outcomes is None:
                    return  # a leaf held this thread too long: the engine goes on in another one
                self._on_inline(outcomes)
                outcomes = None  # kept while the loop waits, a failed leaf's error would hold its frames, run, client
                timeout: float | None = 0.0
            else:
                timeout = timers.timeout()
            if timeout != 0.0:
                try:
                    msg = inbox.get(timeout=timeout)
                except queue.Empty:
                    msg = None
            else:  # the engine is the only reader: not empty means get_nowait() succeeds (no Empty raised)
                msg = None if inbox.empty() else inbox.get_nowait()
            while msg is not None:
                if msg[0] == _STOP:
                    self._shutdown()
                    self._ended.set()
                    return
                try:
                    self._handle(msg)
                except Exception:  # noqa: BLE001 - one bad message must not stop every workflow
                    _log.exception("vow engine: handling a message failed")
                msg = None if inbox.empty() else inbox.get_nowait()
            try:
                timers.fire_due()
                self._round()
            except Exception:  # noqa: BLE001
                _log.exception("vow engine: a round failed")
            if self._answers:
                self._answer()

    def _on_inline(self, outcomes: list[LeafOutcome]) -> None:
        for result in outcomes:
            try:
                self._on_leaf(result)
            except Exception:  # noqa: BLE001 - one bad message must not stop every workflow
                _log.exception("vow engine: handling a leaf's outcome failed")

    def _handle(self, msg: tuple[Any, ...]) -> None:
        tag = msg[0]
        if tag == _LEAF:
            self._on_leaf(msg[1])
        elif tag == _START:
            request: StartRequest = msg[1]
            if not self._hold():  # a worker's claim whose client was collected meanwhile: it stops, as at close
                request.fail(VowError("the vow client was collected; the workflow stays pending and resumes on "
                                      "the next start"))
                return
            root = self._roots.get(request.id)
            if root is not None:
                self._join(request, root)
            else:
                self._starts.append(request)
        elif tag == _CHANGES:
            self._on_changes(msg[1])
        elif tag == _REMOTE:
            self._on_remote(msg[1], msg[2])
        elif tag == _LOST:
            for rid in msg[1]:
                root = self._roots.get(rid)
                if root is not None:
                    self._lose(root)
        elif tag == _CALL:
            msg[1]()

    def _round(self) -> None:
        stepper, committer = self.stepper, self.committer
        while True:
            if self._starts:
                self._process_starts()
            stepper.step_ready()
            if committer.pending():
                self._commit_and_act()
                # Callers are answered once the commit that decided their run is done, not at the end of the
                # round: a later commit of the round (a lease given back) may wait long on a store that went away.
                if self._answers:
                    self._release_when_idle()  # when these were the last runs here: no frame of ours holds them
                    self._answer()
            if not (self._starts or stepper.ready or committer.pending()):
                self.leaves.flush()
                self._release_when_idle()
                return

    def _commit_and_act(self) -> None:
        """Commit the round's writes, then act on them. A method of its own so that what it acts on (roots,
        nodes) is held by no frame once it returns, when callers are answered (see :meth:`_answer`)."""
        result, actions, leaves = self.committer.commit()
        if result is not None:
            self._after_commit(result)
        for fn, args in actions:
            fn(*args)
        start_leaf = self._start_leaf
        for node in leaves:
            start_leaf(node)

    def _after_commit(self, result: CommitResult) -> None:
        existing = result.existing
        for rid, record in existing.values():
            self._existing(rid, record, existing)
        for rid in result.lost:
            root = self._roots.get(rid)
            if root is not None:
                self._lose(root)
        for rid, won in result.conflicts.items():
            root = self._roots.get(rid)
            if root is not None:
                self._replay(root, won)
        for rid, error in result.failed.items():
            root = self._roots.get(rid)
            if root is not None:
                _log.error("store commit of %s failed: %s", rid, error)
                self._abort(root, error)

    # ------------------------------------------------------------------ starting roots
    def _join(self, request: StartRequest, root: RootRun) -> None:
        """Add a caller to a root running here, if it asks for the same run."""
        if not request.resume_only and root.run is not None:
            error = same_run_error(request.id, root.run.node.func, root.args_text, request.name, request.args_text)
            if error is not None:
                request.fail(error)
                return
        root.futures.append(request.future)
        if request.lease is not None and request.lease.token != root.token:
            self.store.release(request.lease)

    def _process_starts(self) -> None:
        requests, self._starts = self._starts, []
        try:
            found = self._read_starts(requests)
        except Exception as exc:  # noqa: BLE001 - the store failed: these callers get the error, others go on
            for req in requests:
                req.fail(exc)
            return
        fresh: dict[str, tuple[StartRequest, PromiseRecord]] = {}
        later: list[StartRequest] = []
        now = self.now()
        for req in requests:
            root = self._roots.get(req.id)
            if root is not None:
                self._join(req, root)
            elif (record := found.get(req.id)) is not None:
                self._guarded(req, self._start_existing, req, record)
            elif req.id in fresh:
                later.append(req)
            elif req.resume_only:
                req.fail(PromiseNotFoundError(f"no workflow with id {req.id!r}"))
            else:
                deadline = now + req.timeout if req.timeout is not None else None
                fresh[req.id] = (req, PromiseRecord(
                    req.id, State.PENDING, Kind.WORKFLOW, req.id, req.name, req.args_text, None, None, deadline,
                    req.id, 1, now, None, req.tags))
        if fresh:
            self._create_roots(fresh)
        for req in later:
            root = self._roots.get(req.id)
            if root is not None:
                self._join(req, root)
            else:
                self._starts.append(req)

    def _read_starts(self, requests: list[StartRequest]) -> dict[str, PromiseRecord]:
        """The stored roots of ``requests``; a run already claimed (a worker claims many at once) gets
        its whole tree, read with the others' in one query instead of a read and a tree per run."""
        claimed = [r for r in requests if r.lease is not None and r.id not in self._roots]
        trees = self.store.trees([r.id for r in claimed]) if claimed else {}
        found: dict[str, PromiseRecord] = {}
        for req in claimed:
            tree = trees.get(req.id)
            root = next((r for r in tree if r.id == req.id), None) if tree else None
            if root is not None:
                req.tree = tree
                found[req.id] = root
        found.update(self.store.get_many([r.id for r in requests if r.id not in self._roots and r.id not in found]))
        return found

    def _create_roots(self, fresh: dict[str, tuple[StartRequest, PromiseRecord]]) -> None:
        try:
            result = self.store.apply(Batch(creates=[record for _, record in fresh.values()]))
        except Exception as exc:  # noqa: BLE001 - nothing of this batch was stored
            for req, _ in fresh.values():
                req.fail(exc)
            return
        created = []
        for req, record in fresh.values():
            existing = result.existing.get(req.id)
            if existing is not None:
                self._guarded(req, self._start_existing, req, existing)
            else:
                created.append((req, record))
        if not created:
            return
        try:
            leases = self.keeper.claim_many([req.id for req, _ in created])
        except Exception as exc:  # noqa: BLE001 - stored but unclaimed: a worker or a retry picks them up
            for req, _ in created:
                req.fail(exc)
            return
        for req, record in created:
            # created_at as stored, as a resumed root's event has it: observers derive ids from it (vow-otel)
            self._emit(EventKind.CREATED, record.id, record.id, None, record.func, Kind.WORKFLOW, 1,
                       created_at=record.created_at)
            lease = leases.get(req.id)
            if lease is None:
                self._wait_remote(req)
            else:
                self._guarded(req, self._launch_root, req, record, lease, {})

    def _start_existing(self, req: StartRequest, record: PromiseRecord) -> None:
        if not req.resume_only:
            error = same_run_error(req.id, record.func, record.args, req.name, req.args_text)
            if error is not None:
                req.fail(error)
                return
        if record.settled:
            self._answer_from(req.future, record)
            return
        lease = req.lease or self.keeper.claim(req.id)
        if lease is None:
            current = self.store.lease(req.id)
            if current is not None and current.parked:
                req.fail(RunParkedError(current.parked))
                return
            self._wait_remote(req)
            return
        self._resume(req, record, lease)

    def _resume(self, req: StartRequest, record: PromiseRecord, lease: Lease) -> None:
        if req.fn is None:
            assert self._held is not None  # held since its start came in
            registered = self._held.lookup(record.func)
            if registered is None:
                self.store.release(lease)
                req.fail(VowError(f"workflow {record.func!r} (id {record.id!r}) is not registered in this process; "
                                  "register it with @vow.register before resuming"))
                return
            req.fn, req.policy, req.concurrency = registered.fn, registered.retry, registered.concurrency
            args, kwargs = encoding.decode_args(record.args)
            req.args, req.kwargs = tuple(args), kwargs
        tree, req.tree = (req.tree if req.tree is not None else self.store.tree(record.id)), None
        current = next((r for r in tree if r.id == record.id), record)
        if current.settled:  # it finished between our read and our claim: answer from the store
            self.store.release(lease)
            self._answer_from(req.future, current)
            return
        self._emit(EventKind.RESUMED, record.id, record.id, None, record.func, Kind.WORKFLOW, record.attempt,
                   created_at=record.created_at)
        self._launch_root(req, current, lease, {r.id: r for r in tree if r.id != record.id})

    def _launch_root(self, req: StartRequest, record: PromiseRecord, lease: Lease,
                     stored: dict[str, PromiseRecord]) -> None:
        root = RootRun(record.id, lease.token, stored, req.concurrency, record.args, [req.future], record.created_at)
        self._roots[record.id] = root
        self.keeper.keep(lease)
        assert req.fn is not None
        self._begin_root(root, record, req.fn, req.args, req.kwargs, req.policy or DEFAULT_WORKFLOW_POLICY)

    def _begin_root(self, root: RootRun, record: PromiseRecord, fn: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any], policy: Any) -> None:
        node = PromiseNode(record.id, Kind.WORKFLOW, record.func, root, None, None, record.attempt or 1,
                           record.idempotency_key or record.id, record.timeout, dict(record.tags))
        run = WorkflowRun(node, root, fn, args, kwargs, policy)
        node.child = run
        root.run = run
        if node.deadline is not None:
            self.committer.after(root.id, root.token, self._arm_deadline, node)
        if not self.retries.resume_in_backoff(node, root.stored):
            self.stepper.begin(run)

    def _body_again(self, run: WorkflowRun) -> None:
        """Start a workflow's body again after its retry back-off: with its children as stored, so the
        calls it makes again answer from the store (settled ones left memory when they settled)."""
        root = run.root
        try:
            children = self.store.children(run.id)
        except Exception as exc:  # noqa: BLE001 - the store failed: this root stops here, others go on
            self._abort(root, exc)
            return
        for record in children:
            if record.id not in root.live:
                root.stored[record.id] = record
        self.stepper.begin(run)

    def _wait_remote(self, req: StartRequest) -> None:
        self._remote.setdefault(req.id, []).append(req)
        self.watcher.watch_remote(req.id)

    def _guarded(self, req: StartRequest, fn: Callable[..., None], *args: Any) -> None:
        """Run a step of starting ``req``; if the store fails, that caller gets the error and the engine goes on."""
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001
            _log.warning("starting %s failed: %s", req.id, exc)
            req.fail(exc)

    # ------------------------------------------------------------------ what the stepper asks for
    def launch(self, node: PromiseNode, writes: RootWrites | None = None) -> None:
        """Carry on with a pending promise a workflow just made or met again on a replay (``writes``:
        its root's writes in this round, when the caller holds them)."""
        root = node.root
        kind = node.kind
        if kind is Kind.WORKFLOW:
            opts = node.opts
            assert node.fn is not None and opts is not None
            child = WorkflowRun(node, root, node.fn, node.args, node.kwargs, opts.retry or DEFAULT_WORKFLOW_POLICY,
                                opts.non_retryable)
            node.child = child
            if not self.retries.resume_in_backoff(node, root.stored):
                self.stepper.begin(child)
        elif kind is Kind.STEP:
            if node.attempt == 1 or not self.retries.resume_in_backoff(node, root.stored):
                (writes or self.committer.writes(root.id, root.token)).leaves.append(node)
        elif kind is Kind.SLEEP:
            self.committer.after(root.id, root.token, self._arm_sleep, node)
            return
        if node.deadline is not None:
            self.committer.after(root.id, root.token, self._arm_deadline, node)

    def finished(self, run: WorkflowRun, ok: bool, value: Any) -> None:
        """A workflow body returned (``ok``) or raised ``value``: settle its promise, or retry it."""
        node = run.node
        run.gen = None
        if node.state is not _PENDING or node.root.done:
            return  # its outcome came from the store meanwhile (met again after it settled)
        if node.deadline is not None and self.now() >= node.deadline:
            self._deadline(node)  # it finished too late: the store would refuse it
            return
        if ok:
            try:
                value, text = encoding.normalize(value, what=lambda: f"the result of workflow {node.label()}")
            except EncodeError as exc:
                ok, value = False, exc
            else:
                self.settle(node, State.RESOLVED, value, None, text)
                return
        try:
            if self.retries.retry_workflow(run, value):
                return
        except PermanentError as exc:  # no retry: a Retry-After too long to wait out (vow.retry.next_delay)
            value = exc
        except Exception as exc:  # noqa: BLE001 - a user's policy: fail this run, never leave it pending
            value = _policy_failed(node, value, exc)
        self._reject(node, value)

    def abort(self, root: RootRun, error: BaseException) -> None:
        """Stop running ``root`` here without settling it; its stored state stays as it was."""
        self._abort(root, error)

    def started(self, run: WorkflowRun) -> None:
        if EventKind.STARTED in self._wanted:
            node = run.node
            self.committer.after(run.root.id, run.root.token, self._emit, EventKind.STARTED, node.id, run.root.id,
                                 node.parent_id, node.func, Kind.WORKFLOW, node.attempt, None, None, None, "",
                                 node.created_at)

    def created(self, node: PromiseNode) -> None:
        if EventKind.CREATED in self._wanted:
            self._emit(EventKind.CREATED, node.id, node.root.id, node.parent_id, node.func, node.kind, node.attempt,
                       key=node.key)

    # ------------------------------------------------------------------ settling
    def settle(self, node: PromiseNode, state: State, value: Any, error: BaseException | None,
               text: str | None) -> None:
        """Settle ``node`` in this round's commit and wake whoever waits for it (they may run ahead of
        the commit; if it is refused, the root is replayed)."""
        root = node.root
        now = root.stamp(self.now())
        node.state = state
        node.value = value
        node.error = error
        node.settled_at = now
        root.live.pop(node.id, None)
        if node.timer is not None:
            self.timers.cancel(node.timer)
            node.timer = None
        self.retries.forget(node.id)
        self.committer.writes(root.id, root.token).settles.append(make_settle(node.id, state, text, now))
        if node.run is None:  # its leftover branches settle first: observers see them end before the run
            self._finish_root(root, State.TIMEDOUT if state is State.TIMEDOUT else State.CANCELED)
        elif node.child is not None:
            self._stop_under(node)
        if self._observed_settled:
            self.committer.after(root.id, root.token, self._emit, EventKind.SETTLED, node.id, root.id,
                                 node.parent_id, node.func, node.kind, node.attempt, state.value,
                                 _describe(error) if error is not None else None, None, "", node.created_at)
        if node.run is not None:
            self._wake(node)

    def _reject(self, node: PromiseNode, error: BaseException) -> None:
        text = self.codec.encode(error)
        self.settle(node, State.REJECTED, None, self.codec.decode(text), text)

    def _wake(self, node: PromiseNode) -> None:
        waiter = node.waiter
        if waiter is None:
            return
        more = node.more_waiters
        node.waiter = node.more_waiters = None
        ready = self.stepper.ready
        for run, awaited in (waiter,) if more is None else (waiter, *more):  # in the order they came
            if run.waiting is not awaited or run.root.done:
                continue
            if awaited is node:
                value, exc = outcome(node)
            else:
                done, value, exc = combine_update(awaited, node)
                if not done:
                    continue
            run.waiting = None
            ready.append((run, value, exc))

    def _stop_under(self, node: PromiseNode) -> None:
        """A child workflow settled (it finished, timed out or was canceled): close its generator and
        cancel what it left pending (a branch nobody waits for any more)."""
        child = node.child
        if child is not None and child.gen is not None:
            child.close()
        root = node.root
        for other in list(root.live.values()):
            if other is not node and _under(other, node):
                self._cancel(other)

    def _cancel(self, node: PromiseNode, state: State = State.CANCELED) -> None:
        if node.state is _PENDING:
            if node.child is not None:
                node.child.close()
            if state is State.TIMEDOUT:
                text = self.codec.encode(PromiseTimeoutError(f"{node.label()} timed out with its run"))
                self.settle(node, state, None, self.codec.decode(text), text)
            else:
                self.settle(node, state, None, None, None)

    def _finish_root(self, root: RootRun, leftovers: State = State.CANCELED) -> None:
        """The root settled: what it left pending is canceled (nobody waits for it any more, after
        first/any), or timed out with it when the run's own deadline passed."""
        root.done = True
        for child in list(root.live.values()):
            self._cancel(child, leftovers)
        self.committer.after(root.id, root.token, self._report_root, root)

    def _report_root(self, root: RootRun) -> None:
        if self._roots.get(root.id) is not root:
            return
        self._forget(root)
        assert root.run is not None
        value, error = outcome(root.run.node)
        self._answers += [(future, value, error) for future in root.futures]

    def _answer(self) -> None:
        """Answer the callers of the roots that finished, stopped or were found settled in the round just
        ended (or in the messages before it). After the round: its frame held the roots and start requests
        (and through their workflows, maybe their client), which a caller woken by its answer, dropping
        its client and collecting, must find held by nothing of the engine's."""
        answers, self._answers = self._answers, []
        for future, value, error in answers:
            # a caller's cancel (asyncio cancelling ``await handle``) may land after any check: that caller
            # needs no answer, and the engine (outside the round's guard here) must not stop for it
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                if future.done():
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(value)

    def _answer_from(self, future: Any, record: PromiseRecord) -> None:
        """Answer ``future`` with the outcome stored in ``record``, after the round (see :meth:`_answer`)."""
        if not future.done():
            value, error = record_outcome(record, self.codec)
            self._answers.append((future, value, error))

    def _forget(self, root: RootRun, release: bool = True) -> None:
        """Stop tracking ``root`` here: its lease is given back (or gone), its waiters dropped, and the
        timers of what it left pending canceled: a root stopped unsettled here (canceled from outside,
        lost, aborted) may leave an hour's sleep or Retry-After armed, holding the run and, through its
        workflow, maybe its client."""
        self._roots.pop(root.id, None)
        self._orphans.pop(root.id, None)
        cancel, forget_waits = self.timers.cancel, self.retries.forget
        for node in (*root.live.values(), *((root.run.node,) if root.run is not None else ())):
            if node.timer is not None:
                cancel(node.timer)
                node.timer = None
            forget_waits(node.id)  # a back-off or rate-limit wait
        lease = self.keeper.forget(root.id)
        if lease is not None and release:
            self.committer.release(lease)  # with the round's next commit: many roots, one transaction

    # ------------------------------------------------------------------ leaves and timers
    def _start_leaf(self, node: PromiseNode) -> None:
        root = node.root
        if node.state is not _PENDING or root.done or node.running:
            return
        if node.adopted and self.leaves.running(node.id) == node.attempt:
            node.running = True  # a replayed root meets an attempt already in flight: adopt it
            return
        if self._orphans:
            early = self._orphans.get(root.id, {}).pop(node.id, None)
            if early is not None and early[2] == node.attempt:
                self._on_leaf(early)
                return
        if node.deadline is not None and self.now() >= node.deadline:
            self._deadline(node)  # its time ran out while no process ran it: never start it
            return
        if self._observed_started:
            self._emit(EventKind.STARTED, node.id, root.id, node.parent_id, node.func, Kind.STEP, node.attempt,
                       key=node.key, created_at=node.created_at)
        self.leaves.start(node, root.limit)

    def _on_leaf(self, result: LeafOutcome) -> None:
        pid, rid, attempt, ok, value, text = result
        self.leaves.finished(pid, rid)
        root = self._roots.get(rid)
        if root is None:
            return
        node = root.live.get(pid)
        if node is None:  # not met (again) yet by a replayed root, or settled meanwhile
            self._orphans.setdefault(rid, {})[pid] = result
            return
        node.running = False
        if node.state is not _PENDING or attempt != node.attempt:
            return  # a late answer for a promise that settled (timeout, cancel) or was retried
        if not root.unsaved:  # kept until this round's commit: a replay after a refused one must not lose it
            self.committer.after(root.id, root.token, root.unsaved.clear)
        root.unsaved.append(result)
        if ok:
            if node.deadline is not None and self.now() >= node.deadline:
                self._deadline(node)  # too late: the store would refuse it
            else:
                self.settle(node, State.RESOLVED, value, None, text)
            return
        if isinstance(value, Throttled):  # not a failure: hold it back, then the same attempt again
            if math.isfinite(value.wait):
                self.retries.throttle(node, value.wait)
                return
            value = PermanentError(f"{value} (Throttled asked to wait for ever: the call fails instead)",
                                   code="throttled_for_ever")
        try:
            if self.retries.retry_leaf(node, value):
                return
        except PermanentError as exc:  # no retry: a Retry-After too long to wait out (vow.retry.next_delay)
            value = exc
        except Exception as exc:  # noqa: BLE001 - a user's policy: fail this call, never leave it pending
            value = _policy_failed(node, value, exc)
        self._reject(node, value)

    def _retry_scheduled(self, node: PromiseNode, attempt: int, error: BaseException, delay: float) -> None:
        if EventKind.RETRY_SCHEDULED in self._wanted:  # retry_log prints it (a warning on logger vow.retry)
            self._emit(EventKind.RETRY_SCHEDULED, node.id, node.root.id, node.parent_id, node.func, node.kind,
                       attempt, error=_describe(error), delay=delay, key=node.key, created_at=node.created_at)

    def _arm_sleep(self, node: PromiseNode) -> None:
        if node.state is _PENDING and not node.root.done:
            node.timer = self.timers.at_wall(node.deadline or 0.0, self._wake_sleep, node, due=node.due)

    def _wake_sleep(self, node: PromiseNode) -> None:
        node.timer = None
        if node.state is _PENDING and not node.root.done:
            self.settle(node, State.RESOLVED, None, None, "null")

    def _arm_deadline(self, node: PromiseNode) -> None:
        if node.state is _PENDING and not node.root.done:
            node.timer = self.timers.at_wall(node.deadline or 0.0, self._deadline, node)

    def _deadline(self, node: PromiseNode) -> None:
        node.timer = None
        if node.state is not _PENDING or node.root.done:
            return
        text = self.codec.encode(PromiseTimeoutError(f"{node.label()} timed out"))
        self.settle(node, State.TIMEDOUT, None, self.codec.decode(text), text)

    # ------------------------------------------------------------------ the store disagrees
    def _existing(self, rid: str, record: PromiseRecord, found: dict[str, Any]) -> None:
        """A promise root ``rid`` made was in the store already: an id given twice, or one met again
        after it settled and left memory. The stored outcome stands; an id that belongs to another
        run fails this one. ``found``: every such record of the commit, by id."""
        root = self._roots.get(rid)
        node = root.live.get(record.id) if root is not None else None
        if root is None or node is None or node.state is not _PENDING:
            return
        if record.root != rid:
            assert root.run is not None
            # The row is the other run's: failing this run must not cancel it along with this run's own.
            del root.live[record.id]
            node.state = State.CANCELED
            self._reject(root.run.node, VowError(
                f"promise id {record.id!r} is already used by run {record.root!r}; ids given with "
                ".options(id=...) must be unique across runs (put the workflow id in them: f\"{ctx.id}.name\")"))
            return
        if not same_function(record.func, node.func) or record.kind is not node.kind:
            # The first call settled and left memory; this one is to another function. The id and
            # its row are the first call's: this one fails in memory, storing nothing (a replay
            # meets the same row and fails it the same way).
            root.live.pop(record.id, None)
            if node.child is not None:  # a child workflow: its body ran before this commit; stop what it made
                self._stop_body(root, node, found)
            node.state = State.REJECTED
            node.error = duplicate_id(record.id, record.func or record.kind.value, node.func or node.kind.value)
            self._wake(node)
            return
        if record.settled:
            root.live.pop(record.id, None)
            fill_from_record(node, record, self.codec)
            if node.child is not None:  # a child workflow met again after it settled: its body stops here
                self._stop_body(root, node, found)
            self._wake(node)

    def _stop_body(self, root: RootRun, node: PromiseNode, found: dict[str, Any]) -> None:
        """The child workflow ``node`` met an id the store held already: close the body that ran before
        this commit, and stop what it made, before any of its leaves starts. A branch the commit found
        stored (the earlier call's, settled) keeps its outcome, nothing written for it; one it stored
        just now, pending, is canceled."""
        child = node.child
        assert child is not None
        child.close()
        for other in [n for n in root.live.values() if _under(n, node)]:
            if other.id in found:
                del root.live[other.id]
                other.state = State.CANCELED  # nothing waits for it, and nothing may start it
            else:
                self._cancel(other)

    def _replay(self, root: RootRun, won: dict[str, PromiseRecord]) -> None:
        """A commit of ``root`` lost to outcomes stored from outside (``won``): nothing of it was
        written; drop this incarnation and step the workflow again from what the store holds."""
        if self._roots.get(root.id) is not root or root.run is None:
            return
        _log.info("replaying %s from the store: %s settled otherwise first", root.id, ", ".join(sorted(won)))
        if root.unsaved:  # outcomes of leaves that ran: the replayed run takes them instead of running them again
            kept = self._orphans.setdefault(root.id, {})
            for result in root.unsaved:
                kept[result[0]] = result
        self.committer.drop(root.id)
        _close_runs(root)
        root.done = True
        run = root.run
        try:
            tree = self.store.tree(root.id)
        except Exception as exc:  # noqa: BLE001
            self._abort(root, exc)
            return
        record = next((r for r in tree if r.id == root.id), None)
        if record is None or record.settled:
            self._stop_settled_root(root, record)
            return
        fresh = RootRun(root.id, root.token, {r.id: r for r in tree if r.id != root.id}, root.limit,
                        root.args_text, root.futures, max(record.created_at, root.stamped))
        self._roots[root.id] = fresh
        self._begin_root(fresh, record, run.fn, run.args, run.kwargs, run.policy)

    def _stopped(self, root: RootRun) -> None:
        """Tell observers this process stops running ``root`` without settling it."""
        if EventKind.STOPPED in self._wanted and root.run is not None:
            node = root.run.node
            self._emit(EventKind.STOPPED, root.id, root.id, None, node.func, Kind.WORKFLOW, node.attempt)

    def _lose(self, root: RootRun) -> None:
        """Another worker holds ``root``'s lease now, or it was settled outside: stop here; callers get
        the stored result (at once when there is one, or when the other worker stores it)."""
        if self._roots.get(root.id) is not root:
            return
        try:
            record = self.store.get(root.id)
        except Exception:  # noqa: BLE001 - cannot tell: treat it as taken over, the remote wait reads it later
            record = None
        if record is not None and record.settled:  # canceled (or settled) from outside: nothing was taken
            self._stop_settled_root(root, record)
            return
        self._stopped(root)
        root.done = True
        self.committer.drop(root.id)
        _close_runs(root)
        self._forget(root, release=False)
        _log.warning("lost the lease on %s to another worker; waiting for its stored result", root.id,
                     extra={"vow_stop": "lease_lost", "vow_root": root.id})
        for future in root.futures:
            req = StartRequest.resume(root.id)
            req.future = future
            self._wait_remote(req)

    def _abort(self, root: RootRun, error: BaseException) -> None:
        if self._roots.get(root.id) is not root:
            return
        self._stopped(root)
        root.done = True
        self.committer.drop(root.id)
        _close_runs(root)
        self._forget(root)
        _log.warning("workflow %s stopped: %s", root.id, error)
        self._answers += [(future, None, error) for future in root.futures]

    def _stop_settled_root(self, root: RootRun, record: PromiseRecord | None) -> None:
        if record is not None and EventKind.SETTLED in self._wanted and root.run is not None:
            node = root.run.node
            self._emit(EventKind.SETTLED, root.id, root.id, None, node.func, Kind.WORKFLOW, node.attempt,
                       state=record.state.value)
        else:
            self._stopped(root)
        root.done = True
        self.committer.drop(root.id)
        _close_runs(root)
        self._forget(root)
        if record is not None:
            value, error = record_outcome(record, self.codec)
        else:
            value, error = None, PromiseNotFoundError(f"workflow {root.id!r} is gone from the store")
        self._answers += [(future, value, error) for future in root.futures]

    # ------------------------------------------------------------------ outside changes
    def _on_changes(self, feed: ChangeFeed) -> None:
        if feed.complete:
            ids = [pid for rid, pid in feed.entries if rid in self._roots]
        else:  # the feed moved past us: look at everything we hold
            ids = [pid for root in self._roots.values() for pid in (root.id, *root.live)]
        if not ids:
            return
        for record in self.store.get_many(ids).values():
            self._outside(record)

    def _outside(self, record: PromiseRecord) -> None:
        """Apply a promise settled from outside (already stored: it may act at once)."""
        root = self._roots.get(record.root)
        if root is None or not record.settled:
            return
        if record.id == root.id:
            self._stop_settled_root(root, record)
            return
        node = root.live.pop(record.id, None)
        if node is None or node.state is not _PENDING:
            return
        fill_from_record(node, record, self.codec)
        if node.timer is not None:
            self.timers.cancel(node.timer)
            node.timer = None
        if EventKind.SETTLED in self._wanted:
            self._emit(EventKind.SETTLED, node.id, root.id, node.parent_id, node.func, node.kind, node.attempt,
                       state=record.state.value, created_at=node.created_at)
        if node.child is not None:
            self._stop_under(node)
        self._wake(node)

    def _on_remote(self, records: dict[str, PromiseRecord], free: set[str]) -> None:
        for rid in list(self._remote):
            record = records.get(rid)
            if record is None:
                continue
            if record.settled:
                self.watcher.unwatch_remote(rid)
                for req in self._remote.pop(rid):
                    self._answer_from(req.future, record)
            elif rid in free and rid not in self._roots:
                try:
                    lease = self.keeper.claim(rid)
                except Exception:  # noqa: BLE001 - look again next time
                    _log.warning("claiming %s failed", rid, exc_info=True)
                    continue
                if lease is None:
                    continue
                self.watcher.unwatch_remote(rid)
                waiting = self._remote.pop(rid)
                first = waiting[0]
                self._guarded(first, self._resume, first, record, lease)
                root = self._roots.get(rid)
                for other in waiting[1:]:
                    if root is not None:
                        root.futures.append(other.future)
                    else:
                        self._starts.append(other)

    # ------------------------------------------------------------------ shutdown
    def _shutdown(self) -> None:
        try:
            self._round()
        except Exception:  # noqa: BLE001
            _log.exception("vow engine: the last round failed")
        self._answer()
        error = VowError("the vow client was closed; the workflow stays pending and resumes on the next start")
        while True:  # starts that raced with the close: answer them rather than leave them waiting
            try:
                msg = self.inbox.get_nowait()
            except queue.Empty:
                break
            if msg[0] == _START:
                self._starts.append(msg[1])
        for req in self._starts:
            req.fail(error)
        self._starts = []
        leases = []
        for root in list(self._roots.values()):
            self._stopped(root)
            root.done = True
            _close_runs(root)
            lease = self.keeper.forget(root.id)
            if lease is not None:
                leases.append(lease)
            for future in root.futures:
                if not future.done():
                    future.set_exception(error)
        self._roots.clear()
        if leases:
            try:
                self.store.release_many(leases)
            except Exception:  # noqa: BLE001
                pass
        for requests in self._remote.values():
            for req in requests:
                req.fail(error)
        self._remote.clear()

    def _fail_everything(self, error: BaseException) -> None:
        for req in self._starts:
            req.fail(error)
        for root in self._roots.values():
            for future in root.futures:
                if not future.done():
                    future.set_exception(error)
        for requests in self._remote.values():
            for req in requests:
                req.fail(error)

    # ------------------------------------------------------------------ observers
    def _emit(self, kind: EventKind, id: str, root: str, parent: str | None, func: str, promise_kind: Kind,
              attempt: int, state: str | None = None, error: str | None = None, delay: float | None = None,
              key: str = "", created_at: float | None = None) -> None:
        audience = self._wanted.get(kind)
        if not audience:
            return
        event = Event(kind, id, root, parent, func, promise_kind.value, attempt, time.time(), state, error, delay,
                      key, created_at)
        for observer in audience:
            try:
                observer.on_event(event)
            except BaseException:  # noqa: BLE001 - an observer must never break a workflow, nor sys.exit() the engine
                _log.warning("observer %r failed on %s", observer, kind, exc_info=True)


def store_clock(store: Any) -> Callable[[], float]:
    """The store's clock as this process reads it: this machine's clock, shifted by the store's offset
    when the store keeps its own (a database server's); measured once, when the engine is made, from
    the quickest of a few readings (a slow round trip would skew it by half its length)."""
    offset = store.now() - time.time()
    if abs(offset) >= 0.002:  # a server's clock: the reading with the shortest round trip, against its middle
        readings = []
        for _ in range(5):
            before = time.time()
            theirs = store.now()
            after = time.time()
            readings.append((after - before, theirs - (before + after) / 2))
        offset = min(readings)[1]
    if abs(offset) < 0.002:  # the same clock (SQLite, memory): no shift, no extra call per read
        return time.time
    return lambda: time.time() + offset


def _not_held(fn: Any) -> str:
    """The stepper's ``name_of`` while the engine holds no catalog: nothing steps then."""
    raise VowError(f"the vow engine stepped a workflow while it held no client's catalog (naming {fn!r})")


def _under(node: PromiseNode, ancestor: PromiseNode) -> bool:
    """Whether ``node`` was made, directly or not, by the workflow run of ``ancestor``."""
    run = node.run
    while run is not None:
        if run.node is ancestor:
            return True
        run = run.node.run
    return False


def _close_runs(root: RootRun) -> None:
    """Close every generator of ``root`` (its body and the child workflows it has pending)."""
    for node in list(root.live.values()):
        if node.child is not None:
            node.child.close()
    if root.run is not None:
        root.run.close()


def _policy_failed(node: PromiseNode, error: BaseException, exc: Exception) -> ConfigError:
    """The error a call fails with when its retry policy raised while judging ``error``."""
    failed = ConfigError(f"{node.label()} failed ({_describe(error)}) and its retry policy could not say whether "
                         f"to try again: {_describe(exc)}; fix the policy's delay_for")
    failed.__cause__ = exc
    return failed


def _describe(error: BaseException | None) -> str:
    if error is None:
        return ""
    return f"{type(error).__name__}: {message_of(error)}"

