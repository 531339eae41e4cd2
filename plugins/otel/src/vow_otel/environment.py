"""OpenTelemetry set up from the standard ``OTEL_*`` environment variables, once per process.

vow-otel is off unless the environment asks for an exporter:

* ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``: comma-separated exporter names, as the
  OpenTelemetry SDK installs them in its entry-point groups (``console``, ``otlp``, or any other
  installed exporter; ``none`` for none);
* ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or a signal's own ``..._TRACES_ENDPOINT`` /
  ``..._METRICS_ENDPOINT``) alone turns on ``otlp`` for the signals whose exporter is not named;
* ``OTEL_SDK_DISABLED=true`` turns everything off.

``otlp`` speaks ``OTEL_EXPORTER_OTLP_PROTOCOL`` (or the signal's own ``..._PROTOCOL``):
``http/protobuf`` by default, as the OpenTelemetry specification says (the Python SDK's own
auto-configuration defaults to gRPC), or ``grpc`` with ``vow-otel[grpc]`` installed.

Everything else is the SDK's own handling: the resource (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``; the service is called ``vow`` when neither names it), the sampler
(``OTEL_TRACES_SAMPLER``), the exporters' endpoint, headers, timeout and compression, the batch
span processor (``OTEL_BSP_*``) and the metric export interval (``OTEL_METRIC_EXPORT_INTERVAL``).

The providers are vow-otel's own: the global ones, which the application may set itself, are
left alone. The HTTP requests of every ``httpx`` client are traced through
opentelemetry-instrumentation-httpx, so a channel's request carries its leaf's trace in
``traceparent``; ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=httpx`` turns that off.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import attrs
import httpx
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from vow.errors import ConfigError
from vow_otel.ids import PromiseIdGenerator

Signal = Literal["traces", "metrics"]

DEFAULT_SERVICE_NAME = "vow"
DEFAULT_OTLP_PROTOCOL = "http/protobuf"
_OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
_ENTRY_POINT_GROUP = {"traces": "opentelemetry_traces_exporter", "metrics": "opentelemetry_metrics_exporter"}
_TRUE = {"true", "1", "yes", "on"}


@attrs.frozen
class Telemetry:
    """The providers vow's observer reports to."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider | None


def tracer_provider(**kwargs: Any) -> TracerProvider:
    """A :class:`TracerProvider` whose span ids vow-otel can derive from promise ids.

    Takes :class:`TracerProvider`'s keyword arguments (resource, sampler, ...), except
    ``id_generator``.
    """
    if "id_generator" in kwargs:
        raise TypeError("vow_otel.tracer_provider sets id_generator itself (PromiseIdGenerator)")
    return TracerProvider(id_generator=PromiseIdGenerator(), **kwargs)


def exporter_names(signal: Signal, environ: Mapping[str, str] = os.environ) -> list[str]:
    """The entry-point names of the exporters ``environ`` asks for on ``signal`` (maybe none)."""
    raw = environ.get(f"OTEL_{signal.upper()}_EXPORTER")
    if raw is None:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
            f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
        raw = "otlp" if endpoint else "none"
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if not names or [n.lower() for n in names] == ["none"]:
        return []
    return [_otlp_entry_point(name, signal, environ) if name == "otlp" else name for name in names]


def _otlp_entry_point(name: str, signal: Signal, environ: Mapping[str, str]) -> str:
    variable = f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"
    protocol = environ.get(variable)
    if not protocol:
        variable = "OTEL_EXPORTER_OTLP_PROTOCOL"
        protocol = environ.get(variable) or DEFAULT_OTLP_PROTOCOL
    protocol = protocol.strip()
    if protocol not in _OTLP_BY_PROTOCOL:
        raise ConfigError(f"{variable}={protocol!r}: vow-otel exports OTLP as "
                          f"{' or '.join(_OTLP_BY_PROTOCOL)}")
    return _OTLP_BY_PROTOCOL[protocol]


def _exporter_class(name: str, signal: Signal) -> type:
    group = _ENTRY_POINT_GROUP[signal]
    found = importlib.metadata.entry_points(group=group)
    for entry_point in found:
        if entry_point.name == name:
            exporter: type = entry_point.load()
            return exporter
    installed = ", ".join(sorted({ep.name for ep in found})) or "none"
    hint = " (pip install 'vow-otel[grpc]')" if name == "otlp_proto_grpc" else ""
    raise ConfigError(f"OTEL_{signal.upper()}_EXPORTER: no {signal} exporter {name!r} is installed{hint}; "
                      f"installed: {installed}")


