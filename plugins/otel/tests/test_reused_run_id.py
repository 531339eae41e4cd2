"""A run id used again after the old run was pruned starts a trace of its own.

Ids such as ``order/{{ input.order }}`` come back: after ``vow prune`` deleted the first run, a
second run under the same id is another run, and a tracing backend must not merge the two.
"""

from __future__ import annotations

from opentelemetry import trace

from vow import Context, LeafContext, Vow
from vow.events import Event, EventKind
from vow_otel import span_id_for, trace_id_for

RUN = "order/A-1"


def leaf(ctx: LeafContext, value: int) -> list[str]:
    context = trace.get_current_span().get_span_context()
    return [f"{context.trace_id:032x}", f"{context.span_id:016x}", str(value)]


def child(ctx: Context, value: int):
    return (yield ctx.run(leaf, value).options(id=f"{ctx.id}.inner"))


def order(ctx: Context):
    a = yield ctx.begin_run(leaf, 1).options(id=f"{ctx.id}.a")
    b = yield ctx.begin_run(child, 2).options(id=f"{ctx.id}.b")
    return (yield ctx.all([a, b]))


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_event(self, event: Event) -> None:
        self.events.append(event)


def test_a_run_id_used_again_after_its_run_was_pruned_gets_a_trace_of_its_own(otel_memory, tmp_path) -> None:
    recorder = Recorder()
    created_at, seen_in_leaves = [], []
    with Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}", observers=[otel_memory.observer, recorder]) as vow:
        for _ in range(2):
            seen_in_leaves.append(vow.run(RUN, order))
            root = vow.store.get(RUN)
            assert root is not None
            created_at.append(root.created_at)
            assert vow.store.delete_runs([RUN], settled_before=vow.store.now() + 1) == {RUN: 4}

    tree = {RUN: None, f"{RUN}.a": RUN, f"{RUN}.b": RUN, f"{RUN}.b.inner": f"{RUN}.b"}
    traces: dict[int, dict[str, object]] = {}
    for span in otel_memory.finished():
        traces.setdefault(span.context.trace_id, {})[span.attributes["vow.promise.id"]] = span
    assert len(traces) == 2, "both runs were exported into one trace"
    first, second = traces.values()
    assert set(first) == set(second) == set(tree)
    assert not {s.context.span_id for s in first.values()} & {s.context.span_id for s in second.values()}
    # each run is one tree of its own, and each process that works on it can compute its ids: from
    # the root id and the root promise's created_at, both stored with the run
    for spans, born in zip(traces.values(), created_at, strict=True):
        for pid, parent in tree.items():
            span = spans[pid]
            assert span.context.trace_id == trace_id_for(RUN, born), pid
            assert span.context.span_id == span_id_for(pid, born), pid
            assert (span.parent.span_id if span.parent else None) == (span_id_for(parent, born) if parent else None)
    # the leaves ran inside their own run's spans (what their HTTP requests carry as traceparent)
    for (a, b), born in zip(seen_in_leaves, created_at, strict=True):
        assert a == [f"{trace_id_for(RUN, born):032x}", f"{span_id_for(f'{RUN}.a', born):016x}", "1"]
        assert b == [f"{trace_id_for(RUN, born):032x}", f"{span_id_for(f'{RUN}.b.inner', born):016x}", "2"]
    # the fresh root's CREATED event says when the root was stored, as a resumed root's RESUMED does
    created = [e.created_at for e in recorder.events if e.kind is EventKind.CREATED and e.id == RUN]
    assert created == created_at


def test_without_the_root_s_created_at_the_ids_are_those_of_the_root_id_alone() -> None:
    """Callers that name no created_at (and runs whose root's time is unknown) keep the old ids."""
    assert trace_id_for(RUN, None) == trace_id_for(RUN) != trace_id_for(RUN, 1_800_000_000.5)
    assert span_id_for(RUN, None) == span_id_for(RUN) != span_id_for(RUN, 1_800_000_000.5)
    assert trace_id_for(RUN, 1_800_000_000.5) != trace_id_for(RUN, 1_800_000_000.5 + 1e-6)
