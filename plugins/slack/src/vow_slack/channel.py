"""The ``slack`` channel: what every transport shares, and the factory that picks one."""

from __future__ import annotations

import os
from typing import Mapping

from vow.channels import Message, Receipt
from vow.config import secret
from vow.leaf import LeafContext
from vow.simulation import Ledger

from vow_slack import message as slack_message
from vow_slack.errors import slack_error
from vow_slack.options import SlackOptions

CHANNEL = "slack"


class SlackChannel:
    """Base of the Slack transports: validation and the status mapping used by fault injection."""

    transport = ""
    needs_to = True
    """Whether ``message.to`` must name a channel (a webhook is bound to one already)."""

    def validate(self, message: Message) -> None:
        """Raise :class:`~vow.errors.ConfigError` for a malformed channel or text, before any send."""
        slack_message.validate(message, to_required=self.needs_to)

    def send(self, message: Message, ctx: LeafContext) -> Receipt:  # pragma: no cover - abstract
        """Post ``message`` once; raise ``TransientError`` or ``PermanentError`` on failure."""
        raise NotImplementedError

    def error_for_status(self, status: int, headers: Mapping[str, str], detail: str) -> Exception:
        """Classify an HTTP status the way a real Slack answer with that status is classified."""
        return slack_error(str(status), status, headers, via=f"{self.transport} transport", detail=detail)

    def receipt(self, message: Message, ctx: LeafContext, message_id: str, **detail: object) -> Receipt:
        """A receipt for ``message`` accepted by Slack as ``message_id``."""
        return Receipt(CHANNEL, self.transport, message_id, message.to, ctx.idempotency_key, ctx.attempt,
                       detail=dict(detail))


def resolve_transport(options: SlackOptions) -> str:
    """``options.transport``, with ``auto`` replaced by what the environment has credentials for."""
    if options.transport != "auto":
        return options.transport
    if os.environ.get(options.bot_token_env):
        return "bot"
    if os.environ.get(options.webhook_url_env):
        return "webhook"
    return "simulated"


def build(options: SlackOptions) -> SlackChannel:
    """Factory registered for ``slack``: the transport the options ask for, secrets read now.

    A missing secret for an explicitly chosen real transport is a
    :class:`~vow.errors.ConfigError` here, before anything is sent.
    """
    from vow_slack.bot import BotTransport
    from vow_slack.simulated import SimulatedTransport
    from vow_slack.webhook import WebhookTransport

    options.check()
    transport = resolve_transport(options)
    if transport == "bot":
        token = secret(options.bot_token_env, needed_for="slack bot transport (chat.postMessage)")
        return BotTransport(token, api_url=options.api_url, timeout=options.timeout,
                            check_before_retry=options.check_before_retry)
    if transport == "webhook":
        url = secret(options.webhook_url_env, needed_for="slack webhook transport (incoming webhook URL)")
        return WebhookTransport(url, timeout=options.timeout, url_env=options.webhook_url_env)
    return SimulatedTransport(Ledger(options.ledger), mean_latency=options.latency)
