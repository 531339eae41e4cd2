"""Helpers shared by HTTP transports: Retry-After parsing and the generic status mapping.

A plugin maps its provider's own error codes first and falls back to
:func:`error_for_status` for the rest, so every transport classifies the same way:
408, 425, 429 and 5xx are transient; any other 4xx is permanent.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from vow.errors import PermanentError, TransientError

if TYPE_CHECKING:  # httpx is imported by the transports that use it, not by every `import vow`
    import httpx

TRANSIENT_STATUSES = frozenset({408, 425, 429})


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); ``None`` if absent or bad.

    Delta-seconds are a finite number, not below 0: ``inf``, ``nan`` (which Python's ``float`` reads)
    and ``-5`` are bad values like any other, not a wait of forever or of nothing.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def is_transient_status(status: int) -> bool:
    """True for statuses worth retrying: 408, 425, 429 and every 5xx."""
    return status in TRANSIENT_STATUSES or status >= 500


def error_for_status(status: int, headers: Mapping[str, str] | None = None, detail: str = "",
                     *, provider: str = "provider") -> Exception:
    """The error an HTTP status means: :class:`TransientError` (with Retry-After) or :class:`PermanentError`."""
    headers = headers or {}
    reason = f"{provider} answered HTTP {status}" + (f": {detail}" if detail else "")
    if is_transient_status(status):
        retry_after = parse_retry_after(headers.get("retry-after") or headers.get("Retry-After"))
        return TransientError(reason, retry_after=retry_after, code=str(status))
    return PermanentError(reason, code=str(status))


def error_for_exception(exc: httpx.HTTPError, *, provider: str = "provider") -> Exception:
    """Timeouts and connection failures are transient; other transport errors are permanent."""
    import httpx

    if isinstance(exc, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)):
        return TransientError(f"{provider}: {type(exc).__name__}: {exc}", code=type(exc).__name__)
    return PermanentError(f"{provider}: {type(exc).__name__}: {exc}", code=type(exc).__name__)
