"""What a workflow yields: calls, handles and combinators, and the context that makes them.

A workflow is a generator. Every ``yield`` hands the engine one of:

* a :class:`Call` from ``ctx.run`` (call and wait for the value), ``ctx.begin_run`` (start and
  get a :class:`Handle` back at once), ``ctx.sleep`` or ``ctx.promise``;
* a :class:`Handle` (wait for that promise);
* a combinator from ``ctx.all``, ``ctx.any``, ``ctx.first`` or ``ctx.all_settled``.

Nothing here touches the store: the engine turns each yielded object into a durable promise.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from vow.records import Kind, State
from vow.retry import policy_problem

_log = logging.getLogger("vow.workflow")


@attrs.frozen(slots=True)
class Options:
    """Per-call options. ``id`` replaces the ``{parent}.{n}`` id; ``timeout`` is in seconds."""

    id: str | None = None
    retry: Any = None
    timeout: float | None = None
    non_retryable: tuple[type[BaseException], ...] = ()
    idempotency_key: str | None = None
    tags: dict[str, str] = attrs.field(factory=dict)


_NO_OPTIONS = Options()


class Call:
    """A call a workflow wants made; yield it. ``.options(...)`` returns a copy with options set."""

    __slots__ = ("kind", "fn", "args", "kwargs", "wait", "opts", "seconds", "patch")

    def __init__(self, kind: Kind, fn: Callable[..., Any] | None, args: tuple[Any, ...],
                 kwargs: dict[str, Any], wait: bool, opts: Options = _NO_OPTIONS,
                 seconds: float | None = None, patch: bool = False) -> None:
        self.kind = kind
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.wait = wait
        self.opts = opts
        self.seconds = seconds
        self.patch = patch  # a ctx.patched(name) marker, not a call

    def options(self, *, id: str | None = None, retry: Any = None, timeout: float | None = None,
                non_retryable: Iterable[type[BaseException]] | None = None,
                idempotency_key: str | None = None, tags: dict[str, str] | None = None) -> Call:
        """This call with options: a fixed ``id``, a ``retry`` policy, a ``timeout`` in seconds,
        exception types that must not be retried, the ``idempotency_key`` its leaf receives, ``tags``.

        An ``id`` names one call: given again in the run for the same function, it is that call
        (waited on, or its stored outcome); given to another function, that call fails with
        :class:`~vow.errors.DuplicateIdError` where it is made, as does one given the id of a workflow
        it is made in, or an id in the form of vow's own timers and markers (``{id}.backoff.{n}``,
        ``{id}.throttle.{n}.{m}``, ``{id}.patched.{name}``)."""
        if self.patch:  # its id is the change's name, and it calls nothing to retry or time out
            raise TypeError(f"ctx.patched() takes no .options(...): yield ctx.patched({self.opts.id!r}) as it is")
        o = self.opts
        problem = policy_problem(retry)
        if problem is not None:
            raise TypeError(f".options(retry=...): {problem}")
        opts = Options(
            id=o.id if id is None else _id(id, ".options(id=...)"),
            retry=o.retry if retry is None else retry,
            timeout=o.timeout if timeout is None else _seconds(timeout, ".options(timeout=...)"),
            non_retryable=o.non_retryable if non_retryable is None else _exception_types(non_retryable),
            idempotency_key=o.idempotency_key if idempotency_key is None else _id(
                idempotency_key, ".options(idempotency_key=...)", "key"),
            tags=o.tags if tags is None else {**o.tags, **tags},
        )
        return Call(self.kind, self.fn, self.args, self.kwargs, self.wait, opts, self.seconds)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", None) or self.kind.value
        return f"<Call {name} wait={self.wait} id={self.opts.id}>"


class Handle:
    """A durable promise a workflow started; yield it to wait for its value.

    ``id`` is the promise id; ``state``, ``value``, ``error`` (the error of a promise that settled
    otherwise than resolved, as stored; ``None`` until then) and ``attempt`` (1, then one more per
    retry) are what this run knows of it; ``done()`` says whether it settled. The object is the
    engine's own record of the promise (:class:`vow.engine.model.PromiseNode`), so a fan-out keeps
    one object per branch, not two. Read its fields, never set them: they are the engine's, and a
    field set by the workflow changes what this run sees (never what is stored). Handles come from
    ``yield ctx.begin_run(...)`` and ``yield ctx.promise(...)``; a copy is the handle itself.
    """

    __slots__ = ()

    def __init__(self) -> None:
        raise TypeError("a Handle comes from `yield ctx.begin_run(...)` or `yield ctx.promise(...)`; "
                        "it cannot be made by hand")

    def __copy__(self) -> Handle:
        return self  # one promise, one handle: a copy must be woken with the original

    def __deepcopy__(self, memo: dict[int, Any]) -> Handle:
        return self

    id: str
    state: State
    value: Any
    error: BaseException | None
    attempt: int

    def done(self) -> bool:
        """Whether the promise has settled."""
        return self.state is not State.PENDING

    def __repr__(self) -> str:
        return f"<Handle {self.id} {self.state.value}>"


def _seconds(value: Any, what: str) -> float:
    """``value`` as seconds for ``what``: a number (``inf``: never), not negative, not ``nan`` (which
    passes every comparison's ``False``: it had meant a sleep or deadline that never came)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} takes seconds (a number >= 0), got {value!r}")
    seconds = float(value)
    if not seconds >= 0:
        raise ValueError(f"{what} takes seconds >= 0, got {value}")
    return seconds


def _id(value: Any, what: str, noun: str = "id") -> str:
    """``value`` as a promise id or key: text, not empty (an empty one had been ignored for the default)."""
    text = str(value)
    if not text:
        raise ValueError(f"{what} takes a non-empty {noun} (leave it out for the default), got {value!r}")
    return text


def _exception_types(types: Iterable[Any]) -> tuple[type[BaseException], ...]:
    """``non_retryable`` as a tuple of exception classes (anything else had failed only when the call did)."""
    types = tuple(types)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise TypeError(f".options(non_retryable=...) takes exception classes (ValueError, say), got {t!r}")
    return types


@attrs.frozen(slots=True)
class Outcome:
    """One branch's result as ``ctx.all_settled`` reports it."""

    id: str
    state: State
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.state is State.RESOLVED


class Combinator:
    """Wait on many handles at once; ``mode`` is ``all``, ``any``, ``first`` or ``all_settled``."""

    __slots__ = ("mode", "handles", "nodes", "pending", "failed")

    def __init__(self, mode: str, handles: Sequence[Handle]) -> None:
        handles = list(handles)
        for h in handles:
            if not isinstance(h, Handle):
                raise TypeError(f"ctx.{mode}() takes handles from ctx.begin_run/ctx.promise, got {h!r}")
        self.mode = mode
        self.handles = handles
        self.nodes: list[Any] = handles  # each handle is the engine's record of its promise (a PromiseNode)
        self.pending = 0  # the engine's running counts, so each settled branch costs O(1)
        self.failed = 0

    def __repr__(self) -> str:
        return f"<{self.mode} of {len(self.handles)}>"


class Context:
    """The context of one workflow execution: how it makes durable calls."""

    __slots__ = ("id", "root_id", "parent_id", "attempt", "tags", "plugins")

    def __init__(self, id: str, root_id: str, parent_id: str | None, attempt: int = 1,
                 tags: dict[str, str] | None = None, plugins: Any = None) -> None:
        self.id = id
        self.root_id = root_id
        self.parent_id = parent_id
        self.attempt = attempt
        self.tags = tags or {}
        self.plugins = plugins  # the client's registries (channels, providers, retry policies)

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Call:
        """Call ``fn(ctx, *args, **kwargs)`` durably and wait: ``value = yield ctx.run(fn, ...)``."""
        return Call(Kind.STEP, fn, args, kwargs, True)

    def begin_run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Call:
        """Start ``fn(ctx, *args, **kwargs)`` durably without waiting: ``handle = yield ctx.begin_run(...)``."""
        return Call(Kind.STEP, fn, args, kwargs, False)

    def sleep(self, seconds: float) -> Call:
        """A durable timer: ``yield ctx.sleep(60)``; a restart sleeps only what is left."""
        return Call(Kind.SLEEP, None, (), {}, True, seconds=_seconds(seconds, "ctx.sleep()"))

    def promise(self, id: str | None = None, *, timeout: float | None = None) -> Call:
        """A promise settled from outside (``vow.resolve(id, value)``); yields a :class:`Handle`."""
        return Call(Kind.PROMISE, None, (), {}, False, Options(
            id=None if id is None else _id(id, "ctx.promise(id=...)"),
            timeout=None if timeout is None else _seconds(timeout, "ctx.promise(timeout=...)")))

    def patched(self, name: str) -> Call:
        """Whether this run takes the code path added by change ``name``: ``if (yield ctx.patched("add-sms")):``.

        How to change a workflow while runs of the old code are pending (Temporal's pattern): a run
        that started after the change, or that reaches this point for the first time, records the
        change and gets ``True`` (and gets it again on every replay); a run that went past this point
        under the old code gets ``False`` and replays the old path, so its stored calls still match.
        Once no run of the old code is pending, drop the ``if`` and keep the new path.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"ctx.patched() takes a non-empty change name, got {name!r}")
        return Call(Kind.STEP, None, (), {}, True, Options(id=name), patch=True)

    def all(self, handles: Iterable[Handle]) -> Combinator:
        """Wait for every handle; the list of values, or the first error."""
        return Combinator("all", list(handles))

    def any(self, handles: Iterable[Handle]) -> Combinator:
        """The value of the first handle to resolve; the last error if every one fails."""
        return Combinator("any", list(handles))

    def first(self, handles: Iterable[Handle]) -> Combinator:
        """The outcome of the first handle to settle, resolved or not."""
        return Combinator("first", list(handles))

    def all_settled(self, handles: Iterable[Handle]) -> Combinator:
        """Wait for every handle; a list of :class:`Outcome`, so no branch's result is lost."""
        return Combinator("all_settled", list(handles))

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger that prefixes each line with the workflow id."""
        return logging.LoggerAdapter(_log, {"promise_id": self.id})

    def __repr__(self) -> str:
        return f"<Context {self.id}>"
