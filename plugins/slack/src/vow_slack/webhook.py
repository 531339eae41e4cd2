"""The ``webhook`` transport: a Slack incoming webhook, bound to one channel when it was created.

Slack answers ``ok`` (HTTP 200) or an error code in plain text next to an HTTP status. It
returns no message id and accepts no idempotency key, so the receipt's ``message_id`` is vow's
idempotency key. The webhook URL is a secret: it never appears in an error or a receipt.
"""

from __future__ import annotations

import re

import httpx

from vow.channels import Message, Receipt
from vow.http import error_for_exception, request
from vow.leaf import LeafContext
from vow_slack.base import SlackChannel
from vow_slack.errors import slack_error
from vow_slack.message import payload

_CODE = re.compile(r"\A[a-z_]{1,64}\Z")  # \Z: "$" also matches before a final line break


class WebhookTransport(SlackChannel):
    """POSTs ``{"text", "blocks"?, "thread_ts"?}`` to the webhook URL; only ``200 ok`` is success."""

    transport = "webhook"
    needs_to = False

    def __init__(self, url: str, *, timeout: float = 10.0, url_env: str = "SLACK_WEBHOOK_URL") -> None:
        self._url = url
        self._timeout = timeout
        self._url_env = url_env

    def send(self, message: Message, ctx: LeafContext) -> Receipt:
        """Post ``message`` to the webhook's channel (``message.to`` only labels the receipt)."""
        try:
            with httpx.Client(timeout=self._timeout) as client:
                response = request(client, "POST", self._url, provider="slack incoming webhook",
                                   json=payload(message))
        except httpx.HTTPError as exc:
            error = error_for_exception(exc, provider="slack incoming webhook")
            error.args = (str(error).replace(self._url, f"${self._url_env}"),)  # keep the secret out of logs
            raise error from None
        text = response.text.strip()
        if response.status_code == 200 and text == "ok":
            return self.receipt(message, ctx, ctx.idempotency_key, response="ok")
        if _CODE.match(text):
            code, detail = text, ""
        else:
            code = "rate_limited" if response.status_code == 429 else str(response.status_code)
            detail = text[:200]
        raise slack_error(code, response.status_code, response.headers, via="incoming webhook", detail=detail)
