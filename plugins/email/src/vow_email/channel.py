"""The ``email`` channel: picks a transport from the options and checks messages before sending."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from vow.channels import Message, Receipt
from vow.config import secret
from vow.errors import ConfigError
from vow.http import parse_retry_after
from vow.leaf import LeafContext
from vow_email.addresses import ascii_form, check_domain, domain_of, parse_address
from vow_email.options import EmailOptions
from vow_email.resend import ResendTransport, resend_error
from vow_email.simulated import SimulatedTransport
from vow_email.smtp import SmtpTransport, error_for_reply

SIMULATED_FROM = "vow <noreply@example.com>"
_LINE_BREAK = re.compile(r"[\r\n]")


def choose_transport(options: EmailOptions) -> tuple[str, str]:
    """``(transport, why)``: what ``transport: auto`` resolves to in this environment, and why."""
    if options.transport != "auto":
        return options.transport, f"transport: {options.transport}"
    if os.environ.get(options.resend.api_key_env):
        return "resend", f"transport: auto chose resend because {options.resend.api_key_env} is set"
    if options.smtp.host:
        return "smtp", "transport: auto chose smtp because smtp.host is set"
    return "simulated", "transport: auto chose simulated (no credentials in the environment)"


class EmailChannel:
    """Sends one email to one recipient over the chosen transport."""

    def __init__(self, options: EmailOptions) -> None:
        self.options = options
        self.transport_name, why = choose_transport(options)
        if options.from_addr is None and self.transport_name != "simulated":
            raise ConfigError(f"email options.from_addr: required for transport {self.transport_name} ({why}); "
                              "give the sender, such as 'Shop <orders@shop.example>'")
        # An internationalised domain in its ASCII form, which needs no SMTPUTF8 (and which Resend takes).
        from_addr, envelope_from = ascii_form(SIMULATED_FROM if options.from_addr is None else options.from_addr,
                                              where="email options.from_addr")
        domain = check_domain(options.message_id_domain or domain_of(envelope_from),
                              where="email options.message_id_domain")
        self.transport: SmtpTransport | ResendTransport | SimulatedTransport
        if self.transport_name == "smtp":
            self.transport = SmtpTransport(options.smtp, from_addr=from_addr, envelope_from=envelope_from,
                                           message_id_domain=domain, timeout=options.timeout,
                                           credentials=_smtp_credentials(options))
        elif self.transport_name == "resend":
            api_key = secret(options.resend.api_key_env, needed_for=f"email transport resend ({why})")
            self.transport = ResendTransport(api_key=api_key, from_addr=from_addr,
                                             base_url=options.resend.base_url, timeout=options.timeout)
        else:
            self.transport = SimulatedTransport(from_addr=from_addr, message_id_domain=domain,
                                                latency=options.latency, ledger=options.ledger)

    def validate(self, message: Message) -> None:
        """Check recipient, subject and bodies; :class:`ConfigError` saying what is allowed."""
        parse_address(message.to, where="email message.to")
        if not isinstance(message.subject, str) or not message.subject.strip():
            raise ConfigError("email message.subject: required for email (one line of text)")
        if _LINE_BREAK.search(message.subject):
            raise ConfigError(f"email message.subject: must be one line; got {message.subject!r}")
        if not isinstance(message.body, str):
            raise ConfigError(f"email message.body: must be text; got {type(message.body).__name__}")
        html = message.data.get("html")
        if html is not None and not isinstance(html, str):
            raise ConfigError(f"email message.data.html: must be an HTML string; got {type(html).__name__}")

    def send(self, message: Message, ctx: LeafContext) -> Receipt:
        """Deliver ``message`` once over the transport; its errors are already classified."""
        return self.transport.send(message, ctx)

    def error_for_status(self, status: int, headers: Mapping[str, str], detail: str) -> Exception:
        """What an injected status means here: an SMTP reply code for smtp, a Resend HTTP status otherwise.

        For smtp the injected ``Retry-After`` header (``faults.retry_after``) becomes the wait of a 4xx reply.
        """
        if self.transport_name == "smtp":
            retry_after = parse_retry_after(headers.get("retry-after") or headers.get("Retry-After"))
            return error_for_reply(status, detail, "(injected)", retry_after=retry_after)
        return resend_error(status, headers, None, detail)


def _smtp_credentials(options: EmailOptions) -> tuple[str, str] | None:
    username = os.environ.get(options.smtp.username_env)
    if not username:
        return None  # a relay without AUTH
    password = secret(options.smtp.password_env,
                      needed_for=f"email transport smtp (AUTH as {options.smtp.username_env} is set)")
    return username, password


def build_email_channel(options: EmailOptions) -> EmailChannel:
    """Factory registered for the ``email`` channel."""
    return EmailChannel(options)
