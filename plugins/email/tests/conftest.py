"""Fixtures of the vow-email tests: a real aiosmtpd server on 127.0.0.1 and a self-signed certificate.

Fixture names start with ``email_`` so they cannot collide with other plugins' fixtures.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SMTP_USER = "mailer"
SMTP_PASSWORD = "s3cret-pass"


@pytest.fixture(autouse=True)
def email_clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real credentials leak in from the developer's shell: ``transport: auto`` stays predictable."""
    for name in ("RESEND_API_KEY", "SMTP_USERNAME", "SMTP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


@attrs.define
class Recorder:
    """An aiosmtpd handler that records every accepted message; replies can be forced per command."""

    messages: list[tuple[Any, EmailMessage]] = attrs.field(factory=list)
    mail_reply: str | None = None
    rcpt_reply: str | None = None
    data_reply: str | None = None
    data_replies: list[str] = attrs.field(factory=list)  # answered once each, in order, before data_reply
    quit_reply: str | None = None
    data_pause: float = 0.0  # seconds between queueing a message and answering 250 (a server scanning it)
    drop_after_data: bool = False  # queue the message, then close the connection without answering
    quit_pause: float = 0.0  # seconds before answering QUIT
    quit_abandoned: bool = False  # the client closed the connection while QUIT's answer was pending
    quit_answered: bool = False  # QUIT's answer was sent

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope):
        try:
            await asyncio.sleep(self.quit_pause)
        except asyncio.CancelledError:  # aiosmtpd cancels a handler whose client went away
            self.quit_abandoned = True
            raise
        self.quit_answered = True
        return self.quit_reply or "221 Bye"

    async def handle_DATA(self, server, session, envelope):
        if self.data_replies:
            return self.data_replies.pop(0)
        if self.data_reply:
            return self.data_reply
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        self.messages.append((envelope, parsed))
        if self.drop_after_data:
            server.transport.close()
            return "250 2.0.0 never heard"
        await asyncio.sleep(self.data_pause)
        return "250 2.0.0 Message accepted for delivery"


@attrs.frozen
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


@attrs.frozen
class SmtpServer:
    host: str
    port: int
    recorder: Recorder
    login: tuple[str, str] | None = None  # the username and password it accepts, if it wants AUTH


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def email_tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 / localhost, made at test time."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    files = TlsFiles(folder / "cert.pem", folder / "key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


def check_login(server, session, envelope, mechanism: str, auth_data: Any) -> AuthResult:
    """Accept exactly SMTP_USER / SMTP_PASSWORD."""
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
          and auth_data.password == SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@pytest.fixture
def email_smtp_factory() -> Iterator[Callable[..., SmtpServer]]:
    """Start aiosmtpd servers on 127.0.0.1 with the given SMTP options; all are stopped after the test."""
    started: list[Controller] = []

    def start(login: tuple[str, str] | None = None, **smtp_kwargs: Any) -> SmtpServer:
        recorder = Recorder()
        controller = Controller(recorder, hostname="127.0.0.1", port=free_port(), **smtp_kwargs)
        controller.start()
        started.append(controller)
        return SmtpServer("127.0.0.1", controller.port, recorder, login)

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
def email_plain_smtp(email_smtp_factory: Callable[..., SmtpServer]) -> SmtpServer:
    """A local relay: no TLS, no AUTH."""
    return email_smtp_factory()


@pytest.fixture
def email_secure_smtp(email_smtp_factory: Callable[..., SmtpServer], email_tls_files: TlsFiles) -> SmtpServer:
    """A submission server: STARTTLS required, AUTH required and only after TLS."""
    return email_smtp_factory(login=(SMTP_USER, SMTP_PASSWORD),
                              tls_context=email_tls_files.server_context(), require_starttls=True,
                              auth_required=True, auth_require_tls=True, authenticator=check_login)
