"""The Resend transport: ``POST /emails`` with the idempotency key in the ``Idempotency-Key`` header.

Resend answers a repeated request with the same key (within 24 hours) with the first
response and sends nothing new, so a retried attempt cannot send the email twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from vow.channels import Message, Receipt
from vow.errors import PermanentError, TransientError
from vow.http import error_for_exception, is_transient_status, parse_retry_after, request, text_field, transient_error
from vow.leaf import LeafContext
from vow_email.addresses import ascii_form
from vow_email.mime import IDEMPOTENCY_HEADER, key_digest

MAX_KEY_LENGTH = 256  # Resend rejects longer keys with invalid_idempotency_key

# Resend's error names whose HTTP status alone would classify them wrongly (or vaguely).
TRANSIENT_ERRORS = frozenset({
    "rate_limit_exceeded",             # 429: slow down, Retry-After says how long
    "concurrent_idempotent_requests",  # 409: the same key is still in flight; try again later
    "application_error",               # 500
    "internal_server_error",           # 500
})
PERMANENT_ERRORS = frozenset({
    "invalid_idempotent_request",      # 409: the key was used before with another payload
    "invalid_idempotency_key",         # 400: key outside 1-256 characters
    "daily_quota_exceeded",            # 429, but no retry policy outlasts a daily quota
    "monthly_quota_exceeded",          # 429, likewise
})


def resend_key(key: str) -> str:
    """The ``Idempotency-Key`` sent for ``key``: the key itself, or a stable digest when it is too long or
    cannot be a header value as it is (not printable ASCII, or with spaces around it that parsers drop)."""
    if 0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable() and key == key.strip():
        return key
    return key_digest(key)


def resend_error(status: int, headers: Mapping[str, str], name: str | None, message: str) -> Exception:
    """Map a Resend error (HTTP status plus the body's ``name``) to a transient or permanent error."""
    reason = f"resend answered HTTP {status}" + (f" {name}" if name else "") + (f": {message}" if message else "")
    code = name or str(status)
    retry_after = parse_retry_after(headers.get("retry-after"))
    if name in TRANSIENT_ERRORS:
        return transient_error(reason, status=status, retry_after=retry_after, code=code,
                               rate_limited=name == "rate_limit_exceeded")
    if name in PERMANENT_ERRORS:
        return PermanentError(reason, code=code)
    if is_transient_status(status):  # a 429 of a name not listed here is a rate limit still
        return transient_error(reason, status=status, retry_after=retry_after, code=code)
    return PermanentError(reason, code=code)


class ResendTransport:
    """Sends through the Resend HTTP API (https://resend.com/docs/api-reference/emails/send-email)."""

    name = "resend"

    def __init__(self, *, api_key: str, from_addr: str, base_url: str, timeout: float) -> None:
        self.from_addr = from_addr
        self.url = base_url.rstrip("/") + "/emails"
        self.timeout = timeout
        self._headers = {"Authorization": f"Bearer {api_key}", "User-Agent": "vow-email/0.1.0"}

    def request_body(self, message: Message, key: str) -> dict[str, Any]:
        """The JSON body of ``POST /emails`` for ``message``."""
        body: dict[str, Any] = {
            "from": self.from_addr,
            "to": [ascii_form(message.to, where="email message.to")[0]],  # an IDN domain as over SMTP
            "subject": message.subject,
            "text": message.body,
            "headers": {IDEMPOTENCY_HEADER: key},
        }
        if message.data.get("html"):
            body["html"] = message.data["html"]
        return body

    def send(self, message: Message, ctx: LeafContext) -> Receipt:
        """POST the email; a 2xx must carry the email ``id``, anything else is classified."""
        key = ctx.idempotency_key
        headers = {**self._headers, "Idempotency-Key": resend_key(key)}
        try:
            # A client per send: the core's deliver leaf builds the channel per call, and the
            # Channel protocol has no close(), so a long-lived client would leak its connections.
            with httpx.Client(timeout=self.timeout) as client:
                response = request(client, "POST", self.url, provider="resend", json=self.request_body(message, key),
                                   headers=headers)
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, provider="resend") from exc
        payload = _json(response)
        # A name that is not text (a list, a number) is no Resend error name: the status decides.
        error_name = text_field(payload, "name")
        if not response.is_success:
            raise resend_error(response.status_code, response.headers, error_name,
                               str(payload.get("message") or response.text[:200]))
        email_id = text_field(payload, "id")
        if email_id is None:
            if error_name:  # an error reported under a success status
                raise resend_error(response.status_code, response.headers, error_name,
                                   str(payload.get("message", "")))
            # Retrying is harmless: the same Idempotency-Key makes Resend answer, not send again.
            raise TransientError(f"resend answered HTTP {response.status_code} without an email id: "
                                 f"{response.text[:200]!r}", code="missing_id")
        return Receipt(channel="email", transport=self.name, message_id=email_id, to=message.to,
                       idempotency_key=key, attempt=ctx.attempt, detail={"from": self.from_addr})


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
