"""The factory of the ``slack`` channel: picks the transport and reads its secret."""

from __future__ import annotations

import os

from vow.config import secret
from vow.simulation import Ledger
from vow_slack.base import SlackChannel
from vow_slack.bot import BotTransport
from vow_slack.options import SlackOptions
from vow_slack.simulated import SimulatedTransport
from vow_slack.webhook import WebhookTransport


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
    transport = resolve_transport(options)
    if transport == "bot":
        token = secret(options.bot_token_env, needed_for="slack bot transport (chat.postMessage)")
        return BotTransport(token, api_url=options.api_url, timeout=options.timeout,
                            check_before_retry=options.check_before_retry)
    if transport == "webhook":
        url = secret(options.webhook_url_env, needed_for="slack webhook transport (incoming webhook URL)")
        return WebhookTransport(url, timeout=options.timeout, url_env=options.webhook_url_env)
    return SimulatedTransport(Ledger(options.ledger), mean_latency=options.latency)
