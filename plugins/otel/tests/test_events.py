"""The observer on event sequences the engine produces around crashes, takeovers and outside settles."""

from __future__ import annotations

import itertools

from opentelemetry.trace import StatusCode

from vow.events import Event, EventKind
from vow_otel import span_id_for, trace_id_for

_clock = itertools.count(1_800_000_000)
BORN = 1_700_000_000.25  # when the runs' roots were stored


def event(kind: EventKind, id: str, *, parent: str | None = None, func: str = "f", promise_kind: str = "step",
          attempt: int = 1, **fields) -> Event:
    return Event(kind, id, id.split(".", 1)[0], parent, func, promise_kind, attempt, float(next(_clock)), **fields)


def test_a_resumed_run_parents_its_spans_on_ids_it_never_saw(otel_memory) -> None:
    """After a crash the new process sees the root resumed and a child workflow's leaf started,
    but never the child workflow's creation: the leaf still hangs under the right parent id."""
    observer = otel_memory.observer
    observer.on_event(event(EventKind.RESUMED, "r", func="flow", promise_kind="workflow", attempt=1,
                            created_at=BORN))
    observer.on_event(event(EventKind.STARTED, "r.2.1", parent="r.2", attempt=3, idempotency_key="k"))
    observer.on_event(event(EventKind.SETTLED, "r.2.1", parent="r.2", attempt=3, state="resolved"))
    (leaf,) = otel_memory.finished()
    assert leaf.context.trace_id == trace_id_for("r", BORN) and leaf.context.span_id == span_id_for("r.2.1", BORN)
    assert leaf.parent.span_id == span_id_for("r.2", BORN) and leaf.parent.is_remote
    assert leaf.attributes["vow.attempt"] == 3 and leaf.attributes["vow.idempotency_key"] == "k"


def test_a_run_stopped_here_leaves_its_spans_to_the_next_process(otel_memory) -> None:
    observer = otel_memory.observer
    observer.on_event(event(EventKind.CREATED, "s", promise_kind="workflow"))
    observer.on_event(event(EventKind.CREATED, "s.1", parent="s", idempotency_key="s.1"))
    observer.on_event(event(EventKind.STARTED, "s.1", parent="s"))
    observer.on_event(event(EventKind.STOPPED, "s", promise_kind="workflow"))
    assert observer.open_spans() == 0 and otel_memory.finished() == []  # nothing half-done exported


def test_a_run_taken_over_keeps_its_ids_and_a_run_under_the_id_used_again_gets_new_ones(otel_memory) -> None:
    observer = otel_memory.observer
    observer.on_event(event(EventKind.CREATED, "t", promise_kind="workflow", created_at=BORN))
    observer.on_event(event(EventKind.CREATED, "t.1", parent="t", idempotency_key="t.1"))
    observer.on_event(event(EventKind.STOPPED, "t", promise_kind="workflow"))  # its lease lost, taken back later
    observer.on_event(event(EventKind.RESUMED, "t", promise_kind="workflow", created_at=BORN))
    observer.on_event(event(EventKind.SETTLED, "t.1", parent="t", state="resolved", created_at=BORN + 1))
    observer.on_event(event(EventKind.SETTLED, "t", promise_kind="workflow", state="resolved"))
    # pruned, then a new run under the same id
    observer.on_event(event(EventKind.CREATED, "t", promise_kind="workflow", created_at=BORN + 100))
    observer.on_event(event(EventKind.SETTLED, "t", promise_kind="workflow", state="resolved"))
    ids = [(s.attributes["vow.promise.id"], s.context.trace_id, s.context.span_id) for s in otel_memory.finished()]
    assert ids == [("t.1", trace_id_for("t", BORN), span_id_for("t.1", BORN)),
                   ("t", trace_id_for("t", BORN), span_id_for("t", BORN)),
                   ("t", trace_id_for("t", BORN + 100), span_id_for("t", BORN + 100))]


def test_an_outside_promise_settled_from_another_process_ends_its_span(otel_memory) -> None:
    observer = otel_memory.observer
    observer.on_event(event(EventKind.CREATED, "p", promise_kind="workflow"))
    observer.on_event(event(EventKind.CREATED, "p.approval", parent="p", func="", promise_kind="promise"))
    observer.on_event(event(EventKind.SETTLED, "p.approval", parent="p", func="", promise_kind="promise",
                            state="rejected", error="VowError: not approved"))
    (gate,) = otel_memory.finished()
    assert gate.name == "promise" and gate.attributes["vow.state"] == "rejected"
    assert gate.status.status_code is StatusCode.ERROR and gate.status.description == "VowError: not approved"
    assert "vow.idempotency_key" not in gate.attributes  # only leaves have one


def test_a_workflow_retry_is_an_event_on_its_span(otel_memory) -> None:
    observer = otel_memory.observer
    observer.on_event(event(EventKind.CREATED, "w", promise_kind="workflow"))
    observer.on_event(event(EventKind.STARTED, "w", promise_kind="workflow"))
    observer.on_event(event(EventKind.RETRY_SCHEDULED, "w", promise_kind="workflow", error="boom", delay=2.5))
    observer.on_event(event(EventKind.STARTED, "w", promise_kind="workflow", attempt=2))
    observer.on_event(event(EventKind.SETTLED, "w", promise_kind="workflow", attempt=2, state="timedout",
                            error="PromiseTimeoutError: f (w) timed out"))
    (span,) = otel_memory.finished()
    assert [(e.name, dict(e.attributes)) for e in span.events] == [
        ("vow.attempt", {"vow.attempt": 1}),
        ("vow.retry", {"vow.attempt": 1, "vow.retry.delay": 2.5, "exception.message": "boom"}),
        ("vow.attempt", {"vow.attempt": 2}),
        ("exception", {"exception.type": "PromiseTimeoutError", "exception.message": "f (w) timed out"}),
    ]
    assert span.status.status_code is StatusCode.ERROR
    assert span.start_time < span.events[0].timestamp < span.end_time  # the events' own times
