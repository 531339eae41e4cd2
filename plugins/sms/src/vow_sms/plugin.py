"""Registers the ``sms`` channel with vow (entry point ``sms`` in the ``vow`` group)."""

from __future__ import annotations

from vow.hookspecs import Register, hookimpl
from vow_sms.channel import build_sms_channel
from vow_sms.options import SmsOptions


@hookimpl
def vow_register_channels(register: Register) -> None:
    """Register ``sms``: Twilio Programmable Messaging, or a simulated provider without keys."""
    register("sms", build_sms_channel, SmsOptions,
             description="SMS over Twilio Programmable Messaging (simulated when no credentials are set)")
