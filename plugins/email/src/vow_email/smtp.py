"""The SMTP transport: one connection per send, STARTTLS or implicit TLS, optional AUTH.

SMTP has no server-side idempotency. The key travels in a key-derived ``Message-ID`` and an
``X-Idempotency-Key`` header; what guards against duplicates is explained in the README.
"""

from __future__ import annotations

import smtplib
import ssl
from typing import Any

from vow.channels import Message, Receipt
from vow.errors import ConfigError, PermanentError, TransientError
from vow.leaf import LeafContext
from vow_email.addresses import ascii_form
from vow_email.mime import build_email, message_id_for
from vow_email.options import SmtpOptions

END_OF_DATA_TIMEOUT = 600.0
"""Seconds to wait for the answer to the end of the message (RFC 5321 4.5.3.2.6; Postfix's
``smtp_data_done_timeout``). A server may queue the message and answer late (scanning it under
load); giving up sooner than it answers makes the retry deliver a second copy."""


class _Smtp(smtplib.SMTP):
    """``smtplib.SMTP`` that waits :data:`END_OF_DATA_TIMEOUT` for the answer to the end of the message."""

    data_sent = False
    """Whether the whole message went out: after that, a lost answer may hide an accepted message."""

    def send(self, s: Any) -> None:
        super().send(s)
        # smtplib sends the whole message, ending with the lone ".", in one call; only it ends so.
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n") and self.sock is not None:
            self.data_sent = True
            self.sock.settimeout(max(self.timeout, END_OF_DATA_TIMEOUT))


class _SmtpSsl(_Smtp, smtplib.SMTP_SSL):
    """:class:`_Smtp` over implicit TLS."""


class SmtpTransport:
    """Sends through an SMTP server (``smtplib``)."""

    name = "smtp"

    def __init__(self, options: SmtpOptions, *, from_addr: str, envelope_from: str, message_id_domain: str,
                 timeout: float, credentials: tuple[str, str] | None) -> None:
        if not options.host:
            raise ConfigError("email options.smtp.host: required for transport smtp (the SMTP server's hostname)")
        if credentials and options.tls_mode == "none":
            raise ConfigError(
                "email options.smtp.security: refusing to send SMTP credentials over an unencrypted "
                f"connection; use starttls or ssl, or unset {options.username_env} for a relay without AUTH"
            )
        self.options = options
        self.from_addr = from_addr
        self.envelope_from = envelope_from
        self.message_id_domain = message_id_domain
        self.timeout = timeout
        self.credentials = credentials
        self.tls_context = _tls_context(options.ca_file) if options.tls_mode != "none" else None

    def send(self, message: Message, ctx: LeafContext) -> Receipt:
        """Deliver ``message`` in one SMTP transaction; classify the server's answer."""
        key = ctx.idempotency_key
        message_id = message_id_for(key, self.message_id_domain)
        mail = build_email(message, from_addr=self.from_addr, message_id=message_id, key=key)
        to, recipient = ascii_form(message.to, where="email message.to")
        if to != message.to:  # an internationalised domain: its ASCII form, which needs no SMTPUTF8
            mail.replace_header("To", to)
        smtp: _Smtp | None = None
        try:
            smtp = self._connect()
            if self.options.tls_mode == "starttls":
                smtp.starttls(context=self.tls_context)
            if self.credentials:
                smtp.login(*self.credentials)
            try:
                smtp.send_message(mail, from_addr=self.envelope_from, to_addrs=[recipient])
            except smtplib.SMTPNotSupportedError:  # the one thing send_message finds missing: SMTPUTF8
                raise self._needs_smtputf8(recipient) from None
        except OSError as exc:  # smtplib.SMTPException, ssl.SSLError and socket errors are all OSErrors
            error = smtp_error(exc, self._where())
            answered = isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code > 0  # a 4xx took nothing
            if smtp is not None and smtp.data_sent and not answered and isinstance(error, TransientError):
                error = TransientError(f"{error}; the whole message had been sent, so the server may have "
                                       "accepted it and the retry may deliver a second copy (same Message-ID)",
                                       retry_after=error.retry_after, code=error.code)
            raise error from exc
        finally:
            if smtp is not None:
                _quit(smtp)
        return Receipt(channel="email", transport=self.name, message_id=message_id, to=message.to,
                       idempotency_key=key, attempt=ctx.attempt,
                       detail={"server": self._where(), "from": self.from_addr})

    def _needs_smtputf8(self, recipient: str) -> PermanentError:
        """The server lacks SMTPUTF8, which an address with a non-ASCII local part needs (a domain has an
        ASCII form, a local part has none): only another server, or another address, can help."""
        which = ", ".join(f"{addr!r} ({where})" for addr, where in ((self.envelope_from, "options.from_addr"),
                                                                    (recipient, "message.to")) if not addr.isascii())
        return PermanentError(f"SMTP server {self._where()} does not offer SMTPUTF8, which {which} needs: the local "
                              "part (before the @) is not ASCII; send through a server that supports SMTPUTF8, "
                              "or use an ASCII address", code="smtputf8")

    def _connect(self) -> _Smtp:
        host, port = self.options.host, self.options.port
        assert host is not None  # checked when the transport was built
        if self.options.tls_mode == "ssl":
            return _SmtpSsl(host, port, timeout=self.timeout, context=self.tls_context)
        return _Smtp(host, port, timeout=self.timeout)

    def _where(self) -> str:
        return f"{self.options.host}:{self.options.port}"


