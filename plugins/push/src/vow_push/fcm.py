"""The FCM HTTP v1 transport: ``POST /v1/projects/{project}/messages:send`` with an OAuth2 token.

FCM has no idempotency key for sends. The key travels in the data payload
(``vow_idempotency_key``) so the app can drop a repeat, and a value derived from it is used as
the Android notification ``tag`` and the ``apns-collapse-id``, so a repeated send replaces the
notification on screen instead of showing it twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NoReturn, Protocol

import httpx

from vow.channels import Message, Receipt
from vow.errors import ConfigError, PermanentError, TransientError
from vow.http import error_for_exception, is_transient_status, parse_retry_after, request, text_field, transient_error
from vow.leaf import LeafContext
from vow.simulation import stable_uuid
from vow_push.clients import shared_client
from vow_push.validation import KEY_FIELD, check_fcm_token, check_text, size_problem

FCM_SEND_URL = "https://fcm.googleapis.com/v1/projects/{project_id}/messages:send"
RESERVED_DATA_KEYS = ("from", "gcm", "message_type")  # and any key starting with "google"

# FcmError codes (details[].errorCode) first, then canonical statuses (error.status).
TRANSIENT_CODES = frozenset({"UNAVAILABLE", "INTERNAL", "QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"})
# The project's per-minute quota, or one device's, is used up until it refills (FCM: "in the following
# minute"): a RateLimitError, waited out longer than a 5xx (never sooner than Retry-After).
RATE_LIMIT_CODES = frozenset({"QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED"})
PERMANENT_CODES = frozenset({"INVALID_ARGUMENT", "UNREGISTERED", "SENDER_ID_MISMATCH", "THIRD_PARTY_AUTH_ERROR",
                             "APNS_AUTH_ERROR", "PERMISSION_DENIED", "NOT_FOUND", "UNAUTHENTICATED"})


class AccessTokenSource(Protocol):
    """Where the OAuth2 bearer token comes from (see :mod:`vow_push.auth`)."""

    def get(self, client: httpx.Client) -> str: ...

    def reject(self, token: str) -> bool: ...


def fcm_data(message: Message, key: str) -> dict[str, str]:
    """The data payload: FCM takes only string values, so others are sent as JSON text."""
    data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in message.data.items()}
    data[KEY_FIELD] = key
    return data


def fcm_message(message: Message, key: str) -> dict[str, Any]:
    """The request body for one message to one registration token."""
    collapse_id = stable_uuid(key)
    notification = {"title": message.subject, "body": message.body} if message.subject else {"body": message.body}
    return {"message": {
        "token": message.to,
        "notification": notification,
        "data": fcm_data(message, key),
        "android": {"notification": {"tag": collapse_id}},
        "apns": {"headers": {"apns-collapse-id": collapse_id}},
    }}


def payload_size(message: Message, key: str) -> int:
    """Bytes FCM counts against its 4096-byte limit: title, body, and every data key and value."""
    parts = [message.subject or "", message.body, *(k + v for k, v in fcm_data(message, key).items())]
    return sum(len(p.encode()) for p in parts)


def fcm_error(status: int, headers: Mapping[str, str], body: Any, text: str = "") -> Exception:
    """The error an FCM response means, from its ``errorCode``, its ``status``, then the HTTP status."""
    error = body.get("error") if isinstance(body, dict) else None
    code, detail = None, text.strip()[:200]
    if isinstance(error, dict):
        # A code that is not text (a list, a number) is no FCM code: the HTTP status decides instead.
        details = error.get("details")
        details = details if isinstance(details, list) else []
        first = next((c for d in details if isinstance(d, dict) and (c := text_field(d, "errorCode"))), None)
        code = first if first and first != "UNSPECIFIED_ERROR" else text_field(error, "status")
        detail = str(error.get("message") or detail)
    reason = f"FCM answered HTTP {status}" + (f" {code}" if code else "") + (f": {detail}" if detail else "")
    retry_after = parse_retry_after(headers.get("retry-after") or headers.get("Retry-After"))
    if code in TRANSIENT_CODES or (code not in PERMANENT_CODES and is_transient_status(status)):
        return transient_error(reason, status=status, retry_after=retry_after, code=code or str(status),
                               rate_limited=code in RATE_LIMIT_CODES)
    return PermanentError(reason, code=code or str(status))


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class FcmTransport:
    """Sends through FCM HTTP v1; one request per attempt."""

    name = "fcm"

    def __init__(self, project_id: str, tokens: AccessTokenSource, *, timeout: float) -> None:
        self.project_id = project_id
        self.url = FCM_SEND_URL.format(project_id=project_id)
        self._tokens = tokens
        self._client = shared_client(http2=False, timeout=timeout)

    def validate(self, message: Message) -> None:
        """Registration token, text, data keys and size, checked before any send."""
        check_fcm_token(message.to)
        check_text(message)
        for key in message.data:
            if not isinstance(key, str) or key in RESERVED_DATA_KEYS or key.lower().startswith("google"):
                raise ConfigError(f"push message data: key {key!r} is reserved by FCM (not allowed: "
                                  f"{', '.join(RESERVED_DATA_KEYS)}, or any key starting with 'google')")
        problem = size_problem(payload_size(message, ""), "FCM title, body and data")
        if problem:
            raise ConfigError(problem)

    def send(self, message: Message, ctx: LeafContext) -> Receipt:
        """POST the message; the receipt's ``message_id`` is FCM's message name."""
        key = ctx.idempotency_key
        problem = size_problem(payload_size(message, key), "FCM title, body and data")
        if problem:
            raise PermanentError(problem, code="PAYLOAD_TOO_LARGE")
        token = self._tokens.get(self._client)
        try:
            response = request(self._client, "POST", self.url, provider="FCM", json=fcm_message(message, key),
                               headers={"authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, provider="FCM") from exc
        body = _json(response)
        name = text_field(body, "name") if isinstance(body, dict) else None  # true or a list is no name
        if response.status_code == 200 and name:
            return Receipt("push", self.name, name, message.to, key, ctx.attempt,
                           detail={"project_id": self.project_id})
        if response.status_code == 200 and not (isinstance(body, dict) and "error" in body):
            # accepted-looking but without a message name: not a success
            self._fail(PermanentError(f"FCM answered 200 without a message name: {response.text[:200]}",
                                      code="NO_MESSAGE_NAME"), token)
        self._fail(fcm_error(response.status_code, response.headers, body, response.text), token)

    def _fail(self, error: Exception, token: str) -> NoReturn:
        # A service-account token FCM refuses is renewed, so the retry can succeed; a token
        # the user supplied cannot be, so the refusal is final.
        if getattr(error, "code", None) == "UNAUTHENTICATED" and self._tokens.reject(token):
            raise TransientError(f"{error} (access token renewed for the next attempt)", code="UNAUTHENTICATED")
        raise error

    def error_for_status(self, status: int, headers: Mapping[str, str], detail: str) -> Exception:
        """FCM's mapping for an injected status; ``detail`` may be an FCM error body or code."""
        return fcm_error(status, headers, parse_error_detail(detail), detail)


def parse_error_detail(detail: str) -> Any:
    """An FCM error body from ``detail``: JSON as is, a bare code such as ``UNREGISTERED`` wrapped."""
    try:
        return json.loads(detail)
    except (TypeError, ValueError):
        pass
    if isinstance(detail, str) and detail in TRANSIENT_CODES | PERMANENT_CODES:
        return {"error": {"status": detail, "message": detail}}
    return None
