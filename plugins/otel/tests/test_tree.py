"""The spans of a run, read back from the SDK's in-memory exporter: one per promise, as a tree."""

from __future__ import annotations

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from vow import Constant, Context, LeafContext, PermanentError, TransientError, Vow
from vow.stores import open_store
from vow_otel import span_id_for, trace_id_for

ROOT = "order/7"


def ok(ctx: LeafContext, value: int) -> int:
    return value


def flaky(ctx: LeafContext) -> str:
    if ctx.attempt == 1:
        raise TransientError("503 from the provider")
    return "sent"


def broken(ctx: LeafContext) -> str:
    raise PermanentError("unknown recipient")


def child(ctx: Context, value: int):
    return (yield ctx.run(ok, value).options(id=f"{ctx.id}.inner"))


def fan_out(ctx: Context):
    a = yield ctx.begin_run(ok, 1).options(id=f"{ctx.id}.a")
    b = yield ctx.begin_run(flaky).options(id=f"{ctx.id}.b", retry=Constant(delay=0.01, max_attempts=3),
                                           idempotency_key="key-b")
    c = yield ctx.begin_run(child, 2).options(id=f"{ctx.id}.c")
    d = yield ctx.begin_run(broken).options(id=f"{ctx.id}.d")
    outcomes = yield ctx.all_settled([a, b, c, d])
    yield ctx.sleep(0.01)
    return [o.ok for o in outcomes]


@pytest.fixture
def ran(otel_memory, tmp_path):
    with Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}", observers=[otel_memory.observer]) as vow:
        vow.register(fan_out)
        assert vow.run(ROOT, fan_out) == [True, True, True, False]
    return otel_memory


def test_one_span_per_promise_nested_as_the_promise_tree(ran, tmp_path) -> None:
    store = open_store(f"sqlite:{tmp_path / 'vow.sqlite'}")
    try:
        born = store.get(ROOT).created_at  # the run's ids are derived from it, as from the promise ids
    finally:
        store.close()
    spans = ran.by_promise()
    assert set(spans) == {ROOT, f"{ROOT}.a", f"{ROOT}.b", f"{ROOT}.c", f"{ROOT}.c.inner", f"{ROOT}.d", f"{ROOT}.5"}
    parents = {pid: (span.parent.span_id if span.parent else None) for pid, span in spans.items()}
    root_span = span_id_for(ROOT, born)
    assert parents == {
        ROOT: None,
        f"{ROOT}.a": root_span, f"{ROOT}.b": root_span, f"{ROOT}.c": root_span, f"{ROOT}.d": root_span,
        f"{ROOT}.5": root_span, f"{ROOT}.c.inner": span_id_for(f"{ROOT}.c", born),
    }
    for pid, span in spans.items():
        assert span.context.trace_id == trace_id_for(ROOT, born)
        assert span.context.span_id == span_id_for(pid, born)
        assert span.kind is SpanKind.INTERNAL
        assert span.start_time <= span.end_time
    # a parent's span holds its children's
    for span in spans.values():
        if span.parent is not None:
            parent = next(s for s in spans.values() if s.context.span_id == span.parent.span_id)
            assert parent.start_time <= span.start_time and span.end_time <= parent.end_time
    assert spans[ROOT].name == "fan_out" and spans[f"{ROOT}.5"].name == "sleep"
    assert spans[f"{ROOT}.a"].name.endswith("ok")


def test_attributes_name_the_promise_its_function_attempt_and_idempotency_key(ran) -> None:
    b = ran.by_promise()[f"{ROOT}.b"]
    assert b.attributes["vow.promise.id"] == f"{ROOT}.b"
    assert b.attributes["vow.root.id"] == ROOT
    assert b.attributes["vow.function"].endswith("flaky")
    assert b.attributes["vow.promise.kind"] == "step"
    assert b.attributes["vow.attempt"] == 2
    assert b.attributes["vow.idempotency_key"] == "key-b"
    assert b.attributes["vow.state"] == "resolved"
    assert ran.by_promise()[f"{ROOT}.a"].attributes["vow.idempotency_key"] == f"{ROOT}.a"
    assert ran.by_promise()[ROOT].attributes["vow.promise.kind"] == "workflow"


