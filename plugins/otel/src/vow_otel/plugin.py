"""The ``otel`` observer, registered through the ``vow`` entry-point group."""

from __future__ import annotations

from vow.hookspecs import hookimpl
from vow_otel.environment import shared_telemetry
from vow_otel.observer import OtelObserver


def observer_from_environment() -> OtelObserver | None:
    """An :class:`OtelObserver` reporting to the providers the ``OTEL_*`` variables configure;
    ``None`` (off) when they configure no exporter."""
    telemetry = shared_telemetry()
    if telemetry is None:
        return None
    return OtelObserver(telemetry.tracer_provider, telemetry.meter_provider)


@hookimpl
def vow_register_observers(register) -> None:
    """Register the ``otel`` observer."""
    register("otel", observer_from_environment, None,
             "OpenTelemetry traces and metrics of every promise (on when OTEL_TRACES_EXPORTER, "
             "OTEL_METRICS_EXPORTER or OTEL_EXPORTER_OTLP_ENDPOINT is set)")
