"""Helpers shared by HTTP transports: sending with a bounded answer, Retry-After parsing and the
generic status mapping.

A plugin maps its provider's own error codes first and falls back to
:func:`error_for_status` for the rest, so every transport classifies the same way:
408, 425, 429 and 5xx are transient (a 429 as a :class:`~vow.errors.RateLimitError`, which retry
policies wait out longer); any other 4xx is permanent.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from vow.errors import PermanentError, RateLimitError, TransientError

if TYPE_CHECKING:  # httpx is imported by the transports that use it, not by every `import vow`
    import httpx

TRANSIENT_STATUSES = frozenset({408, 425, 429})

MAX_ANSWER_BYTES = 1 << 20
"""How much of an answer :func:`request` reads. A provider's answer is a few kilobytes; the rest of a
larger one (a proxy's page, a misbehaving server) is never read into memory."""

_BODY_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def request(client: httpx.Client, method: str, url: str, *, provider: str = "provider",
            limit: int = MAX_ANSWER_BYTES, **kwargs: Any) -> httpx.Response:
    """``client.request(method, url, **kwargs)``, with at most ``limit`` bytes of the answer's body read.

    Once the status has arrived, the request has reached the provider, so a body that is longer than
    ``limit`` or that is cut off (the connection drops, a read times out) is kept as far as it was
    read: the caller classifies the answer by its status, as one whose body does not parse. Raising
    the cut-off instead would read as a request that may never have arrived, which is retried, and
    sends twice where the provider takes no idempotency key. An error before the status arrives is
    raised as httpx raises it. A redirect is a :class:`PermanentError` naming ``provider`` and where
    the redirect points.
    """
    import httpx

    body = bytearray()
    with client.stream(method, url, **kwargs) as response:
        try:
            for chunk in response.iter_bytes():  # decoded: a small gzip bomb counts at its real size
                body += chunk
                if len(body) >= limit:
                    break
        except httpx.HTTPError:
            pass  # cut off after the status: what arrived is the answer
    if response.is_redirect:
        why = "a repeated POST could send twice, and credentials must not follow it" if method.upper() == "POST" \
            else "credentials must not follow it"
        raise PermanentError(f"{provider} answered HTTP {response.status_code}, redirecting to "
                             f"{response.headers['location']}: vow does not follow redirects ({why}); point the URL at "
                             "where the provider now answers", code=str(response.status_code))
    # The body is decoded already and may be shorter than announced: drop what described the wire form.
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _BODY_HEADERS]
    return httpx.Response(response.status_code, headers=headers, content=bytes(body[:limit]),
                          request=response.request, extensions=response.extensions)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); ``None`` if absent or bad.

    Delta-seconds are a finite number, not below 0: ``inf``, ``nan`` (which Python's ``float`` reads)
    and ``-5`` are bad values like any other, not a wait of forever or of nothing. A date is read in
    GMT, as HTTP writes it. A finite wait however long is returned as it is: the retry decides
    what to do with one it will not wait out (:data:`vow.retry.MAX_RETRY_AFTER`).
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
    if when.tzinfo is None:  # "-0000": an HTTP date is GMT, not the machine's local time
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def http_url(example: str) -> Callable[[Any, Any, str | None], None]:
    """An attrs validator of a URL option: an absolute http(s) URL with a host and a TCP port, as httpx
    reads it (``None`` passes: an unset option). A bad one is refused when the options are built,
    not at every send, where httpx raises ``InvalidURL`` or quietly wraps a port above 65535."""
    expected = f"expected an http(s) URL such as {example}"

    def check(_instance: Any, _attribute: Any, value: str | None) -> None:
        import httpx  # the transports that take URLs have it; `import vow` does not need it

        if value is None:
            return
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"{value!r} is not a URL ({exc}); {expected}") from None
        if url.scheme not in ("http", "https") or not url.host or not 0 < (url.port or 80) < 65536:
            raise ValueError(f"{expected}, got {value!r}")
    return check


def text_field(body: Mapping[str, Any], name: str) -> str | None:
    """``body[name]`` when it is a non-empty string, else ``None``.

    A provider's code, id or name of another JSON type (a number, ``null``, a list, an object)
    counts as absent, never as a value: a list cannot even be looked up in a set of codes (it
    raises ``TypeError``), and ``true`` or ``["SM1"]`` is no message id.
    """
    value = body.get(name)
    return value if isinstance(value, str) and value else None


def is_transient_status(status: int) -> bool:
    """True for statuses worth retrying: 408, 425, 429 and every 5xx."""
    return status in TRANSIENT_STATUSES or status >= 500


def transient_error(message: str, *, status: int, retry_after: float | None = None, code: str | None = None,
                    rate_limited: bool = False) -> TransientError:
    """A :class:`TransientError` for a provider's answer, a :class:`RateLimitError` when the provider
    refused for its rate: HTTP 429, or ``rate_limited`` (the provider's own code says so)."""
    cls = RateLimitError if rate_limited or status == 429 else TransientError
    return cls(message, retry_after=retry_after, code=code)


def error_for_status(status: int, headers: Mapping[str, str] | None = None, detail: str = "",
                     *, provider: str = "provider") -> Exception:
    """The error an HTTP status means: :class:`TransientError` (with Retry-After; a 429 is a
    :class:`RateLimitError`) or :class:`PermanentError`."""
    headers = headers or {}
    reason = f"{provider} answered HTTP {status}" + (f": {detail}" if detail else "")
    if is_transient_status(status):
        retry_after = parse_retry_after(headers.get("retry-after") or headers.get("Retry-After"))
        return transient_error(reason, status=status, retry_after=retry_after, code=str(status))
    return PermanentError(reason, code=str(status))


def error_for_exception(exc: httpx.HTTPError, *, provider: str = "provider") -> Exception:
    """Timeouts and connection failures are transient; other transport errors are permanent.

    An answer lost after the request was sent (a read timeout, a dropped connection) says the request
    may have reached ``provider``: for a provider without an idempotency key, the retry may send twice.
    """
    import httpx

    if isinstance(exc, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)):
        lost = isinstance(exc, (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError))
        note = f" (the request was sent, so it may have reached {provider})" if lost else ""
        return TransientError(f"{provider}: {type(exc).__name__}: {exc}{note}", code=type(exc).__name__)
    return PermanentError(f"{provider}: {type(exc).__name__}: {exc}", code=type(exc).__name__)
