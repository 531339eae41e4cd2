"""Turning a vow :class:`~vow.channels.Message` into a Slack message, and checking it first.

``to`` is a channel id (``C…``, ``G…``, ``D…``) or ``#name``. An incoming webhook is bound to
one channel when it is created, so for webhooks ``to`` may be empty; when given it must still
look like a channel (it labels the receipt), which catches an e-mail address or phone number
pasted into the Slack branch. ``body`` is the message text (Slack mrkdwn); ``subject``, when
given, becomes a bold first line. ``data`` may carry ``blocks`` (Block Kit, with the text as
the notification fallback) and ``thread_ts`` (reply in a thread).
"""

from __future__ import annotations

import re
from typing import Any

from vow.channels import Message
from vow.errors import ConfigError

MAX_TEXT = 40_000
"""Slack truncates longer text (chat.postMessage documents 40,000 characters)."""

DATA_KEYS = ("blocks", "thread_ts")

EVENT_TYPE = "vow_delivery"
"""``metadata.event_type`` of every message the bot transport posts."""

# \A and \Z, not ^ and $: "$" also matches before a final line break, which was then sent to Slack.
_CHANNEL_ID = re.compile(r"\A[CGD][A-Z0-9]{2,20}\Z")
_CHANNEL_NAME = re.compile(r"\A#[a-z0-9_-]{1,80}\Z")
_TS = re.compile(r"\A\d+\.\d+\Z")

ALLOWED_TO = ("a channel id (C…, G… or D… followed by capital letters and digits, e.g. C0123ABCD) "
              "or '#name' (lowercase letters, digits, '-' and '_', at most 80 characters)")


def is_channel_id(to: str) -> bool:
    """True for an encoded channel id such as ``C0123ABCD`` (not a ``#name``)."""
    return bool(_CHANNEL_ID.match(to))


def validate(message: Message, *, to_required: bool) -> None:
    """Raise :class:`ConfigError` naming the bad field and what is allowed, before any send."""
    if message.to or to_required:
        if not (is_channel_id(message.to) or _CHANNEL_NAME.match(message.to)):
            raise ConfigError(f"slack message.to: {message.to!r} is not a Slack channel: use {ALLOWED_TO}")
    text = text_of(message)
    if not text.strip():
        raise ConfigError("slack message.body: empty: Slack needs text (it is also the notification "
                          "shown for Block Kit messages)")
    if len(text) > MAX_TEXT:
        raise ConfigError(f"slack message.body: {len(text)} characters, at most {MAX_TEXT} allowed "
                          "(subject included)")
    unknown = sorted(set(message.data) - set(DATA_KEYS))
    if unknown:
        raise ConfigError(f"slack message.data: unknown key(s) {', '.join(unknown)} "
                          f"(allowed: {', '.join(DATA_KEYS)})")
    blocks = message.data.get("blocks")
    if blocks is not None and not (isinstance(blocks, list) and all(isinstance(b, dict) for b in blocks)):
        raise ConfigError("slack message.data.blocks: must be a list of Block Kit blocks (mappings), "
                          f"got {type(blocks).__name__}")
    thread_ts = message.data.get("thread_ts")
    if thread_ts is not None and not (isinstance(thread_ts, str) and _TS.match(thread_ts)):
        raise ConfigError(f"slack message.data.thread_ts: must be a message ts such as "
                          f"'1700000000.123456', got {thread_ts!r}")


def text_of(message: Message) -> str:
    """The text Slack shows: the subject in bold on its own line, then the body."""
    return f"*{message.subject}*\n{message.body}" if message.subject else message.body


def payload(message: Message) -> dict[str, Any]:
    """The JSON body shared by both transports: ``text`` plus the optional ``data`` fields."""
    body: dict[str, Any] = {"text": text_of(message)}
    body.update({k: message.data[k] for k in DATA_KEYS if k in message.data})
    return body


def metadata(idempotency_key: str) -> dict[str, Any]:
    """Message metadata that carries vow's idempotency key (Slack has no idempotency header)."""
    return {"event_type": EVENT_TYPE, "event_payload": {"idempotency_key": idempotency_key}}


def carries_key(slack_message: Any, idempotency_key: str) -> bool:
    """True when a message read back from Slack was posted by vow with ``idempotency_key``.

    A message not shaped like vow's metadata (another app's, or a malformed one) is not vow's post.
    """
    meta = slack_message.get("metadata") if isinstance(slack_message, dict) else None
    if not isinstance(meta, dict) or meta.get("event_type") != EVENT_TYPE:
        return False
    event_payload = meta.get("event_payload")
    return isinstance(event_payload, dict) and event_payload.get("idempotency_key") == idempotency_key
