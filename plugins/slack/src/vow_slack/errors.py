"""Classifying Slack's answers: which error codes are worth retrying and which are not.

Slack names its errors with short codes: the Web API puts them in ``{"ok": false, "error":
...}`` (usually with HTTP 200), incoming webhooks put them in a plain-text body next to an
HTTP status. The code decides first; the HTTP status (via :mod:`vow.http`) decides for codes
this module does not know, and unknown codes with a 2xx/4xx status are permanent, because
every other Slack error describes a request that will fail the same way again.
"""

from __future__ import annotations

from collections.abc import Mapping

from vow.errors import PermanentError
from vow.http import is_transient_status, parse_retry_after, transient_error

TRANSIENT_CODES = frozenset({
    "ratelimited",           # Web API, with HTTP 429 and Retry-After
    "rate_limited",          # the same, as webhooks and older methods spell it
    "internal_error",
    "service_unavailable",
    "fatal_error",           # Slack says part of the call may have succeeded: see README on duplicates
    "request_timeout",       # the POST body arrived truncated
    "rollup_error",          # webhook 500
    "team_added_to_org",     # workspace migrating into an Enterprise org; comes back by itself
    "org_login_required",
})
"""Codes that describe Slack's state, not the request: retried by the branch's policy."""

RATE_LIMIT_CODES = frozenset({"ratelimited", "rate_limited"})
"""Slack refused for its rate (about one message a second per channel): a
:class:`~vow.errors.RateLimitError`, waited out longer than a plain failure (never sooner than Retry-After)."""


def slack_error(code: str, status: int, headers: Mapping[str, str] | None = None, *,
                via: str, detail: str = "") -> Exception:
    """The error that Slack's ``code`` (answered with HTTP ``status``) means.

    ``via`` names the endpoint (``chat.postMessage``, ``incoming webhook``) in the message;
    ``detail`` adds what else Slack said.
    """
    headers = headers or {}
    message = f"slack {via} failed: {code} (HTTP {status})" + (f": {detail}" if detail else "")
    if code in TRANSIENT_CODES or is_transient_status(status):
        retry_after = parse_retry_after(headers.get("retry-after") or headers.get("Retry-After"))
        return transient_error(message, status=status, retry_after=retry_after, code=code,
                               rate_limited=code in RATE_LIMIT_CODES)
    return PermanentError(message, code=code)
