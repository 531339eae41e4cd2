"""The options of the ``sms`` channel (validated by vow: strict types, a bad field names its key)."""

from __future__ import annotations

import re
from typing import Any, Literal

import attrs

from vow.config import finite
from vow.http import http_url

E164 = re.compile(r"\+[1-9][0-9]{7,14}")
"""``+``, then 8 to 15 digits, the country code first (so never a leading 0)."""

E164_HELP = "E.164: '+' then 8-15 digits with the country code first, no spaces or dashes, e.g. +14155550123"

MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _e164(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    if not E164.fullmatch(value):
        raise ValueError(f"{value!r} is not a phone number in {E164_HELP}")


_optional = attrs.validators.optional
_ENV = attrs.validators.matches_re(ENV_NAME)  # the NAME of an environment variable


@attrs.frozen
class SmsOptions:
    """How the ``sms`` channel sends.

    ``transport``: ``auto`` (Twilio when its credentials are in the environment, else
    simulated), ``twilio`` or ``simulated``. Secrets are given as the *names* of environment
    variables and read when the channel is built.
    """

    transport: Literal["auto", "twilio", "simulated"] = "auto"
    from_number: str | None = attrs.field(default=None, validator=_optional(_e164))
    messaging_service_sid: str | None = attrs.field(
        default=None, validator=_optional(attrs.validators.matches_re(MESSAGING_SERVICE_SID)))  # MG + 32 hex digits
    status_callback: str | None = attrs.field(
        default=None, validator=http_url("https://hooks.example.com/sms/status"))
    account_sid_env: str = attrs.field(default="TWILIO_ACCOUNT_SID", validator=_ENV)
    auth_token_env: str = attrs.field(default="TWILIO_AUTH_TOKEN", validator=_ENV)
    api_key_sid_env: str | None = attrs.field(default=None, validator=_optional(_ENV))
    api_key_secret_env: str = attrs.field(default="TWILIO_API_KEY_SECRET", validator=_ENV)
    timeout: float = attrs.field(default=10.0, validator=[finite(), attrs.validators.gt(0)])
    latency: float = attrs.field(default=0.15, validator=[finite(), attrs.validators.ge(0)])
    ledger: str | None = None

    def sender(self) -> dict[str, Any]:
        """The Twilio form fields that name the sender (``From`` and/or ``MessagingServiceSid``)."""
        fields: dict[str, Any] = {}
        if self.from_number:
            fields["From"] = self.from_number
        if self.messaging_service_sid:
            fields["MessagingServiceSid"] = self.messaging_service_sid
        return fields