def _check_http_endpoint(signal: Signal, environ: Mapping[str, str]) -> None:
    """Refuse an OTLP/HTTP endpoint that is not an http(s) URL: the SDK takes ``collector:4318``
    and then drops every batch at export, with only a log line ("No connection adapters were found")."""
    for variable in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        value = environ.get(variable)
        if not value:
            continue
        parts = urlsplit(value.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{variable}={value!r}: an OTLP/HTTP endpoint is a URL that starts with http:// or "
                              "https:// and names a host, such as http://collector:4318")
        return  # the signal's own variable wins over the shared one


def resource(environ: Mapping[str, str] = os.environ) -> Resource:
    """The SDK's resource from the environment, with service name ``vow`` when none is given."""
    detected = Resource.create()
    named = environ.get("OTEL_SERVICE_NAME") or f"{SERVICE_NAME}=" in environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    return detected if named else detected.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))


def build() -> Telemetry | None:
    """Providers with the exporters the environment configures, or ``None`` when it configures none.

    Reads ``os.environ``, as the SDK's exporters and processors do: they take their endpoint,
    headers and timings from it when they are built.
    """
    environ = os.environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return None
    trace_names, metric_names = exporter_names("traces", environ), exporter_names("metrics", environ)
    if not trace_names and not metric_names:
        return None
    signals: tuple[tuple[Signal, list[str]], ...] = (("traces", trace_names), ("metrics", metric_names))
    for signal, names in signals:
        if _OTLP_BY_PROTOCOL["http/protobuf"] in names:
            _check_http_endpoint(signal, environ)
    span_exporters = [_exporter_class(name, "traces") for name in trace_names]
    metric_exporters = [_exporter_class(name, "metrics") for name in metric_names]
    shared = resource(environ)
    traces = tracer_provider(resource=shared)
    for exporter_class in span_exporters:
        if not issubclass(exporter_class, SpanExporter):
            raise ConfigError(f"OTEL_TRACES_EXPORTER: {exporter_class.__name__} is not a span exporter")
        traces.add_span_processor(BatchSpanProcessor(exporter_class()))
    readers: list[MetricReader] = []
    for exporter_class in metric_exporters:
        if issubclass(exporter_class, MetricReader):  # a pull exporter (Prometheus) is a reader itself
            readers.append(exporter_class())
        elif issubclass(exporter_class, MetricExporter):
            readers.append(PeriodicExportingMetricReader(exporter_class()))
        else:
            raise ConfigError(f"OTEL_METRICS_EXPORTER: {exporter_class.__name__} is not a metric exporter")
    meters = MeterProvider(resource=shared, metric_readers=readers) if readers else None
    if "httpx" not in _disabled_instrumentations(environ):
        instrument_httpx(traces)
    return Telemetry(traces, meters)


def _disabled_instrumentations(environ: Mapping[str, str]) -> set[str]:
    return {name.strip() for name in environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}


def instrument_httpx(provider: TracerProvider) -> None:
    """Trace every httpx request: a CLIENT span under the current span, and ``traceparent``.

    The span records the request URL's origin only (``https://hooks.slack.com``): webhook URLs
    carry their secret in the path, and a trace is no place for secrets.
    """
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:  # the application may have done it already
        instrumentor.instrument(tracer_provider=provider, request_hook=origin_only,
                                async_request_hook=_origin_only_async)


_URL_ATTRIBUTES = ("url.full", "http.url")


def origin_only(span: Any, request: Any) -> None:
    """A request hook for the httpx instrumentation: keep only the origin of the recorded URL."""
    recorded = getattr(span, "attributes", None) or {}
    keys = [key for key in _URL_ATTRIBUTES if key in recorded]
    if not keys:
        return
    url = request.url
    if isinstance(url, tuple):  # (scheme, host, port, target): httpcore's raw form
        scheme, host, port = (part.decode() if isinstance(part, bytes) else part for part in url[:3])
        origin = f"{scheme}://{host}" + (f":{port}" if port else "")
    else:
        parsed = httpx.URL(str(url))
        origin = f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")
    for key in keys:
        span.set_attribute(key, origin)


async def _origin_only_async(span: Any, request: Any) -> None:
    origin_only(span, request)


_lock = threading.Lock()
_shared: Telemetry | None = None


def shared_telemetry() -> Telemetry | None:
    """:func:`build` once per process: every vow client reports to the same providers.

    Until the environment configures an exporter, nothing is kept (so each client looks again).
    """
    global _shared
    with _lock:
        if _shared is None:
            _shared = build()
        return _shared


def shutdown_shared() -> None:
    """Flush and shut down the shared providers (done at exit anyway); the next client builds them anew."""
    global _shared
    with _lock:
        telemetry, _shared = _shared, None
    if telemetry is not None:
        telemetry.tracer_provider.shutdown()
        if telemetry.meter_provider is not None:
            telemetry.meter_provider.shutdown()