def test_attempts_and_retries_are_span_events_with_the_error_and_the_back_off(ran) -> None:
    b = ran.by_promise()[f"{ROOT}.b"]
    events = [(e.name, dict(e.attributes)) for e in b.events]
    assert events == [
        ("vow.attempt", {"vow.attempt": 1}),
        ("vow.retry", {"vow.attempt": 1, "vow.retry.delay": 0.01, "exception.type": "TransientError",
                       "exception.message": "503 from the provider"}),
        ("vow.attempt", {"vow.attempt": 2}),
    ]
    assert b.status.status_code is StatusCode.UNSET


def test_an_error_is_recorded_with_status(ran) -> None:
    d = ran.by_promise()[f"{ROOT}.d"]
    assert d.status.status_code is StatusCode.ERROR
    assert d.status.description == "PermanentError: unknown recipient"
    assert d.attributes["vow.state"] == "rejected"
    exception = [dict(e.attributes) for e in d.events if e.name == "exception"]
    assert exception == [{"exception.type": "PermanentError", "exception.message": "unknown recipient"}]
    assert ran.by_promise()[ROOT].status.status_code is StatusCode.UNSET  # all_settled: the run itself succeeded


def test_metrics_count_promises_retries_and_time_each_leaf_attempt(ran) -> None:
    points = ran.metric_points()
    created = {(a["vow.function"].rsplit(".", 1)[-1], a["vow.promise.kind"]): v
               for a, v in points["vow.promises.created"]}
    assert created == {("fan_out", "workflow"): 1, ("ok", "step"): 2, ("flaky", "step"): 1,
                       ("child", "workflow"): 1, ("broken", "step"): 1, ("sleep", "sleep"): 1}
    settled = {(a["vow.function"].rsplit(".", 1)[-1], a["vow.state"]): v for a, v in points["vow.promises.settled"]}
    assert settled == {("fan_out", "resolved"): 1, ("ok", "resolved"): 2, ("flaky", "resolved"): 1,
                       ("child", "resolved"): 1, ("broken", "rejected"): 1, ("sleep", "resolved"): 1}
    retries = {a["vow.function"].rsplit(".", 1)[-1]: v for a, v in points["vow.retries"]}
    assert retries == {"flaky": 1}
    durations = {(a["vow.function"].rsplit(".", 1)[-1], a["vow.outcome"]): n for a, n in points["vow.leaf.duration"]}
    assert durations == {("ok", "ok"): 2, ("flaky", "error"): 1, ("flaky", "ok"): 1, ("broken", "error"): 1}
    assert ran.observer.open_spans() == 0


def test_a_leaf_s_span_is_current_inside_the_leaf(otel_memory, tmp_path) -> None:
    from opentelemetry import trace

    seen = {}

    def look(ctx: LeafContext) -> None:
        seen["span"] = trace.get_current_span().get_span_context()

    async def look_async(ctx: LeafContext) -> None:
        seen["async"] = trace.get_current_span().get_span_context()

    def flow(ctx: Context):
        yield ctx.run(look).options(id=f"{ctx.id}.sync")
        yield ctx.run(look_async).options(id=f"{ctx.id}.async")

    with Vow(store="memory:", observers=[otel_memory.observer]) as vow:
        vow.run("look/1", flow)
        born = vow.store.get("look/1").created_at
    assert (seen["span"].trace_id, seen["span"].span_id) == (trace_id_for("look/1", born),
                                                             span_id_for("look/1.sync", born))
    assert (seen["async"].trace_id, seen["async"].span_id) == (trace_id_for("look/1", born),
                                                               span_id_for("look/1.async", born))
    assert not trace.get_current_span().get_span_context().is_valid  # nothing leaks out of the leaf


def test_branches_canceled_when_the_run_settles_end_with_it(otel_memory) -> None:
    import threading

    release = threading.Event()

    def slow(ctx: LeafContext) -> str:
        release.wait(30)
        return "late"

    def race(ctx: Context):
        fast = yield ctx.begin_run(ok, 1).options(id=f"{ctx.id}.fast")
        late = yield ctx.begin_run(slow).options(id=f"{ctx.id}.slow")
        return (yield ctx.first([fast, late]))

    try:
        with Vow(store="memory:", observers=[otel_memory.observer]) as vow:
            assert vow.run("race/1", race) == 1
    finally:
        release.set()
    spans = otel_memory.by_promise()
    assert spans["race/1.slow"].attributes["vow.state"] == "canceled"
    assert spans["race/1.slow"].end_time <= spans["race/1"].end_time  # it ends with the run, not after
    assert otel_memory.observer.open_spans() == 0
