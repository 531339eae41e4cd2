"""The APNs transport: HTTP/2 ``POST /3/device/{token}`` with an ES256 provider token.

APNs has no idempotency key. The ``apns-id`` of every attempt is a UUID derived from the
idempotency key, so all attempts of one notification carry the same id (in Apple's delivery
logs and in the receipt); the same value is the ``apns-collapse-id``, so a repeated send is
shown as one notification; and the key itself travels in the payload for the app.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from vow.channels import Message, Receipt
from vow.errors import ConfigError, PermanentError
from vow.http import error_for_exception, is_transient_status, parse_retry_after, request, text_field, transient_error
from vow.leaf import LeafContext
from vow.simulation import stable_uuid
from vow_push.auth import PROVIDER_TOKENS, apns_provider_token
from vow_push.clients import shared_client
from vow_push.validation import KEY_FIELD, check_apns_token, check_text, size_problem

PRODUCTION_HOST = "https://api.push.apple.com"
SANDBOX_HOST = "https://api.sandbox.push.apple.com"

# Reasons worth retrying whatever the status says: IdleTimeout is about the connection, and
# ExpiredProviderToken means our cached token went stale, which the next attempt renews.
TRANSIENT_REASONS = frozenset({"TooManyRequests", "TooManyProviderTokenUpdates", "InternalServerError",
                               "ServiceUnavailable", "Shutdown", "IdleTimeout", "ExpiredProviderToken"})
# Too many notifications to one device token, or provider tokens renewed too often: APNs takes more
# once time has passed, so they are RateLimitErrors, waited out longer than a 5xx.
RATE_LIMIT_REASONS = frozenset({"TooManyRequests", "TooManyProviderTokenUpdates"})


def apns_payload(message: Message, key: str) -> bytes:
    """The JSON body: the alert under ``aps``, the message's data and the key beside it."""
    alert = {"title": message.subject, "body": message.body} if message.subject else {"body": message.body}
    return json.dumps({"aps": {"alert": alert}, **message.data, KEY_FIELD: key},
                      separators=(",", ":"), ensure_ascii=False).encode()


def apns_error(status: int, headers: Mapping[str, str], body: Any, text: str = "") -> Exception:
    """The error an APNs response means, from its ``reason``, then the HTTP status."""
    # A reason that is not text (a list, a number) is no APNs reason: the HTTP status decides instead.
    reason = text_field(body, "reason") if isinstance(body, dict) else None
    detail = reason or text.strip()[:200]
    message = f"APNs answered HTTP {status}" + (f": {detail}" if detail else "")
    code = reason or str(status)
    if reason in TRANSIENT_REASONS or is_transient_status(status):
        retry_after = parse_retry_after(headers.get("retry-after") or headers.get("Retry-After"))
        return transient_error(message, status=status, retry_after=retry_after, code=code,
                               rate_limited=reason in RATE_LIMIT_REASONS)
    return PermanentError(message, code=code)


class ApnsTransport:
    """Sends through APNs over one long-lived HTTP/2 connection; one request per attempt."""

    name = "apns"

    def __init__(self, *, team_id: str, key_id: str, topic: str, key: ec.EllipticCurvePrivateKey,
                 sandbox: bool = False, priority: int = 10, timeout: float = 10.0) -> None:
        self.team_id, self.key_id, self.topic, self.priority = team_id, key_id, topic, priority
        self.host = SANDBOX_HOST if sandbox else PRODUCTION_HOST
        self._key = key
        self._client = shared_client(http2=True, timeout=timeout)

    def validate(self, message: Message) -> None:
        """Device token, text, data keys and size, checked before any send."""
        check_apns_token(message.to)
        check_text(message)
        if "aps" in message.data:
            raise ConfigError("push message data: key 'aps' is reserved by APNs for the alert itself")
        problem = size_problem(len(apns_payload(message, "")), "APNs payload")
        if problem:
            raise ConfigError(problem)

    def send(self, message: Message, ctx: LeafContext) -> Receipt:
        """POST the notification; the receipt's ``message_id`` is the ``apns-id`` APNs answers."""
        key = ctx.idempotency_key
        payload = apns_payload(message, key)
        problem = size_problem(len(payload), "APNs payload")
        if problem:
            raise PermanentError(problem, code="PayloadTooLarge")
        apns_id = stable_uuid(key)
        token = apns_provider_token(self.team_id, self.key_id, self._key)
        headers = {
            "authorization": f"bearer {token}",
            "apns-topic": self.topic,
            "apns-push-type": "alert",
            "apns-priority": str(self.priority),
            "apns-id": apns_id,
            "apns-collapse-id": apns_id,
            "content-type": "application/json",
        }
        try:
            response = request(self._client, "POST", f"{self.host}/3/device/{message.to}", provider="APNs",
                               content=payload, headers=headers)
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, provider="APNs") from exc
        if response.status_code == 200:
            detail = {"apns_id": apns_id, "host": self.host}
            if "apns-unique-id" in response.headers:  # sandbox only: the Push Notifications Console id
                detail["apns_unique_id"] = response.headers["apns-unique-id"]
            return Receipt("push", self.name, response.headers.get("apns-id", apns_id), message.to, key,
                           ctx.attempt, detail=detail)
        try:
            body = response.json()
        except ValueError:
            body = None
        error = apns_error(response.status_code, response.headers, body, response.text)
        if getattr(error, "code", None) == "ExpiredProviderToken":
            PROVIDER_TOKENS.forget((self.team_id, self.key_id), token)
        raise error

    def error_for_status(self, status: int, headers: Mapping[str, str], detail: str) -> Exception:
        """APNs' mapping for an injected status; ``detail`` may be a reason such as ``Unregistered``."""
        try:
            body = json.loads(detail)
        except (TypeError, ValueError):
            body = {"reason": detail} if isinstance(detail, str) and detail.isidentifier() else None
        return apns_error(status, headers, body, detail)
