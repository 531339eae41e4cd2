"""vow-slack: the ``slack`` notification channel for vow.

Transports: ``bot`` (chat.postMessage with a bot token), ``webhook`` (an incoming webhook) and
``simulated`` (no credentials; deduplicated by the shared :class:`vow.simulation.Ledger`).
"""

from vow_slack.base import SlackChannel
from vow_slack.channel import build
from vow_slack.options import SlackOptions

__all__ = ["SlackChannel", "SlackOptions", "build"]
