"""A run killed with SIGKILL and resumed in another process continues the same trace.

Both processes are real subprocesses that set tracing up from the ``OTEL_*`` environment alone
(the installed ``otel`` plugin) and export over OTLP/HTTP to a receiver on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from vow.stores import open_store
from vow.testing import wait_until
from vow_otel import span_id_for, trace_id_for

APP = Path(__file__).with_name("otel_app.py")
RUN = "trip/1"


def spawn(store: str, gates: Path, process: str, endpoint: str) -> subprocess.Popen[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    env.update({
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "trip-worker",
        "OTEL_RESOURCE_ATTRIBUTES": f"vow.test.process={process}",
        "OTEL_BSP_SCHEDULE_DELAY": "20",  # export ended spans at once: the test waits for them, then kills
    })
    return subprocess.Popen([sys.executable, str(APP), store, str(gates), RUN], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def promise_id(span: Any) -> str | None:
    return next((a.value.string_value for a in span.attributes if a.key == "vow.promise.id"), None)


def test_a_run_resumed_after_kill_9_continues_the_same_trace(otel_receiver, tmp_path: Path) -> None:
    store, gates = f"sqlite:{tmp_path / 'vow.sqlite'}", tmp_path / "gates"
    gates.mkdir()
    first = spawn(store, gates, "first", otel_receiver.endpoint)
    try:
        # Both gated leaves are running in the first process, and the leaves that finished
        # there have reached the receiver: the kill lands in the middle of the run.
        wait_until(lambda: {f"started-trip_1.gate-{first.pid}", f"started-trip_1.branch.gate-{first.pid}"}
                   <= {p.name for p in gates.iterdir()}, 60, "both gates to start", proc=first)
        otel_receiver.wait_for(lambda: {f"{RUN}.quick", f"{RUN}.branch.quick"}
                               <= {promise_id(s) for s in otel_receiver.spans()})
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=60)  # reaps it and closes its pipes
    received_from_first = {promise_id(s) for s in otel_receiver.spans()}
    assert RUN not in received_from_first and f"{RUN}.gate" not in received_from_first

    (gates / "open").touch()
    second = spawn(store, gates, "second", otel_receiver.endpoint)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == [1, "through", [2, "through"]]
    otel_receiver.wait_for(lambda: RUN in {promise_id(s) for s in otel_receiver.spans()})

    spans: dict[str, tuple[str, Any]] = {}
    for resource, span in otel_receiver.spans_with_resource():
        pid = promise_id(span)
        assert pid not in spans, f"{pid} was exported twice"
        spans[pid] = (resource["vow.test.process"], span)
    tree = {RUN: None, f"{RUN}.quick": RUN, f"{RUN}.gate": RUN, f"{RUN}.branch": RUN,
            f"{RUN}.branch.quick": f"{RUN}.branch", f"{RUN}.branch.gate": f"{RUN}.branch"}
    assert set(spans) == set(tree)
    # One trace, one tree: the spans each process exported join up through the ids both derived
    # from what is stored with the run, the root's id and the time it was stored.
    assert len({span.trace_id for _, span in spans.values()}) == 1
    stored = open_store(store)
    try:
        root = stored.get(RUN)
    finally:
        stored.close()
    assert root is not None
    for pid, parent in tree.items():
        span = spans[pid][1]
        assert int.from_bytes(span.trace_id, "big") == trace_id_for(RUN, root.created_at), pid
        assert int.from_bytes(span.span_id, "big") == span_id_for(pid, root.created_at), pid
        assert (int.from_bytes(span.parent_span_id, "big") if span.parent_span_id else None) == (
            span_id_for(parent, root.created_at) if parent else None), pid
    assert {pid: process for pid, (process, _) in spans.items()} == {
        RUN: "second", f"{RUN}.quick": "first", f"{RUN}.gate": "second", f"{RUN}.branch": "second",
        f"{RUN}.branch.quick": "first", f"{RUN}.branch.gate": "second"}
    root_events = [e.name for e in spans[RUN][1].events]
    assert "vow.resumed" in root_events
    # the interrupted leaf ran again as the same attempt, with the same idempotency key
    gate = spans[f"{RUN}.gate"][1]
    assert [(e.name, e.attributes[0].value.int_value) for e in gate.events] == [("vow.attempt", 1)]
    assert {a.key: a.value.string_value for a in gate.attributes}["vow.idempotency_key"] == f"{RUN}.gate"
    # The spans the second process started for promises the first one created begin when their
    # promise was created (the run's root when the run was stored), not when the second process
    # came across them: a parent never starts after one of its children.
    for pid, parent in tree.items():
        if parent is not None:
            assert spans[parent][1].start_time_unix_nano <= spans[pid][1].start_time_unix_nano, (parent, pid)
