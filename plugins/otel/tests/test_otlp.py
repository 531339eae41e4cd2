"""Configured by OTEL_* variables, vow-otel exports over OTLP/HTTP to a real receiver on 127.0.0.1."""

from __future__ import annotations

import pytest

from vow import Context, LeafContext, Vow
from vow.errors import ConfigError
from vow_otel import build, span_id_for, trace_id_for
from vow_otel.environment import exporter_names, shared_telemetry, shutdown_shared


def hello(ctx: LeafContext, name: str) -> str:
    return f"hello {name}"


def greet(ctx: Context, names: list[str]):
    handles = []
    for n in names:
        handles.append((yield ctx.begin_run(hello, n).options(id=f"{ctx.id}.{n}")))
    return (yield ctx.all(handles))


def configure(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def test_spans_and_metrics_reach_an_otlp_http_receiver(otel_receiver, otel_httpx_instrumented, monkeypatch,
                                                       tmp_path) -> None:
    """The whole path: the plugin's observer, built by the client from the environment alone."""
    configure(monkeypatch, OTEL_TRACES_EXPORTER="otlp", OTEL_METRICS_EXPORTER="otlp",
              OTEL_EXPORTER_OTLP_ENDPOINT=otel_receiver.endpoint, OTEL_SERVICE_NAME="orders-worker")
    try:
        with Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}") as vow:
            assert vow.run("greet/1", greet, ["ann", "bob"]) == ["hello ann", "hello bob"]
            born = vow.store.get("greet/1").created_at  # the ids are derived from it, as from the root id
        telemetry = shared_telemetry()
        assert telemetry is not None and telemetry.meter_provider is not None
        assert telemetry.tracer_provider.force_flush(30_000)
        assert telemetry.meter_provider.force_flush(30_000)
    finally:
        shutdown_shared()

    otel_receiver.wait_for(lambda: len(otel_receiver.spans()) >= 3 and otel_receiver.metric_names())
    spans = {span.name.rsplit(".", 1)[-1] + ":" + _attr(span, "vow.promise.id"): span for span in otel_receiver.spans()}
    assert set(spans) == {"greet:greet/1", "hello:greet/1.ann", "hello:greet/1.bob"}
    for span in spans.values():
        assert int.from_bytes(span.trace_id, "big") == trace_id_for("greet/1", born)
        assert int.from_bytes(span.span_id, "big") == span_id_for(_attr(span, "vow.promise.id"), born)
    assert spans["greet:greet/1"].parent_span_id == b""
    assert int.from_bytes(spans["hello:greet/1.ann"].parent_span_id, "big") == span_id_for("greet/1", born)
    assert otel_receiver.service_names() == {"orders-worker"}
    assert otel_receiver.content_types == {"application/x-protobuf"}
    assert {"vow.promises.created", "vow.promises.settled", "vow.leaf.duration"} <= otel_receiver.metric_names()


def _attr(span, key: str) -> str:
    return next(a.value.string_value for a in span.attributes if a.key == key)


@pytest.mark.parametrize(("environ", "traces", "metrics"), [
    ({}, [], []),
    ({"OTEL_TRACES_EXPORTER": "console"}, ["console"], []),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp_proto_http"], []),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["otlp_proto_http"], ["otlp_proto_http"]),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, ["otlp_proto_http"], []),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_METRICS_EXPORTER": "none"}, ["otlp_proto_http"], []),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ["otlp_proto_grpc"], []),
    ({"OTEL_TRACES_EXPORTER": "otlp,console", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
      "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, ["otlp_proto_http", "console"], []),
])
def test_which_exporters_the_environment_asks_for(environ, traces, metrics) -> None:
    assert exporter_names("traces", environ) == traces
    assert exporter_names("metrics", environ) == metrics


