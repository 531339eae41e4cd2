"""The stepper: advances workflow generators and turns what they yield into durable promises.

A workflow is a generator. Stepping it runs its body up to the next ``yield`` of something not
settled yet; every call it yields becomes a promise with a deterministic id (``{workflow id}.{n}``
by call order, or the id the caller gave). On a replay the stepper meets the promises the store
already holds: a settled one answers at once with its stored outcome; one that is still pending is
adopted (the engine carries on with it) — and each must be the same call as before. A stored
promise whose function, kind or arguments differ means the workflow changed under the run: the
root stops with :class:`~vow.errors.NonDeterminismError` naming the promise and both sides, and
nothing is written for it.

The body may run ahead of the commit that stores what it yielded: it has no effects of its own
(those belong to leaves, which start only after that commit), and if the commit is refused the
engine throws the run away and replays it from the store.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any, Protocol

from vow import encoding
from vow.context import Call, Combinator, Context
from vow.engine.committer import Committer
from vow.engine.model import PromiseNode, RootRun, WorkflowRun
from vow.errors import DuplicateIdError, EncodeError, NonDeterminismError
from vow.naming import lasting, looked_up, refuse_unstorable
from vow.outcomes import combine, fill_from_record, outcome
from vow.records import Kind, PromiseRecord, State, make_record
from vow.reserved import BACKOFF_FUNC, OWN_ID, OWN_ID_FORMS, PATCH_FUNC

__all__ = ["CALLS_PER_COMMIT", "PATCH_FUNC", "Host", "Stepper", "check_text"]

_PENDING = State.PENDING
CALLS_PER_COMMIT = 1000
"""Calls a workflow makes without waiting before the stepper pauses it until the engine has
committed them: a 100,000-branch fan-out peaks 29 MB lower. Counted per run, so a round of many
runs that each make a few calls is still one commit."""


_CALL_KINDS = "yield ctx.run(...), ctx.begin_run(...), ctx.sleep(...), ctx.promise(...), a handle, " \
              "or ctx.all/any/first/all_settled(...)"


class Host(Protocol):
    """What the stepper needs from the engine."""

    codec: Any
    plugins: Any  # the client's registries, handed to every workflow's context
    observed: bool  # whether anyone observes events (``created``/``started`` are called only then)

    def launch(self, node: PromiseNode, writes: Any = None) -> None:
        """Carry on with a pending promise just made or adopted (start its leaf, timer, child run)."""

    def finished(self, run: WorkflowRun, ok: bool, value: Any) -> None:
        """A workflow body returned ``value`` (ok) or raised it."""

    def abort(self, root: RootRun, error: BaseException) -> None:
        """Stop running ``root`` here without settling it."""

    def started(self, run: WorkflowRun) -> None:
        """A workflow body began (for observers)."""

    def created(self, node: PromiseNode) -> None:
        """A promise was stored (for observers; called after its commit)."""


class Stepper:
    """Steps the generators of one engine."""

    def __init__(self, host: Host, committer: Committer, *, now: Callable[[], float],
                 name_of: Callable[[Any], str]) -> None:
        self._host = host
        self._committer = committer
        self._now = now
        self.name_of = name_of  # the engine lends its client's while it holds the client's catalog
        self._functions: dict[Any, tuple[bool, str]] = {}  # fn -> (a generator function?, its stored name)
        self.ready: list[tuple[WorkflowRun, Any, BaseException | None]] = []

    # -- bodies

    def begin(self, run: WorkflowRun) -> None:
        """Start (or start again, on a workflow retry) the body of ``run``."""
        node = run.node
        ctx = Context(run.id, run.root.id, node.parent_id, node.attempt, node.tags, self._host.plugins)
        run.counter = 0
        run.waiting = None
        try:
            gen = run.fn(ctx, *run.args, **run.kwargs)
        except BaseException as exc:  # noqa: BLE001 - bad arguments fail the workflow like any error
            self._host.finished(run, False, exc)
            return
        if not inspect.isgenerator(gen):
            self._host.finished(run, False, TypeError(
                f"workflow {node.func!r} must be a generator function (use yield); it returned {gen!r}"))
            return
        run.gen = gen
        self._host.started(run)
        self.ready.append((run, None, None))

    def step_ready(self) -> None:
        """Step every run that can move, until none can."""
        ready = self.ready
        paused = False
        while ready and not paused:  # a run paused for a commit: let the engine commit first
            batch, self.ready = ready, []
            for run, value, exc in batch:
                if self._step(run, value, exc):
                    paused = True
            ready = self.ready

    def _step(self, run: WorkflowRun, value: Any, exc: BaseException | None) -> bool:
        """Run ``run`` until it waits or ends; True when it was paused instead, to have what it
        made committed first (it is back on the ready list)."""
        gen = run.gen
        if gen is None or run.root.done:
            return False
        first = run.counter
        while True:
            try:
                yielded = gen.send(value) if exc is None else gen.throw(exc)
            except StopIteration as stop:
                run.gen = None
                self._host.finished(run, True, stop.value)
                return False
            except NonDeterminismError as error:
                self._host.abort(run.root, error)
                return False
            except BaseException as error:  # noqa: BLE001 - the workflow's own failure
                run.gen = None
                self._host.finished(run, False, error)
                return False
            value, exc = None, None
            if type(yielded) is Call:
                try:
                    node = self._call(run, yielded)
                except NonDeterminismError as error:
                    self._host.abort(run.root, error)
                    return False
                except (EncodeError, DuplicateIdError, TypeError) as error:
                    exc = error
                    continue
                if not yielded.wait:
                    value = node  # the workflow's handle
                    if run.counter - first >= CALLS_PER_COMMIT:  # a wide fan-out: commit what it made so far
                        self.ready.append((run, value, None))
                        return True
                    continue
            elif type(yielded) is PromiseNode:  # a handle
                node = yielded
                if node.root is not run.root:
                    exc = _foreign(run, node)
                    continue
            elif type(yielded) is Combinator:
                foreign = next((n for n in yielded.nodes if n.root is not run.root), None)
                if foreign is not None:
                    exc = _foreign(run, foreign)
                    continue
                done, value, exc = combine(yielded)
                if done:
                    continue
                run.waiting = yielded
                waiter = (run, yielded)
                for n in yielded.nodes:
                    if n.state is State.PENDING:
                        n.add_waiter(waiter)
                return False
            else:
                exc = TypeError(f"workflow {run.node.func!r} yielded {yielded!r}; {_CALL_KINDS}")
                continue
            if node.state is not State.PENDING:
                value, exc = outcome(node)
                continue
            run.waiting = node
            node.add_waiter((run, node))
            return False

    # -- calls

    def _call(self, run: WorkflowRun, call: Call) -> PromiseNode:
        if call.patch:
            return self._patched(run, call.opts.id or "")
        root = run.root
        run.counter += 1
        opts = call.opts
        cid = opts.id or f"{run.id}.{run.counter}"
        kind = call.kind
        if kind is Kind.STEP:
            fn = call.fn
            known = looked_up(self._functions, fn)
            if known is None:
                known = self._learn(fn)
            generator, func = known
            if generator:
                kind = Kind.WORKFLOW
        else:
            func = ""
        if opts.id is not None or opts.tags or opts.idempotency_key is not None:
            check_text(cid, opts.tags, func or kind.value, opts.idempotency_key)
            if opts.id is not None and OWN_ID.search(cid):  # only given ids: counted ones never match
                raise DuplicateIdError(f"promise id {cid!r} has the form of vow's own bookkeeping ids "
                                       f"({OWN_ID_FORMS}), which vow stores without asking: give this call another id")
            above: WorkflowRun | None = run
            while above is not None:  # only given ids: a counted one is longer than its run's
                if above.id == cid:
                    raise DuplicateIdError(
                        f"promise id {cid!r} is the id of workflow {above.node.func!r}, which this call is made in "
                        "or under: the call would be that workflow and wait for itself. Give it another id")
                above = above.node.run
        node = root.live.get(cid)
        if node is not None:  # the same id again while it is pending: the same promise
            if node.func != func or node.kind is not kind:  # made by this very code: not a change of code
                raise duplicate_id(cid, node.func or node.kind.value, func or kind.value)
            return node
        record = root.stored.pop(cid, None) if root.stored else None
        if record is not None:
            return self._adopt(run, call, record, kind, func)
        return self._create(run, call, cid, kind, func)

    def _create(self, run: WorkflowRun, call: Call, cid: str, kind: Kind, func: str) -> PromiseNode:
        root = run.root
        opts = call.opts
        now = self._now()
        args_text = encoding.plain_args(call.args, call.kwargs) if call.fn else ""
        if args_text is None:
            args_text = encoding.encode_args(call.args, call.kwargs, what=f"{func} ({cid})")
        deadline = due = None
        if kind is Kind.SLEEP:
            seconds = call.seconds or 0.0
            deadline, due = now + seconds, time.monotonic() + seconds
        elif opts.timeout is not None:
            deadline = now + opts.timeout
        key = opts.idempotency_key or cid
        writes = self._committer.writes(root.id, root.token)
        writes.creates.append(make_record(cid, _PENDING, kind, root.id, func, args_text, None, run.id, deadline, key, 1,
                                          root.stamp(now), None, opts.tags))
        node = PromiseNode(cid, kind, func, root, run, call, 1, key, deadline, opts.tags)
        node.due = due
        root.live[cid] = node
        if self._host.observed:
            writes.actions.append((self._host.created, (node,)))
        self._host.launch(node, writes)
        return node

    def _adopt(self, run: WorkflowRun, call: Call, record: PromiseRecord, kind: Kind, func: str) -> PromiseNode:
        root = run.root
        if not same_function(record.func, func) or record.kind is not kind:
            if _fresh(run):
                return self._create(run, call, record.id, kind, func)
            raise NonDeterminismError(_changed(record.id, record.func or record.kind.value, func or kind.value))
        if call.fn is not None:
            args_text = encoding.encode_args(call.args, call.kwargs, what=lambda: f"{func} ({record.id})")
            if args_text != record.args:
                if _fresh(run):
                    return self._create(run, call, record.id, kind, func)
                raise NonDeterminismError(
                    f"the workflow changed since promise {record.id!r} was stored: it called {record.func!r} "
                    f"with arguments {record.args}, now with {args_text}. A replay must make the same calls "
                    "(no random() or time.time() in arguments: compute them in a leaf). Restore the old code to "
                    "finish this run, guard the change with ctx.patched(...), or start the new code under a new id.")
        node = PromiseNode(record.id, kind, record.func, root, run, call, record.attempt or 1,
                           record.idempotency_key or record.id, record.timeout, record.tags)
        if record.settled:
            fill_from_record(node, record, self._host.codec)
        else:
            node.adopted = True
            node.created_at = record.created_at
            root.live[record.id] = node
            self._host.launch(node)
        return node

    def _patched(self, run: WorkflowRun, name: str) -> PromiseNode:
        """``ctx.patched(name)``: a marker outside the call numbering, so old runs keep their ids."""
        root = run.root
        pid = f"{run.id}.patched.{name}"
        check_text(pid, {}, "ctx.patched")
        node = PromiseNode(pid, Kind.STEP, PATCH_FUNC, root, run, None, 1, pid, None, {})
        # Asked again in the same run (a loop, a second place): the first answer, live and on a replay
        # alike (a replay's later askings had found the marker taken and the run's later calls stored).
        known = run.patches.get(name) if run.patches is not None else None
        if known is not None:
            node.state, node.value = State.RESOLVED, known
            return node
        record = root.stored.pop(pid, None) if root.stored else None
        if record is not None:  # this run took the new path before: again
            fill_from_record(node, record, self._host.codec)
        elif root.stored and any(r.parent == run.id and r.func != BACKOFF_FUNC for r in root.stored.values()):
            # it went past here under the old code (a later call of it is stored; a retry's back-off
            # timer under the workflow is none)
            node.state, node.value = State.RESOLVED, False
        else:  # first time here: take the new path, and remember it
            now = root.stamp(self._now())
            self._committer.writes(root.id, root.token).creates.append(PromiseRecord(
                pid, State.RESOLVED, Kind.STEP, root.id, PATCH_FUNC, "", "true", run.id, None, pid, 1, now, now, {}))
            node.state, node.value, node.settled_at = State.RESOLVED, True, now
        if run.patches is None:
            run.patches = {}
        run.patches[name] = bool(node.value)
        return node

    def _learn(self, fn: Any) -> tuple[bool, str]:
        """What a call needs to know about ``fn``, once per function: whether it is a generator
        function (a child workflow) and the name it is stored under."""
        if fn is None or not callable(fn):
            raise TypeError(f"ctx.run/begin_run needs a function, got {fn!r}")
        known = (inspect.isgeneratorfunction(fn), self.name_of(fn))
        if lasting(fn):  # not a closure or partial made for this call: kept, it would never be freed
            self._functions[fn] = known
        return known


def _fresh(run: WorkflowRun) -> bool:
    """Whether ``run`` is a child workflow made in this process whose body runs for the first time. None
    of the stored records can be its own then: one it meets under its id was another call's, whose id its
    own call took (the commit finds the id there and stops this body). Its call is made afresh rather
    than refused as a changed workflow, so the run goes on as it did before a restart."""
    node = run.node
    return node.run is not None and not node.adopted and node.attempt == 1


def duplicate_id(cid: str, first: str, then: str) -> DuplicateIdError:
    """The error for a call given the id of an earlier call to another function in the same run."""
    return DuplicateIdError(f"promise id {cid!r} is already a call to {first!r} in this run; this call is to "
                            f"{then!r}. Give each call its own id (.options(id=...))")


def _foreign(run: WorkflowRun, node: PromiseNode) -> TypeError:
    """The error for a workflow that yielded a handle another run made (kept in a global, say)."""
    return TypeError(
        f"workflow {run.id!r} waited on handle {node.id!r}, which belongs to run {node.root.id!r}: a workflow "
        "can wait only on calls its own run made (after a restart it could not find that promise again). "
        "Pass values between runs as arguments, or through a promise (ctx.promise, vow.resolve)")


def same_function(stored: str, now: str) -> bool:
    """Whether a stored function name and the current one name the same function (a name stored by
    vow 0.1 for a script run as ``__main__`` lacks the module part; vow 0.2.0 stored a callable
    object under its repr, ``shop.Sms(sender='shop')``, where it is now ``shop.Sms``)."""
    return stored == now or ("." not in stored.rsplit(">", 1)[-1] and now.endswith("." + stored)) or (
        stored.startswith(now + "("))


MAX_ID_BYTES = 1024
"""The longest id a workflow or an explicit call id may have, in bytes of UTF-8: every store indexes
ids, and PostgreSQL's index refuses an entry over about 2,700 bytes (its commit failed, and the run
stopped there for good); the numbered ids of calls below a root add a few bytes a level."""


def check_text(cid: str, tags: dict[str, str], what: str, key: str | None = None) -> None:
    """Refuse, at the call, an id, idempotency key or tag that cannot be stored as text in every store:
    a lone surrogate (not UTF-8), a NUL character (PostgreSQL's text holds none), an id over
    :data:`MAX_ID_BYTES`."""
    texts = [cid] if key is None else [cid, key]
    for name, value in tags.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise EncodeError(f"the tags of {what} ({cid}) must map str to str, got {name!r}: {value!r}")
        texts += (name, value)
    try:
        size = len(cid.encode("utf-8"))
        for text in texts[1:]:
            text.encode("utf-8")
    except UnicodeEncodeError:
        refuse_unstorable(texts, f"the id or tags of {what}")
    if size > MAX_ID_BYTES:
        raise EncodeError(f"the id of {what} is {size} bytes long, and an id is at most {MAX_ID_BYTES} bytes of "
                          f"UTF-8 (every store indexes ids: PostgreSQL's index takes about 2,700): shorten it, and "
                          f"keep long data in arguments or tags ({cid[:60]}...)")
    if any("\x00" in text for text in texts):
        refuse_unstorable(texts, f"the id, idempotency key or tags of {what}")


def _changed(cid: str, stored: str, now: str) -> str:
    hint = ""
    if stored.rsplit(".", 1)[-1] == now.rsplit(".", 1)[-1]:
        hint = (" Only the module part differs: the code was loaded under another module name (run it the "
                "same way both times: `python -m package.module`, or `vow worker --app package.module`).")
    return (f"the workflow changed since promise {cid!r} was stored: it was a call to {stored!r}, "
            f"now the workflow calls {now!r} there. Restore the old code to finish this run, "
            f"or start the new code under a new id.{hint}")
