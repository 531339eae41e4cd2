"""Registers the ``email`` channel with vow (entry point ``email = "vow_email.plugin"``)."""

from __future__ import annotations

from vow.hookspecs import Register, hookimpl
from vow_email.channel import build_email_channel
from vow_email.options import EmailOptions


@hookimpl
def vow_register_channels(register: Register) -> None:
    """The ``email`` channel: SMTP, Resend or simulated."""
    register("email", build_email_channel, EmailOptions,
             description="Email over SMTP (STARTTLS/SSL, AUTH) or the Resend API; simulated without credentials")
