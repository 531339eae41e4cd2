"""vow's events as OpenTelemetry spans and metrics.

One span per promise, nested as the promise tree is: a run's root workflow is the trace's root
span, each call it makes (a leaf, a child workflow, a durable sleep, an outside promise) a child
span of the workflow that made it. The ids come from the promise ids and the time the run's root
was stored (:mod:`vow_otel.ids`), so a run resumed in another process after a crash continues the
same trace, a span whose parent was started by a process that died still finds its parent, and a
run under an id used before (the old run pruned) has a trace of its own.

On a span: ``vow.promise.id``, ``vow.root.id``, ``vow.function``, ``vow.promise.kind``,
``vow.attempt`` (the last one), ``vow.idempotency_key`` (leaves) and, once settled,
``vow.state``. Each attempt is a ``vow.attempt`` span event; each failed attempt that will be
retried, a ``vow.retry`` event with the error and the back-off; a resumed run's root span has a
``vow.resumed`` event. A rejected or timed-out promise records an ``exception`` event and the
span's status is ``ERROR`` with the error as its description.

A span starts when its promise was stored, also when this process found it in the store (a
resumed run's root, a branch adopted on a replay), and ends when its promise settles. A process
that dies (or stops running a run: a ``stopped`` event) leaves its open spans unexported; the
process that takes the run over starts them again, with the same ids.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import Meter, MeterProvider, NoOpMeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from vow.errors import ConfigError
from vow.events import Event, EventKind
from vow_otel import metrics as m
from vow_otel._version import __version__
from vow_otel.ids import PromiseIdGenerator, promise_ids, span_id_for, trace_id_for

if TYPE_CHECKING:
    from vow.leaf import LeafContext

INSTRUMENTATION_NAME = "vow"

# span attribute names
PROMISE_ID = "vow.promise.id"
ROOT_ID = "vow.root.id"
ATTEMPT = "vow.attempt"
IDEMPOTENCY_KEY = "vow.idempotency_key"
RETRY_DELAY = "vow.retry.delay"

_FAILED = {"rejected", "timedout"}


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _split_error(text: str) -> tuple[str, str]:
    """``("TransientError", "503 from the provider")`` from vow's ``"TransientError: 503 ..."``."""
    name, sep, message = text.partition(": ")
    if sep and name.replace(".", "").replace("_", "").isalnum():
        return name, message
    return "", text


class _Open:
    """A promise whose span is open in this process."""

    __slots__ = ("span", "root", "kind")

    def __init__(self, span: Span, root: str, kind: str) -> None:
        self.span = span
        self.root = root
        self.kind = kind


class _Run:
    """A run with spans open in this process: when its root was stored (its ids depend on it) and
    which of its promises' spans are open (root included)."""

    __slots__ = ("created_at", "open")

    def __init__(self, created_at: float | None) -> None:
        self.created_at = created_at
        self.open: set[str] = set()