@pytest.mark.parametrize("environ", [{}, {"OTEL_SERVICE_NAME": "x"},
                                     {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"},
                                     {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}])
def test_off_unless_an_exporter_is_configured(environ, monkeypatch) -> None:
    configure(monkeypatch, **environ)
    assert build() is None


@pytest.mark.parametrize(("environ", "message"), [
    ({"OTEL_TRACES_EXPORTER": "zipkin_nowhere"},
     "OTEL_TRACES_EXPORTER: no traces exporter 'zipkin_nowhere' is installed; installed: console, otlp_proto_http"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
     "OTEL_EXPORTER_OTLP_PROTOCOL='http/json': vow-otel exports OTLP as http/protobuf or grpc"),
])
def test_a_bad_setting_is_one_clear_error(environ, message, monkeypatch) -> None:
    configure(monkeypatch, **environ)
    with pytest.raises(ConfigError) as caught:
        build()
    assert str(caught.value).startswith(message)


def test_the_service_is_called_vow_unless_named() -> None:
    from vow_otel.environment import resource

    assert resource({}).attributes["service.name"] == "vow"


CONSOLE_RUN = """
from vow import Vow

def hello(ctx, name):
    return "hello " + name

def greet(ctx):
    return (yield ctx.run(hello, "ann").options(id=ctx.id + ".ann"))

with Vow(store="memory:") as vow:
    print(vow.run("greet/console", greet), vow.store.get("greet/console").created_at.hex())
"""


def test_otel_traces_exporter_console_prints_every_span_at_exit(tmp_path) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    env["OTEL_TRACES_EXPORTER"] = "console"
    done = subprocess.run([sys.executable, "-c", CONSOLE_RUN], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    first_line, printed = done.stdout.split("\n", 1)
    result, born = first_line.rsplit(" ", 1)
    assert result == "hello ann"
    decoder, spans, at = json.JSONDecoder(), [], 0
    while printed[at:].strip():
        span, at = decoder.raw_decode(printed, printed.index("{", at))
        spans.append(span)
    assert sorted(s["attributes"]["vow.promise.id"] for s in spans) == ["greet/console", "greet/console.ann"]
    assert {s["context"]["trace_id"] for s in spans} == {f"0x{trace_id_for('greet/console', float.fromhex(born)):032x}"}
    assert {s["resource"]["attributes"]["service.name"] for s in spans} == {"vow"}


@pytest.mark.parametrize(("environ", "message"), [
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector.internal:4318"},
     "OTEL_EXPORTER_OTLP_ENDPOINT='collector.internal:4318': an OTLP/HTTP endpoint is a URL that starts with "
     "http:// or https://"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "localhost:4318/v1/traces"},
     "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT='localhost:4318/v1/traces': an OTLP/HTTP endpoint is a URL"),
    ({"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://"},
     "OTEL_EXPORTER_OTLP_ENDPOINT='http://': an OTLP/HTTP endpoint is a URL"),
])
def test_an_otlp_endpoint_without_its_scheme_is_refused_when_the_client_starts(environ, message, monkeypatch) -> None:
    """The endpoint given without http:// was taken: every batch of spans was then dropped at export,
    with "No connection adapters were found for 'collector.internal:4318/v1/traces'" in a log, and
    the program ran on as if traced."""
    configure(monkeypatch, **environ)
    shutdown_shared()
    try:
        with pytest.raises(ConfigError) as caught:
            Vow(store="memory:")
        assert str(caught.value).startswith(message), str(caught.value)
        from vow_otel import environment  # nothing was kept half-built


        assert environment._shared is None
    finally:
        shutdown_shared()


def test_the_receiver_records_an_export_before_it_answers(otel_receiver) -> None:
    """The tests wait for one span, then check them all: a process that has its answers must find
    all it sent recorded. Before, the receiver answered first and recorded after, so a batch could
    land after the next one (under load, once the process had exited)."""
    import threading
    import urllib.request

    answered = threading.Event()

    def send() -> None:
        request = urllib.request.Request(f"{otel_receiver.endpoint}/v1/traces", data=b"", method="POST",
                                         headers={"Content-Type": "application/x-protobuf"})
        with urllib.request.urlopen(request, timeout=60):
            answered.set()

    sender = threading.Thread(target=send)
    with otel_receiver.changed:  # the receiver cannot record it yet
        sender.start()
        # Not answered while it cannot be recorded (before, the answer came at once).
        assert not answered.wait(1.0), "the receiver answered an export it had not recorded"
    sender.join(60)
    assert answered.is_set() and len(otel_receiver.traces) == 1
