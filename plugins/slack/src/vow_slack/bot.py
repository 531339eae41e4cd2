"""The ``bot`` transport: ``chat.postMessage`` with a bot token (``xoxb-…``).

Slack accepts no idempotency key, so the key rides in the message's ``metadata``. Before a
repeated attempt (``ctx.attempt > 1``, a retry, or ``ctx.resumed``, the same attempt again after
the process that began it died) the transport reads
the channel's recent messages back and, when one already carries the key, returns its receipt
as a duplicate instead of posting again. The README states what this does and does not cover.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from vow.channels import Message, Receipt
from vow.errors import PermanentError, TransientError
from vow.http import MAX_ANSWER_BYTES, error_for_exception, error_for_status, request, text_field
from vow.leaf import LeafContext
from vow_slack.base import SlackChannel
from vow_slack.errors import slack_error
from vow_slack.message import carries_key, is_channel_id, metadata, payload

JSON_UTF8 = {"Content-Type": "application/json; charset=utf-8"}
"""Without the charset Slack accepts the post but adds ``warning: missing_charset``."""

LOOKBACK = 100
"""How many of the channel's newest messages are searched for an earlier post of the same key."""

HISTORY_ANSWER_BYTES = 64 << 20
"""How much of a history answer is read: :data:`LOOKBACK` messages of up to 40,000 characters, with
blocks and attachments, run to megabytes, and one cut short would hide the post the read looks for."""


class BotTransport(SlackChannel):
    """Posts with ``chat.postMessage``; ``ok: false`` answers become errors, never receipts."""

    transport = "bot"

    def __init__(self, token: str, *, api_url: str = "https://slack.com/api", timeout: float = 10.0,
                 check_before_retry: bool = True) -> None:
        self._token = token
        self._api_url = api_url.rstrip("/")
        self._timeout = timeout
        self._check_before_retry = check_before_retry

    def send(self, message: Message, ctx: LeafContext) -> Receipt:
        """Post ``message`` to ``message.to``; the receipt's id is ``"{channel}:{ts}"``."""
        key = ctx.idempotency_key
        with httpx.Client(timeout=self._timeout, headers={"Authorization": f"Bearer {self._token}"}) as client:
            if self._check_before_retry and (ctx.attempt > 1 or ctx.resumed) and is_channel_id(message.to):
                earlier = self._find_posted(client, message, ctx)
                if earlier is not None:
                    ts = _text(earlier, "ts", f"{endpoint_for(message)} answered a message carrying key {key!r}")
                    receipt = self.receipt(message, ctx, f"{message.to}:{ts}", channel=message.to, ts=ts,
                                           recognised_by="metadata.event_payload.idempotency_key")
                    return Receipt(**{**receipt.to_dict(), "duplicate": True})
            body = {"channel": message.to, **payload(message), "metadata": metadata(key)}
            answer = self._call(client, "POST", "chat.postMessage", json=body, headers=JSON_UTF8)
        channel = _text(answer, "channel", "chat.postMessage answered ok", default=message.to)
        ts = _text(answer, "ts", "chat.postMessage answered ok")
        extra = {"warning": answer["warning"]} if answer.get("warning") else {}
        return self.receipt(message, ctx, f"{channel}:{ts}", channel=channel, ts=ts, **extra)

    def _find_posted(self, client: httpx.Client, message: Message, ctx: LeafContext) -> dict[str, Any] | None:
        """The message an earlier attempt posted with this key, if Slack shows one.

        A lookup that Slack refuses for good (no ``*:history`` scope, bot not in the channel)
        is logged and the post goes ahead; a transient refusal is raised, so the attempt is
        retried rather than posting blind.
        """
        thread_ts = message.data.get("thread_ts")
        endpoint = endpoint_for(message)
        params: dict[str, Any] = {"channel": message.to, "limit": LOOKBACK, "include_all_metadata": "true"}
        if thread_ts:
            params["ts"] = thread_ts
        try:
            answer = self._call(client, "GET", endpoint, params=params, limit=HISTORY_ANSWER_BYTES)
        except PermanentError as exc:
            ctx.logger.warning("slack: cannot check %s for an earlier post of key %r (%s); posting",
                               message.to, ctx.idempotency_key, exc)
            return None
        messages = answer.get("messages", [])
        if not isinstance(messages, list):
            raise _malformed(f"{endpoint} answered ok", f"{_shown(answer, 'messages')}: expected a list of messages")
        return next((m for m in messages if carries_key(m, ctx.idempotency_key)), None)

    def _call(self, client: httpx.Client, method: str, endpoint: str, *, limit: int = MAX_ANSWER_BYTES,
              **kwargs: Any) -> dict[str, Any]:
        """Call a Web API method; return its answer when ``ok`` is true, else raise the mapped error.

        At most ``limit`` bytes of the answer are read (see :func:`vow.http.request`)."""
        try:
            response = request(client, method, f"{self._api_url}/{endpoint}", provider=f"slack {endpoint}",
                               limit=limit, **kwargs)
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, provider=f"slack {endpoint}") from exc
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            snippet = response.text[:200]
            if response.is_success:
                # Slack always answers a JSON object; a 2xx page without one came from something in between.
                raise _malformed(f"{endpoint} answered HTTP {response.status_code}", f"not a JSON object: {snippet!r}")
            raise error_for_status(response.status_code, response.headers, snippet, provider=f"slack {endpoint}")
        ok = answer.get("ok")
        if ok is True and response.status_code != 429:
            return answer
        if ok is not False and response.is_success:
            # Only the JSON booleans are Slack's answer: "false", 1 or null must not pass as success,
            # nor be taken for a refusal that Slack never made.
            raise _malformed(f"{endpoint} answered HTTP {response.status_code}",
                             f"{_shown(answer, 'ok')}: only true or false is a Slack answer")
        code = text_field(answer, "error")
        detail = "" if code or "error" not in answer else f"{_shown(answer, 'error')}, not a Slack error code"
        if code is None:
            code = "ratelimited" if response.status_code == 429 else str(response.status_code)
        raise slack_error(code, response.status_code, response.headers, via=endpoint, detail=detail)


def endpoint_for(message: Message) -> str:
    """The Web API method that reads back where ``message`` goes: its thread, or the channel."""
    return "conversations.replies" if message.data.get("thread_ts") else "conversations.history"


def _shown(answer: dict[str, Any], name: str) -> str:
    """How field ``name`` of a Slack answer looks, for an error message: ``'ts' = null`` or ``'ts' is missing``."""
    if name not in answer:
        return f"{name!r} is missing"
    return f"{name!r} = {json.dumps(answer[name])[:200]}"


def _text(answer: dict[str, Any], name: str, what: str, *, default: str | None = None) -> str:
    """Text field ``name`` of a Slack answer (``default`` when it is absent); any other value is malformed."""
    if default is not None and name not in answer:
        return default
    value = text_field(answer, name)
    if value is None:
        raise _malformed(what, f"{_shown(answer, name)}: expected text")
    return value


def _malformed(what: str, problem: str) -> TransientError:
    """A 2xx answer not shaped as Slack documents it: transient, like a 2xx page without JSON.

    It is a bug of Slack's or of something in between, and whether a post went through is
    unknown; the check before the retry (see the README) finds a post that did.
    """
    return TransientError(f"slack {what}, but {problem}", code="invalid_response")
