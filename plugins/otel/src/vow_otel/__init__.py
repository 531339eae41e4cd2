"""vow-otel: OpenTelemetry traces and metrics for vow runs.

Installed, it registers the ``otel`` observer, which every :class:`vow.Vow` client builds when
the ``OTEL_*`` environment variables configure an exporter (:mod:`vow_otel.environment`).
To report to providers of your own (tests, an application that sets OpenTelemetry up itself),
pass an observer to the client::

    from vow_otel import OtelObserver, tracer_provider

    provider = tracer_provider(resource=...)   # derives span ids from promise ids
    provider.add_span_processor(...)
    vow = Vow(observers=[OtelObserver(provider, meter_provider)])
"""

from __future__ import annotations

import importlib.metadata

try:
    __version__ = importlib.metadata.version("vow-otel")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
    __version__ = "0"

from vow_otel.environment import Telemetry, build, tracer_provider  # noqa: E402
from vow_otel.ids import PromiseIdGenerator, span_id_for, trace_id_for, traceparent  # noqa: E402
from vow_otel.observer import OtelObserver  # noqa: E402

__all__ = ["OtelObserver", "PromiseIdGenerator", "Telemetry", "build", "span_id_for", "trace_id_for",
           "tracer_provider", "traceparent", "__version__"]
