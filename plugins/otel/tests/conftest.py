"""Fixtures of the vow-otel tests: in-memory exporters, and a real OTLP/HTTP receiver on 127.0.0.1.

Fixture names start with ``otel_`` so they cannot collide with other plugins' fixtures.
"""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from vow_otel import OtelObserver, tracer_provider
from vow_otel.environment import instrument_httpx


@pytest.fixture(autouse=True)
def otel_clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OpenTelemetry settings leak in from the developer's shell."""
    import os

    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@attrs.define
class InMemory:
    """An observer on in-memory exporters: every span is exported as it ends."""

    observer: OtelObserver
    provider: Any
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def by_promise(self) -> dict[str, ReadableSpan]:
        """Finished promise spans by promise id (each promise must have exactly one)."""
        found: dict[str, ReadableSpan] = {}
        for span in self.finished():
            pid = (span.attributes or {}).get("vow.promise.id")
            if pid is not None:
                assert pid not in found, f"two spans for promise {pid}"
                found[pid] = span
        return found

    def metric_points(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """``{metric name: [(attributes, value or histogram count), ...]}``."""
        points: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.metrics.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = point.count
                        points.setdefault(metric.name, []).append((dict(point.attributes), value))
        return points


@pytest.fixture
def otel_memory() -> Iterator[InMemory]:
    exporter = InMemorySpanExporter()
    provider = tracer_provider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    yield InMemory(OtelObserver(provider, meters), provider, exporter, reader)
    provider.shutdown()
    meters.shutdown()


@pytest.fixture
def otel_httpx_instrumented() -> Iterator[Callable[[Any], None]]:
    """Instrument httpx with a given provider for one test, and take it off afterwards."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()

    def instrument(provider: Any) -> None:
        instrument_httpx(provider)

    yield instrument
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


# -- a real OTLP/HTTP receiver ----------------------------------------------------------------------


@attrs.define
class Receiver:
    """What an OTLP/HTTP receiver on 127.0.0.1 got: decoded export requests, by signal."""

    endpoint: str = ""
    traces: list[ExportTraceServiceRequest] = attrs.field(factory=list)
    metrics: list[ExportMetricsServiceRequest] = attrs.field(factory=list)
    content_types: set[str] = attrs.field(factory=set)
    changed: threading.Condition = attrs.field(factory=threading.Condition)

    def spans(self) -> list[Any]:
        """Every span received so far (protobuf ``Span`` messages)."""
        with self.changed:
            return [span for request in self.traces for rs in request.resource_spans
                    for ss in rs.scope_spans for span in ss.spans]

    def spans_with_resource(self) -> list[tuple[dict[str, str], Any]]:
        """``(resource attributes, span)`` for every span received so far."""
        with self.changed:
            return [({a.key: a.value.string_value for a in rs.resource.attributes}, span)
                    for request in self.traces for rs in request.resource_spans
                    for ss in rs.scope_spans for span in ss.spans]

    def service_names(self) -> set[str]:
        with self.changed:
            return {attr.value.string_value for request in self.traces for rs in request.resource_spans
                    for attr in rs.resource.attributes if attr.key == "service.name"}

    def metric_names(self) -> set[str]:
        with self.changed:
            return {metric.name for request in self.metrics for rm in request.resource_metrics
                    for sm in rm.scope_metrics for metric in sm.metrics}

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        """Wait until ``predicate()`` holds, re-checking each time an export arrives."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("the OTLP receiver did not get what the test waited for")
                self.changed.wait(left)


def _handler(receiver: Receiver) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path == "/v1/traces":
                request, response = ExportTraceServiceRequest(), ExportTraceServiceResponse()
                target = receiver.traces
            elif self.path == "/v1/metrics":
                request, response = ExportMetricsServiceRequest(), ExportMetricsServiceResponse()
                target = receiver.metrics
            else:
                self.send_error(404)
                return
            request.ParseFromString(body)
            # Recorded before it is answered: a sender that has its answer (a process that flushed
            # and exited) has every export in the receiver. Answered first, a batch could be
            # recorded after the next one, whose span the test was waiting for.
            with receiver.changed:
                target.append(request)
                receiver.content_types.add(self.headers.get("Content-Type", ""))
                receiver.changed.notify_all()
            payload = response.SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def otel_receiver() -> Iterator[Receiver]:
    """An OTLP/HTTP receiver (protobuf) on 127.0.0.1 at a free port; ``.endpoint`` is its base URL."""
    receiver = Receiver()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()
