"""The installed version of vow-otel, which the tracer and meter report as their instrumentation's."""

from __future__ import annotations

import importlib.metadata

try:
    __version__ = importlib.metadata.version("vow-otel")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
    __version__ = "0"
