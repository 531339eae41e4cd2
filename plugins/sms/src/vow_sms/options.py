"""The options of the ``sms`` channel (validated by vow with cattrs; a bad field names its key)."""

from __future__ import annotations

import re
from typing import Any

import attrs

TRANSPORTS = ("auto", "twilio", "simulated")

E164 = re.compile(r"\+[1-9][0-9]{7,14}")
"""``+``, then 8 to 15 digits, the country code first (so never a leading 0)."""

E164_HELP = "E.164: '+' then 8-15 digits with the country code first, no spaces or dashes, e.g. +14155550123"

MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _one_of(allowed: tuple[str, ...]):
    def check(_inst: object, attr: attrs.Attribute, value: str) -> None:
        if value not in allowed:
            raise ValueError(f"{attr.name}: {value!r} is not allowed (allowed: {', '.join(allowed)})")
    return check


def _e164_or_none(_inst: object, attr: attrs.Attribute, value: str | None) -> None:
    if value is not None and not E164.fullmatch(value):
        raise ValueError(f"{attr.name}: {value!r} is not a phone number in {E164_HELP}")


def _service_sid_or_none(_inst: object, attr: attrs.Attribute, value: str | None) -> None:
    if value is not None and not MESSAGING_SERVICE_SID.fullmatch(value):
        raise ValueError(f"{attr.name}: {value!r} is not a Messaging Service SID ('MG' then 32 hex digits)")


def _http_url_or_none(_inst: object, attr: attrs.Attribute, value: str | None) -> None:
    if value is not None and not re.match(r"https?://[^/\s?#]+", value):
        raise ValueError(f"{attr.name}: {value!r} is not an absolute http:// or https:// URL")


def _env_name(_inst: object, attr: attrs.Attribute, value: str | None) -> None:
    if value is not None and not ENV_NAME.fullmatch(value):
        raise ValueError(f"{attr.name}: {value!r} is not an environment variable name")


def _positive(_inst: object, attr: attrs.Attribute, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attr.name}: must be more than 0 seconds, got {value}")


def _not_negative(_inst: object, attr: attrs.Attribute, value: float) -> None:
    if value < 0:
        raise ValueError(f"{attr.name}: must be 0 seconds or more, got {value}")


@attrs.frozen
class SmsOptions:
    """How the ``sms`` channel sends.

    ``transport``: ``auto`` (Twilio when its credentials are in the environment, else
    simulated), ``twilio`` or ``simulated``. Secrets are given as the *names* of environment
    variables and read when the channel is built.
    """

    transport: str = attrs.field(default="auto", validator=_one_of(TRANSPORTS))
    from_number: str | None = attrs.field(default=None, validator=_e164_or_none)
    messaging_service_sid: str | None = attrs.field(default=None, validator=_service_sid_or_none)
    status_callback: str | None = attrs.field(default=None, validator=_http_url_or_none)
    account_sid_env: str = attrs.field(default="TWILIO_ACCOUNT_SID", validator=_env_name)
    auth_token_env: str = attrs.field(default="TWILIO_AUTH_TOKEN", validator=_env_name)
    api_key_sid_env: str | None = attrs.field(default=None, validator=_env_name)
    api_key_secret_env: str = attrs.field(default="TWILIO_API_KEY_SECRET", validator=_env_name)
    timeout: float = attrs.field(default=10.0, validator=_positive)
    latency: float = attrs.field(default=0.15, validator=_not_negative)
    ledger: str | None = None

    def sender(self) -> dict[str, Any]:
        """The Twilio form fields that name the sender (``From`` and/or ``MessagingServiceSid``)."""
        fields: dict[str, Any] = {}
        if self.from_number:
            fields["From"] = self.from_number
        if self.messaging_service_sid:
            fields["MessagingServiceSid"] = self.messaging_service_sid
        return fields