def _quit(smtp: smtplib.SMTP) -> None:
    """Say goodbye, ignoring the answer: once DATA was accepted, a failed QUIT must not turn the send into an error
    (which would be retried and deliver the message twice)."""
    try:
        if smtp.sock is not None:  # the long wait was for the end of the message only
            smtp.sock.settimeout(smtp.timeout)
        smtp.quit()
    except OSError:
        smtp.close()


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The system's trusted CAs (plus ``ca_file``), with certificate and host name checks on."""
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"email options.smtp.ca_file: cannot load {ca_file!r} as a PEM CA bundle: "
                              f"{exc}") from None
    return context


def error_for_reply(code: int, text: str | bytes, where: str = "smtp", *,
                    retry_after: float | None = None) -> Exception:
    """An SMTP reply as an error: 4xx is transient (try later), 5xx permanent; the code and text are kept.

    SMTP has no Retry-After: ``retry_after`` (seconds) comes from failure injection
    (``faults.retry_after``) and is kept on a transient error, as the HTTP channels keep theirs.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    reason = f"SMTP server {where} replied {code}: {text}".rstrip(": ")
    if 400 <= code < 500:
        return TransientError(reason, retry_after=retry_after, code=str(code))
    return PermanentError(reason, code=str(code))


def smtp_error(exc: OSError, where: str) -> Exception:
    """Classify what ``smtplib`` raised.

    Replies carry a code (sender/recipient refused, DATA rejected, AUTH failed) and are mapped
    by it. A dropped connection, timeout or refused/reset connection is transient; a certificate
    that does not verify, or a server lacking STARTTLS/AUTH, is permanent (retrying cannot fix it).
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()), (550, b"recipient refused"))
        return error_for_reply(code, text, where)
    if isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code > 0:
        return error_for_reply(exc.smtp_code, exc.smtp_error, where)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        # smtplib reports a read timeout as a disconnect; keep the cause visible in the code.
        timed_out = isinstance(exc.__context__, TimeoutError)
        return TransientError(f"SMTP server {where} disconnected: {exc}",
                              code="timeout" if timed_out else "disconnected")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentError(f"SMTP server {where}: {exc} (check options.smtp.security and the credentials)",
                              code="not_supported")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentError(f"SMTP server {where}: TLS certificate not trusted: {exc.verify_message} "
                              "(options.smtp.ca_file adds a CA to trust)", code="tls_verify")
    if isinstance(exc, smtplib.SMTPException):  # e.g. "no suitable authentication method"
        return PermanentError(f"SMTP server {where}: {exc}", code=type(exc).__name__)
    if isinstance(exc, TimeoutError):
        return TransientError(f"SMTP server {where} timed out: {exc}", code="timeout")
    # Refused, reset, unreachable, name lookup, an interrupted TLS handshake: worth another try.
    return TransientError(f"SMTP server {where}: {type(exc).__name__}: {exc}", code=type(exc).__name__)
