"""Registers the ``slack`` channel with vow (entry point ``slack = "vow_slack.plugin"``)."""

from __future__ import annotations

from vow.hookspecs import Register, hookimpl
from vow_slack.channel import build
from vow_slack.options import SlackOptions


@hookimpl
def vow_register_channels(register: Register) -> None:
    """Register ``slack``: bot (chat.postMessage), incoming webhook, or simulated."""
    register("slack", build, SlackOptions,
             description="Slack: chat.postMessage (bot token), incoming webhook, or simulated")
