"""The Twilio transport: one ``POST .../Messages.json`` per send, and what Twilio's answers mean.

Twilio has no idempotency-key header for creating a message, so vow's key travels as the
``vow_key`` query parameter of the ``StatusCallback`` URL (when one is configured): every
delivery callback Twilio makes for the message carries it back, so it can be matched to the
branch. What keeps a message from being sent twice is vow itself: a branch whose send settled
is never run again. See the README for the window that remains.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import httpx

from vow.channels import Message, Receipt
from vow.config import secret
from vow.errors import ConfigError, PermanentError
from vow.http import error_for_exception, is_transient_status, parse_retry_after, request, transient_error
from vow.leaf import LeafContext
from vow_sms.options import SmsOptions

API_BASE = "https://api.twilio.com/2010-04-01"
CALLBACK_KEY_PARAM = "vow_key"
ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")

TRANSIENT_CODES: dict[int, str] = {
    20429: "too many concurrent requests; safe to retry after backing off",
    21611: "the sender's queue holds more than 10 hours of messages; it drains at the sender's rate",
}
RATE_LIMIT_CODES = frozenset({20429, 21611})
"""Twilio refused for its rate or a full queue: a :class:`~vow.errors.RateLimitError`, waited out longer
than a plain failure (see :class:`vow.retry.RateLimitPatience`)."""
PERMANENT_CODES: dict[int, str] = {
    20003: "authentication failed: check the Account SID and the Auth Token or API key",
    21211: "the 'To' number is not a valid phone number",
    21408: "sending to this region is disabled in the account's Messaging Geo Permissions",
    21610: "the recipient replied STOP; they must text START before they can be messaged again",
    21614: "the 'To' number is not a mobile number and cannot receive SMS",
    30007: "the message was filtered by Twilio or the carrier",
}
"""Twilio error codes vow classifies by name; any other code is classified by its HTTP status."""


def twilio_error(status: int, headers: Mapping[str, str] | None, body: Mapping[str, Any] | None,
                 text: str = "") -> Exception:
    """The vow error for a Twilio answer: Twilio's own ``code`` first, then the HTTP status.

    ``body`` is Twilio's error JSON (``code``, ``message``, ``more_info``); ``text`` is the raw
    answer, quoted when the body is not JSON (a proxy's HTML page, say).
    """
    body = body or {}
    headers = httpx.Headers(headers or {})
    code = _int_or_none(body.get("code"))
    message = body.get("message") or text.strip()[:200] or "no error message"
    if code is None:
        reason = f"twilio answered HTTP {status}: {message}"
    else:
        hint = TRANSIENT_CODES.get(code) or PERMANENT_CODES.get(code)
        reason = f"twilio error {code}: {message}" + (f" ({hint})" if hint else "")
        if body.get("more_info"):
            reason += f"; see {body['more_info']}"
    if code in TRANSIENT_CODES or (code not in PERMANENT_CODES and is_transient_status(status)):
        return transient_error(reason, status=status, retry_after=parse_retry_after(headers.get("retry-after")),
                               code=str(code or status), rate_limited=code in RATE_LIMIT_CODES)
    return PermanentError(reason, code=str(code or status))


def callback_url(status_callback: str, key: str) -> str:
    """``status_callback`` with vow's idempotency key added as the ``vow_key`` query parameter."""
    return str(httpx.URL(status_callback).copy_add_param(CALLBACK_KEY_PARAM, key))


def credentials_present(options: SmsOptions) -> bool:
    """Whether the environment holds the Twilio credentials ``options`` name (what ``auto`` checks)."""
    needed: tuple[str, ...]
    if options.api_key_sid_env:
        needed = (options.account_sid_env, options.api_key_sid_env, options.api_key_secret_env)
    else:
        needed = (options.account_sid_env, options.auth_token_env)
    return all(os.environ.get(name) for name in needed)


class TwilioTransport:
    """Creates one Twilio Message per send, authenticated with HTTP basic auth.

    One ``httpx.Client`` is kept for the transport's life (vow reuses built channels), so a
    fan-out of many texts shares connections; it is safe to use from many threads.
    """

    name = "twilio"

    def __init__(self, *, account_sid: str, auth: tuple[str, str], sender: Mapping[str, str],
                 status_callback: str | None = None, timeout: float = 10.0) -> None:
        self.url = f"{API_BASE}/Accounts/{account_sid}/Messages.json"
        self.sender = dict(sender)
        self.status_callback = status_callback
        self._client = httpx.Client(timeout=timeout, auth=auth, headers={"Accept": "application/json"})

    @classmethod
    def from_options(cls, options: SmsOptions) -> TwilioTransport:
        """Read the credentials from the environment; a missing one or a missing sender is a ConfigError."""
        needed_for = "sms transport 'twilio'"
        if not options.sender():
            raise ConfigError(f"{needed_for}: set from_number (an E.164 number of your Twilio account) "
                              "or messaging_service_sid (MG...), or use transport: simulated")
        account_sid = secret(options.account_sid_env, needed_for=needed_for)
        if not ACCOUNT_SID.fullmatch(account_sid):
            raise ConfigError(f"{needed_for}: the environment variable {options.account_sid_env} does not "
                              "hold an Account SID ('AC' then 32 hex digits)")
        if options.api_key_sid_env:
            auth = (secret(options.api_key_sid_env, needed_for=needed_for),
                    secret(options.api_key_secret_env, needed_for=needed_for))
        else:
            auth = (account_sid, secret(options.auth_token_env, needed_for=needed_for))
        return cls(account_sid=account_sid, auth=auth, sender=options.sender(),
                   status_callback=options.status_callback, timeout=options.timeout)

    def send(self, message: Message, ctx: LeafContext) -> Receipt:
        """Create the message; raise TransientError or PermanentError as Twilio's answer says."""
        form = {"To": message.to, **self.sender, "Body": message.body}
        if self.status_callback:
            form["StatusCallback"] = callback_url(self.status_callback, ctx.idempotency_key)
        try:
            response = request(self._client, "POST", self.url, provider="twilio", data=form)
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, provider="twilio") from exc
        body = _json_object(response)
        if not response.is_success:
            raise twilio_error(response.status_code, response.headers, body, response.text)
        sid = body.get("sid")
        if not (isinstance(sid, str) and sid.startswith(("SM", "MM"))):
            # Twilio may or may not have created a message: retrying could text the customer
            # twice, so this fails for good and a person checks the Twilio console.
            raise PermanentError(f"twilio answered HTTP {response.status_code} without a message sid, so it is "
                                 f"unknown whether a message was created: {response.text.strip()[:200]!r}",
                                 code="no_sid")
        if body.get("error_code") or body.get("status") in ("failed", "undelivered"):
            reason = body.get("error_message") or f"message {sid} is {body.get('status')}"
            raise twilio_error(response.status_code, response.headers,
                               {"code": body.get("error_code"), "message": reason})
        return Receipt(
            channel="sms", transport=self.name, message_id=sid, to=message.to,
            idempotency_key=ctx.idempotency_key, attempt=ctx.attempt,
            detail={"status": body.get("status"), "segments": _int_or_none(body.get("num_segments")),
                    "from": body.get("from"), "messaging_service_sid": body.get("messaging_service_sid")},
        )


    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _int_or_none(value: Any) -> int | None:
    """An integer Twilio sent as a JSON number or as digits (``21211``, ``"1"``); anything else is ``None``.

    ``true`` is no code (``int`` would read 1), and JSON's ``1e999`` reads as infinity, which ``int``
    refuses with ``OverflowError``: after Twilio created the message, that crash would fail the send.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return int(value)
    except (ValueError, OverflowError):  # "abc", nan, infinity, more digits than Python reads
        return None
