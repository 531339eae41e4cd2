"""The ``sms`` channel: checks a message before anything is sent, then hands it to one transport."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from vow.channels import Message, Receipt
from vow.errors import ConfigError
from vow.leaf import LeafContext
from vow_sms.options import E164, E164_HELP, SmsOptions
from vow_sms.simulated import SimulatedTransport
from vow_sms.twilio import TwilioTransport, credentials_present, twilio_error

MAX_BODY_CHARS = 1600
"""Twilio's limit for one message body (it is split into segments on the way)."""


class Transport(Protocol):
    """What the channel sends through: ``twilio`` or ``simulated``."""

    name: str

    def send(self, message: Message, ctx: LeafContext) -> Receipt: ...


def validate_message(message: Message) -> None:
    """Raise :class:`ConfigError` naming the field when ``message`` cannot be sent as an SMS."""
    to, body = message.to, message.body
    if not isinstance(to, str):
        # YAML reads an unquoted +14155550123 as the integer 14155550123.
        raise ConfigError(f"sms message.to: got {type(to).__name__} {to!r}; write the phone number as a quoted "
                          f"string in {E164_HELP}")
    if not E164.fullmatch(to):
        raise ConfigError(f"sms message.to: {to!r} is not a phone number in {E164_HELP}")
    if not isinstance(body, str) or not body.strip():
        raise ConfigError("sms message.body: an SMS needs text (a non-empty string)")
    if len(body) > MAX_BODY_CHARS:
        raise ConfigError(f"sms message.body: {len(body)} characters; Twilio accepts at most {MAX_BODY_CHARS}")


class SmsChannel:
    """Sends one text message to one phone number over ``transport``."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def validate(self, message: Message) -> None:
        """Check the recipient and the body before any send (see :func:`validate_message`)."""
        validate_message(message)

    def send(self, message: Message, ctx: LeafContext) -> Receipt:
        """Send ``message`` once; the receipt's ``message_id`` is the Twilio message sid."""
        return self.transport.send(message, ctx)

    def error_for_status(self, status: int, headers: Mapping[str, str], detail: str) -> Exception:
        """The error Twilio's answer with this HTTP status means (used by fault injection)."""
        return twilio_error(status, headers, {"message": detail})


def build_sms_channel(options: SmsOptions) -> SmsChannel:
    """The channel ``options`` describe; ``auto`` means Twilio when its credentials are set, else simulated."""
    transport = options.transport
    if transport == "auto":
        transport = "twilio" if credentials_present(options) else "simulated"
    if transport == "twilio":
        return SmsChannel(TwilioTransport.from_options(options))
    return SmsChannel(SimulatedTransport.from_options(options))
