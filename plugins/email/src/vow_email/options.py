"""The options of the ``email`` channel: one attrs class, validated by vow (strict types, attrs validators).

From YAML::

    channel: email
    options:
      transport: smtp
      from_addr: "Shop <orders@shop.example>"
      smtp: {host: smtp.shop.example, port: 587}

Secrets are never options: an option names the environment variable that holds them.
"""

from __future__ import annotations

from typing import Literal

import attrs

from vow.config import finite
from vow.http import http_url

# Literal types: cattrs then reports a bad value with its key path and the allowed values.
Transport = Literal["auto", "smtp", "resend", "simulated"]
Security = Literal["auto", "starttls", "ssl", "none"]


@attrs.frozen
class SmtpOptions:
    """Where and how to reach the SMTP server.

    ``security``: ``starttls`` upgrades the connection before anything is sent (and fails when the
    server does not offer STARTTLS), ``ssl`` is implicit TLS (port 465), ``none`` is plain text
    for a local relay, ``auto`` is ``ssl`` on port 465 and ``starttls`` everywhere else.
    Authentication happens when the ``username_env`` variable is set; the password is read from
    ``password_env``. ``ca_file`` adds a CA bundle to trust (a relay with its own certificate).
    """

    host: str | None = None
    port: int = attrs.field(default=587, validator=[attrs.validators.ge(1), attrs.validators.le(65535)])  # a TCP port
    security: Security = "auto"
    username_env: str = "SMTP_USERNAME"
    password_env: str = "SMTP_PASSWORD"
    ca_file: str | None = None

    @property
    def tls_mode(self) -> str:
        """``security`` with ``auto`` resolved for this port."""
        if self.security != "auto":
            return self.security
        return "ssl" if self.port == 465 else "starttls"


@attrs.frozen
class ResendOptions:
    """The Resend HTTP API: the API key comes from the ``api_key_env`` variable."""

    api_key_env: str = "RESEND_API_KEY"
    base_url: str = attrs.field(default="https://api.resend.com", validator=http_url("https://api.resend.com"))


@attrs.frozen
class EmailOptions:
    """Options of the ``email`` channel (see the plugin README for the full table).

    ``transport: auto`` picks ``resend`` when the Resend key variable is set, else ``smtp`` when
    ``smtp.host`` is given, else ``simulated``. ``from_addr`` is required by the real transports.
    ``message_id_domain`` is the right-hand side of the key-derived Message-ID (default: the
    domain of ``from_addr``). ``latency`` (seconds) and ``ledger`` (a SQLite path) drive the
    simulated transport.
    """

    transport: Transport = "auto"
    from_addr: str | None = None
    message_id_domain: str | None = None
    timeout: float = attrs.field(default=10.0, validator=[finite(), attrs.validators.gt(0)])
    smtp: SmtpOptions = attrs.field(factory=SmtpOptions)
    resend: ResendOptions = attrs.field(factory=ResendOptions)
    latency: float = attrs.field(default=0.2, validator=[finite(), attrs.validators.ge(0)])
    ledger: str | None = None