class OtelObserver:
    """A vow observer that turns events into spans and metrics.

    ``tracer_provider`` must draw ids from :class:`~vow_otel.ids.PromiseIdGenerator` (build it
    with :func:`vow_otel.tracer_provider`): that is what keeps a resumed run in its trace.
    ``on_event`` runs on the engine thread: it only starts, annotates and ends spans (export
    happens on the SDK's batch thread) and adds to counters.
    """

    def __init__(self, tracer_provider: TracerProvider, meter_provider: MeterProvider | None = None) -> None:
        if not isinstance(getattr(tracer_provider, "id_generator", None), PromiseIdGenerator):
            raise ConfigError(
                "vow-otel: the tracer provider must derive span ids from promise ids; build it with "
                "vow_otel.tracer_provider(...) (TracerProvider(id_generator=PromiseIdGenerator(), ...))")
        self.tracer = tracer_provider.get_tracer(INSTRUMENTATION_NAME, __version__)
        meter: Meter = (meter_provider or NoOpMeterProvider()).get_meter(INSTRUMENTATION_NAME, __version__)
        self.instruments = m.Instruments(meter)
        self._open: dict[str, _Open] = {}
        self._runs: dict[str, _Run] = {}  # by root id
        self._handlers = {
            EventKind.CREATED: self._created,
            EventKind.STARTED: self._started,
            EventKind.RETRY_SCHEDULED: self._retry,
            EventKind.SETTLED: self._settled,
            EventKind.RESUMED: self._resumed,
            EventKind.STOPPED: self._stopped,
        }

    # -- events (engine thread)

    def on_event(self, event: Event) -> None:
        """Start, annotate or end the span of ``event``'s promise, and count it."""
        handler = self._handlers.get(event.kind)
        if handler is not None:
            handler(event)

    def _created(self, event: Event) -> None:
        self._span(event)
        self.instruments.created.add(1, self._labels(event))

    def _resumed(self, event: Event) -> None:
        span = self._span(event)
        span.add_event("vow.resumed", {ATTEMPT: event.attempt}, timestamp=_ns(event.time))
        self.instruments.resumed.add(1, {m.FUNCTION: self._function(event)})

    def _started(self, event: Event) -> None:
        span = self._span(event)
        span.set_attribute(ATTEMPT, event.attempt)
        span.add_event("vow.attempt", {ATTEMPT: event.attempt}, timestamp=_ns(event.time))

    def _retry(self, event: Event) -> None:
        span = self._span(event)
        attributes: dict[str, Any] = {ATTEMPT: event.attempt}
        if event.delay is not None:
            attributes[RETRY_DELAY] = event.delay
        if event.error:
            kind, message = _split_error(event.error)
            if kind:
                attributes["exception.type"] = kind
            attributes["exception.message"] = message
        span.add_event("vow.retry", attributes, timestamp=_ns(event.time))
        self.instruments.retries.add(1, self._labels(event))

    def _settled(self, event: Event) -> None:
        span = self._span(event)
        state = event.state or ""
        span.set_attribute("vow.state", state)
        span.set_attribute(ATTEMPT, event.attempt)
        if state in _FAILED:
            description = event.error or state
            kind, message = _split_error(description)
            span.add_event("exception", {"exception.type": kind or state, "exception.message": message},
                           timestamp=_ns(event.time))
            span.set_status(Status(StatusCode.ERROR, description))
        self.instruments.settled.add(1, {**self._labels(event), m.STATE: state})
        self._end(event.id, event.time)
        if event.id == event.root:
            self._end_run(event.root, event.time)

    def _stopped(self, event: Event) -> None:
        """Forget the run's open spans without ending them: the process that goes on with the run
        starts them again with the same ids and exports them when they end."""
        run = self._runs.pop(event.root, None)
        for pid in run.open if run is not None else ():
            self._open.pop(pid, None)

    def _end_run(self, root: str, when: float) -> None:
        """End what is still open under a run that just settled.

        When a run settles, the engine cancels the branches nobody waits for any more (after
        ``ctx.first`` or ``ctx.any``) in the same commit, without an event of their own.
        """
        run = self._runs.get(root)
        for pid in list(run.open if run is not None else ()):
            entry = self._open.get(pid)
            if entry is not None:
                entry.span.set_attribute("vow.state", "canceled")
                self._end(pid, when)
        self._runs.pop(root, None)

    def _end(self, pid: str, when: float) -> None:
        entry = self._open.pop(pid, None)
        if entry is None:
            return
        entry.span.end(end_time=_ns(when))
        run = self._runs.get(entry.root)
        if run is not None:
            run.open.discard(pid)

    # -- spans

    def _span(self, event: Event) -> Span:
        """The open span of ``event``'s promise; started now if this process has not seen it yet
        (it was created here, or by a process that died before it settled)."""
        entry = self._open.get(event.id)
        if entry is not None:
            return entry.span
        attributes: dict[str, Any] = {
            PROMISE_ID: event.id, ROOT_ID: event.root, m.FUNCTION: self._function(event),
            m.KIND: event.promise_kind, ATTEMPT: event.attempt,
        }
        if event.idempotency_key and event.promise_kind == "step":
            attributes[IDEMPOTENCY_KEY] = event.idempotency_key
        run = self._runs.get(event.root)
        if run is None:
            # The root's created (fresh) or resumed event comes first and says when it was stored.
            run = self._runs[event.root] = _Run(event.created_at if event.id == event.root else None)
        if event.id == event.root or event.parent is None:
            parent = otel_context.Context()  # a new trace, whatever is current on this thread
        else:
            parent = trace.set_span_in_context(self._parent_span(event.root, event.parent, run.created_at))
        # A promise found in the store (a resumed run's root, a branch adopted on a replay) began when
        # it was stored, maybe in a process that died: its span starts then, before its children's.
        began = event.time if event.created_at is None else min(event.created_at, event.time)
        with promise_ids(event.root, event.id, run.created_at):
            span = self.tracer.start_span(self._function(event), context=parent, kind=SpanKind.INTERNAL,
                                          attributes=attributes, start_time=_ns(began))
        self._open[event.id] = _Open(span, event.root, event.promise_kind)
        run.open.add(event.id)
        return span

    def _parent_span(self, root: str, parent: str, root_created_at: float | None) -> Span:
        """The parent's span here, or a stand-in with its ids when another process started it."""
        entry = self._open.get(parent)
        if entry is not None:
            return entry.span
        root_entry = self._open.get(root)
        flags = root_entry.span.get_span_context().trace_flags if root_entry else TraceFlags(TraceFlags.SAMPLED)
        return NonRecordingSpan(SpanContext(trace_id_for(root, root_created_at), span_id_for(parent, root_created_at),
                                            is_remote=True, trace_flags=flags))

    @staticmethod
    def _function(event: Event) -> str:
        return event.func or event.promise_kind

    def _labels(self, event: Event) -> dict[str, str]:
        return {m.FUNCTION: self._function(event), m.KIND: event.promise_kind}

    # -- leaves (the leaf's own thread or task)

    @contextlib.contextmanager
    def leaf_scope(self, ctx: LeafContext) -> Iterator[None]:
        """Make the leaf's span current while one attempt runs, and time the attempt.

        HTTP requests the leaf makes (a channel, an image provider) then belong to its span and
        carry its trace in their ``traceparent`` header.
        """
        entry = self._open.get(ctx.id)
        span: Span
        if entry is not None:
            span = entry.span
        else:  # not seen on the engine thread (should not happen): its ids are known all the same
            run = self._runs.get(ctx.root_id)
            created_at = run.created_at if run is not None else None
            span = NonRecordingSpan(SpanContext(trace_id_for(ctx.root_id, created_at), span_id_for(ctx.id, created_at),
                                                is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)))
        started = time.perf_counter()
        outcome = "error"
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                yield
            outcome = "ok"
        finally:
            self.instruments.leaf_duration.record(time.perf_counter() - started,
                                                  {m.FUNCTION: ctx.func or "step", m.OUTCOME: outcome})

    def open_spans(self) -> int:
        """How many promise spans are open in this process (for tests and diagnostics)."""
        return len(self._open)
