"""The ``bot`` transport: ``chat.postMessage`` with a bot token (``xoxb-…``).

Slack accepts no idempotency key, so the key rides in the message's ``metadata``. Before a
repeated attempt (``ctx.attempt > 1``: a retry, or a resume after a crash) the transport reads
the channel's recent messages back and, when one already carries the key, returns its receipt
as a duplicate instead of posting again. The README states what this does and does not cover.
"""

from __future__ import annotations

from typing import Any

import httpx

from vow.channels import Message, Receipt
from vow.errors import PermanentError, TransientError
from vow.http import error_for_exception, error_for_status
from vow.leaf import LeafContext
from vow_slack.base import SlackChannel
from vow_slack.errors import slack_error
from vow_slack.message import carries_key, is_channel_id, metadata, payload

JSON_UTF8 = {"Content-Type": "application/json; charset=utf-8"}
"""Without the charset Slack accepts the post but adds ``warning: missing_charset``."""

LOOKBACK = 100
"""How many of the channel's newest messages are searched for an earlier post of the same key."""


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
            if self._check_before_retry and ctx.attempt > 1 and is_channel_id(message.to):
                earlier = self._find_posted(client, message, ctx)
                if earlier is not None:
                    ts = earlier.get("ts", "")
                    receipt = self.receipt(message, ctx, f"{message.to}:{ts}", channel=message.to, ts=ts,
                                           recognised_by="metadata.event_payload.idempotency_key")
                    return Receipt(**{**receipt.to_dict(), "duplicate": True})
            body = {"channel": message.to, **payload(message), "metadata": metadata(key)}
            answer = self._call(client, "POST", "chat.postMessage", json=body, headers=JSON_UTF8)
        channel, ts = answer.get("channel", message.to), answer.get("ts", "")
        extra = {"warning": answer["warning"]} if answer.get("warning") else {}
        return self.receipt(message, ctx, f"{channel}:{ts}", channel=channel, ts=ts, **extra)

    def _find_posted(self, client: httpx.Client, message: Message, ctx: LeafContext) -> dict[str, Any] | None:
        """The message an earlier attempt posted with this key, if Slack shows one.

        A lookup that Slack refuses for good (no ``*:history`` scope, bot not in the channel)
        is logged and the post goes ahead; a transient refusal is raised, so the attempt is
        retried rather than posting blind.
        """
        thread_ts = message.data.get("thread_ts")
        endpoint = "conversations.replies" if thread_ts else "conversations.history"
        params: dict[str, Any] = {"channel": message.to, "limit": LOOKBACK, "include_all_metadata": "true"}
        if thread_ts:
            params["ts"] = thread_ts
        try:
            answer = self._call(client, "GET", endpoint, params=params)
        except PermanentError as exc:
            ctx.logger.warning("slack: cannot check %s for an earlier post of key %r (%s); posting",
                               message.to, ctx.idempotency_key, exc)
            return None
        return next((m for m in answer.get("messages") or [] if carries_key(m, ctx.idempotency_key)), None)

    def _call(self, client: httpx.Client, method: str, endpoint: str, **kwargs: Any) -> dict[str, Any]:
        """Call a Web API method; return its answer when ``ok`` is true, else raise the mapped error."""
        try:
            response = client.request(method, f"{self._api_url}/{endpoint}", **kwargs)
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, provider=f"slack {endpoint}") from exc
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            snippet = response.text[:200]
            if response.is_success:
                # Slack always answers JSON; a 2xx page without it came from something in between.
                raise TransientError(f"slack {endpoint} answered HTTP {response.status_code} without a JSON "
                                     f"body: {snippet!r}", code="invalid_response")
            raise error_for_status(response.status_code, response.headers, snippet, provider=f"slack {endpoint}")
        if response.status_code == 429 or not answer.get("ok"):
            code = answer.get("error") or ("ratelimited" if response.status_code == 429
                                           else str(response.status_code))
            raise slack_error(code, response.status_code, response.headers, via=endpoint)
        return answer
