"""The SMTP transport against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import socket
import uuid

import pytest

from vow.channels import Message
from vow.config import structure
from vow.errors import ConfigError, PermanentError, TransientError
from vow.faults import Faults, with_faults
from vow.leaf import LeafContext
from vow.simulation import stable_uuid
from vow.testing import wait_until
from vow_email import EmailOptions, build_email_channel

ORDER = Message(to="Ada Lovelace <ada@example.com>", subject="Order 42 confirmed",
                body="Thanks for your order.", data={"html": "<p>Thanks for your <b>order</b>.</p>"})


def channel_for(server, **extra):
    smtp = {"host": server.host, "port": server.port, "security": "none", **extra.pop("smtp", {})}
    options = {"transport": "smtp", "from_addr": "Shop <orders@shop.example>", "timeout": 5, "smtp": smtp, **extra}
    return build_email_channel(structure(EmailOptions, options))


def send(channel, key="notify/42.email", attempt=1, message=ORDER):
    channel.validate(message)
    return channel.send(message, LeafContext(id="notify/42.email", attempt=attempt, idempotency_key=key))


def test_plain_relay_receives_one_message_with_the_key_derived_message_id(email_plain_smtp):
    receipt = send(channel_for(email_plain_smtp))

    [(envelope, mail)] = email_plain_smtp.recorder.messages
    assert envelope.mail_from == "orders@shop.example"
    assert envelope.rcpt_tos == ["ada@example.com"]
    expected_id = f"<{stable_uuid('notify/42.email')}@shop.example>"
    assert mail["Message-ID"] == expected_id
    assert mail["X-Idempotency-Key"] == "notify/42.email"
    assert mail["From"] == "Shop <orders@shop.example>"
    assert mail["To"] == "Ada Lovelace <ada@example.com>"
    assert mail["Subject"] == "Order 42 confirmed"
    assert mail["Date"] is not None
    assert mail.get_body(("plain",)).get_content().strip() == "Thanks for your order."
    assert "<b>order</b>" in mail.get_body(("html",)).get_content()
    assert (receipt.transport, receipt.message_id, receipt.attempt) == ("smtp", expected_id, 1)
    assert receipt.idempotency_key == "notify/42.email" and not receipt.duplicate


def test_text_only_message_has_no_html_part(email_plain_smtp):
    send(channel_for(email_plain_smtp), message=Message(to="ada@example.com", subject="Hi", body="plain"))
    [(_, mail)] = email_plain_smtp.recorder.messages
    assert not mail.is_multipart() and mail.get_content_type() == "text/plain"


def test_two_attempts_of_one_key_carry_the_same_message_id(email_plain_smtp):
    """SMTP itself does not dedupe: both attempts arrive, and a receiver can tell they are one message."""
    channel = channel_for(email_plain_smtp)
    first, second = send(channel, attempt=1), send(channel, attempt=2)
    other = send(channel, key="notify/43.email")

    ids = [mail["Message-ID"] for _, mail in email_plain_smtp.recorder.messages]
    assert ids[0] == ids[1] == first.message_id == second.message_id
    assert ids[2] != ids[0] and other.message_id == ids[2]
    assert uuid.UUID(ids[0][1:].split("@")[0]).version == 5


def test_a_key_with_a_line_break_is_written_as_its_digest(email_plain_smtp):
    """A promise id may hold a line break, which no header value can: building the message raised an
    unclassified ValueError on every attempt. The header holds the key's stable digest instead."""
    key = "notify/42\nemail"
    channel = channel_for(email_plain_smtp)
    first, retry = send(channel, key=key), send(channel, key=key, attempt=2)
    # (folded onto its own line: Python's parser keeps the fold's space, unfolding per RFC 5322 drops it)
    headers = [mail["X-Idempotency-Key"].strip() for _, mail in email_plain_smtp.recorder.messages]
    assert headers == ["vow-sha256-" + hashlib.sha256(key.encode()).hexdigest()] * 2
    assert first.idempotency_key == retry.idempotency_key == key
    assert first.message_id == retry.message_id == f"<{stable_uuid(key)}@shop.example>"


def test_message_id_domain_option(email_plain_smtp):
    send(channel_for(email_plain_smtp, message_id_domain="mail.shop.example"))
    [(_, mail)] = email_plain_smtp.recorder.messages
    assert mail["Message-ID"].endswith("@mail.shop.example>")


def test_starttls_and_auth(email_secure_smtp, email_tls_files, monkeypatch):
    user, password = email_secure_smtp.login
    monkeypatch.setenv("SMTP_USERNAME", user)
    monkeypatch.setenv("SMTP_PASSWORD", password)
    channel = channel_for(email_secure_smtp, smtp={"security": "starttls", "ca_file": str(email_tls_files.cert)})

    receipt = send(channel)

    [(envelope, mail)] = email_secure_smtp.recorder.messages
    assert envelope.rcpt_tos == ["ada@example.com"]
    assert mail["Message-ID"] == receipt.message_id


def test_auth_with_custom_variable_names(email_secure_smtp, email_tls_files, monkeypatch):
    user, password = email_secure_smtp.login
    monkeypatch.setenv("SHOP_SMTP_USER", user)
    monkeypatch.setenv("SHOP_SMTP_PASS", password)
    channel = channel_for(email_secure_smtp, smtp={"security": "starttls", "ca_file": str(email_tls_files.cert),
                                                   "username_env": "SHOP_SMTP_USER",
                                                   "password_env": "SHOP_SMTP_PASS"})
    send(channel)
    assert len(email_secure_smtp.recorder.messages) == 1


def test_wrong_password_is_permanent_535(email_secure_smtp, email_tls_files, monkeypatch):
    monkeypatch.setenv("SMTP_USERNAME", email_secure_smtp.login[0])
    monkeypatch.setenv("SMTP_PASSWORD", "wrong")
    channel = channel_for(email_secure_smtp, smtp={"security": "starttls", "ca_file": str(email_tls_files.cert)})
    with pytest.raises(PermanentError) as info:
        send(channel)
    assert info.value.code == "535"
    assert email_secure_smtp.recorder.messages == []


def test_no_credentials_where_auth_is_required_is_permanent(email_secure_smtp, email_tls_files):
    channel = channel_for(email_secure_smtp, smtp={"security": "starttls", "ca_file": str(email_tls_files.cert)})
    with pytest.raises(PermanentError) as info:
        send(channel)
    assert info.value.code == "530"  # aiosmtpd: authentication required


def test_untrusted_certificate_is_permanent(email_secure_smtp):
    channel = channel_for(email_secure_smtp, smtp={"security": "starttls"})
    with pytest.raises(PermanentError, match="ca_file") as info:
        send(channel)
    assert info.value.code == "tls_verify"


def test_server_without_starttls_is_permanent(email_plain_smtp):
    with pytest.raises(PermanentError, match="security") as info:
        send(channel_for(email_plain_smtp, smtp={"security": "starttls"}))
    assert info.value.code == "not_supported"


def test_implicit_tls(email_smtp_factory, email_tls_files):
    server = email_smtp_factory(ssl_context=email_tls_files.server_context())
    send(channel_for(server, smtp={"security": "ssl", "ca_file": str(email_tls_files.cert)}))
    assert len(server.recorder.messages) == 1


def test_an_internationalised_domain_is_sent_in_ascii_to_a_server_without_smtputf8(email_smtp_factory):
    """The README accepts ``Bücher.example``: it must reach a server that does not offer SMTPUTF8 (most relays)."""
    server = email_smtp_factory(enable_SMTPUTF8=False)
    receipt = send(channel_for(server), message=Message(to="Jürgen Bücher <ada@Bücher.example>", subject="Hi",
                                                        body="plain"))
    [(envelope, mail)] = server.recorder.messages
    assert envelope.rcpt_tos == ["ada@xn--bcher-kva.example"]
    assert mail["To"] == "Jürgen Bücher <ada@xn--bcher-kva.example>"
    assert receipt.to == "Jürgen Bücher <ada@Bücher.example>"  # the receipt names the address as given


def test_a_sender_with_an_internationalised_domain_is_sent_in_ascii_to_a_server_without_smtputf8(
        email_smtp_factory):
    """``from_addr`` accepts ``orders@Bücher.example`` as ``to`` does: its domain goes in ASCII too (envelope,
    ``From`` and the ``Message-ID`` made from it), where the Unicode form needs SMTPUTF8."""
    server = email_smtp_factory(enable_SMTPUTF8=False)
    receipt = send(channel_for(server, from_addr="Bücher Shop <orders@Bücher.example>"),
                   message=Message(to="ada@example.com", subject="Hi", body="plain"))
    [(envelope, mail)] = server.recorder.messages
    assert envelope.mail_from == "orders@xn--bcher-kva.example"
    assert mail["From"] == "Bücher Shop <orders@xn--bcher-kva.example>"
    assert mail["Message-ID"] == receipt.message_id == f"<{stable_uuid('notify/42.email')}@xn--bcher-kva.example>"


def test_a_message_id_domain_given_in_unicode_is_written_in_ascii(email_plain_smtp):
    send(channel_for(email_plain_smtp, message_id_domain="Bücher.example"))
    [(_, mail)] = email_plain_smtp.recorder.messages
    assert mail["Message-ID"].endswith("@xn--bcher-kva.example>")


def test_a_non_ascii_local_part_needs_smtputf8_and_the_error_says_so(email_smtp_factory):
    """No ASCII form exists for ``jörg@``: a server without SMTPUTF8 cannot take it, and no setting of ours helps."""
    server = email_smtp_factory(enable_SMTPUTF8=False)
    with pytest.raises(PermanentError) as info:
        send(channel_for(server), message=Message(to="Jörg <jörg@example.com>", subject="Hi", body="plain"))
    reason = str(info.value)
    assert info.value.code == "smtputf8"
    assert "SMTPUTF8" in reason and "'jörg@example.com'" in reason and "message.to" in reason
    assert "ASCII address" in reason and "options.smtp.security" not in reason
    assert server.recorder.messages == []


def test_a_non_ascii_local_part_reaches_a_server_with_smtputf8(email_smtp_factory):
    server = email_smtp_factory(enable_SMTPUTF8=True)
    send(channel_for(server), message=Message(to="Jörg <jörg@example.com>", subject="Hi", body="plain"))
    [(envelope, mail)] = server.recorder.messages
    assert envelope.rcpt_tos == ["jörg@example.com"] and "SMTPUTF8" in envelope.mail_options
    assert mail["To"] == "Jörg <jörg@example.com>"


def test_credentials_are_never_sent_in_clear(email_plain_smtp, monkeypatch):
    monkeypatch.setenv("SMTP_USERNAME", "mailer")
    monkeypatch.setenv("SMTP_PASSWORD", "pw")
    with pytest.raises(ConfigError, match="unencrypted"):
        channel_for(email_plain_smtp)


@pytest.mark.parametrize("command, reply, error, code", [
    ("data_reply", "451 4.3.0 Mail server temporarily rejected message", TransientError, "451"),
    ("rcpt_reply", "450 4.2.1 Mailbox busy", TransientError, "450"),
    ("rcpt_reply", "550 5.1.1 Mailbox unavailable", PermanentError, "550"),
    ("mail_reply", "553 5.7.1 Sender address rejected", PermanentError, "553"),
    ("data_reply", "554 5.7.1 Message rejected as spam", PermanentError, "554"),
])
def test_server_replies_are_classified_by_code(email_plain_smtp, command, reply, error, code):
    setattr(email_plain_smtp.recorder, command, reply)
    with pytest.raises(error) as info:
        send(channel_for(email_plain_smtp))
    assert type(info.value) is error
    assert info.value.code == code
    assert reply.split(" ", 1)[1] in str(info.value)  # the server's own text is kept
    assert email_plain_smtp.recorder.messages == []


def test_odd_quit_reply_after_accepted_data_is_still_a_success(email_plain_smtp):
    """Turning it into an error would retry, and deliver the message a second time."""
    email_plain_smtp.recorder.quit_reply = "421 4.3.2 Shutting down"
    receipt = send(channel_for(email_plain_smtp))
    assert receipt.transport == "smtp" and len(email_plain_smtp.recorder.messages) == 1


def test_a_late_answer_to_the_end_of_the_message_is_awaited_not_retried_into_a_second_copy(email_plain_smtp):
    """The server queued the message and answers after ``timeout``: giving up then would send it twice."""
    email_plain_smtp.recorder.data_pause = 1.0
    receipt = send(channel_for(email_plain_smtp, timeout=0.2))
    assert receipt.transport == "smtp" and len(email_plain_smtp.recorder.messages) == 1


def test_quit_is_not_awaited_as_long_as_the_end_of_the_message(email_plain_smtp):
    """Only the end of the message earns the long wait: a server slow to say goodbye gets ``timeout``."""
    email_plain_smtp.recorder.quit_pause = 30.0  # longer than the test: a client still waiting is seen waiting
    send(channel_for(email_plain_smtp, timeout=0.2))
    assert not email_plain_smtp.recorder.quit_answered, "the client waited for QUIT's answer past options.timeout"
    wait_until(lambda: email_plain_smtp.recorder.quit_abandoned, message="the client to close the connection")
    assert len(email_plain_smtp.recorder.messages) == 1


def test_no_answer_to_the_end_of_the_message_says_a_retry_may_send_a_second_copy(email_plain_smtp):
    email_plain_smtp.recorder.drop_after_data = True
    with pytest.raises(TransientError) as info:
        send(channel_for(email_plain_smtp))
    assert "may have accepted it" in str(info.value) and info.value.code == "disconnected"
    assert len(email_plain_smtp.recorder.messages) == 1


def test_a_4xx_answer_to_the_end_of_the_message_is_plainly_transient(email_plain_smtp):
    """The server answered: it did not take the message, so the retry is no second copy."""
    email_plain_smtp.recorder.data_reply = "451 4.3.0 Try again later"
    with pytest.raises(TransientError) as info:
        send(channel_for(email_plain_smtp))
    assert info.value.code == "451" and "may have accepted" not in str(info.value)


def test_a_connection_dropped_before_the_message_was_sent_is_plainly_transient(email_plain_smtp):
    email_plain_smtp.recorder.rcpt_reply = "421 4.3.2 Service shutting down, closing channel"
    with pytest.raises(TransientError) as info:
        send(channel_for(email_plain_smtp))
    assert info.value.code == "421" and "may have accepted" not in str(info.value)
    assert email_plain_smtp.recorder.messages == []


def test_unreadable_ca_file_is_a_config_error(email_plain_smtp, tmp_path):
    with pytest.raises(ConfigError, match="options.smtp.ca_file"):
        channel_for(email_plain_smtp, smtp={"security": "starttls", "ca_file": str(tmp_path / "missing.pem")})


def test_connection_refused_is_transient():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    channel = build_email_channel(structure(EmailOptions, {
        "transport": "smtp", "from_addr": "orders@shop.example",
        "smtp": {"host": "127.0.0.1", "port": port, "security": "none"}}))
    with pytest.raises(TransientError) as info:
        send(channel)
    assert info.value.code == "ConnectionRefusedError"


def test_silent_server_times_out_as_transient():
    with socket.socket() as listener:  # accepts connections (backlog) but never greets
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        channel = build_email_channel(structure(EmailOptions, {
            "transport": "smtp", "from_addr": "orders@shop.example", "timeout": 0.3,
            "smtp": {"host": "127.0.0.1", "port": listener.getsockname()[1], "security": "none"}}))
        with pytest.raises(TransientError) as info:
            send(channel)
    assert info.value.code == "timeout"


@pytest.mark.parametrize("status, error", [(421, TransientError), (451, TransientError), (550, PermanentError)])
def test_injected_status_is_read_as_an_smtp_reply(email_plain_smtp, status, error):
    channel = with_faults(channel_for(email_plain_smtp), Faults(fail_attempts=[1], status=status))
    with pytest.raises(error) as info:
        send(channel, attempt=1)
    assert info.value.code == str(status)
    send(channel, attempt=2)
    assert len(email_plain_smtp.recorder.messages) == 1


@pytest.mark.parametrize("faults", [Faults(fail_attempts=[1], status=451, retry_after=0.2),
                                    {"fail_attempts": [1], "status": 421, "retry_after": 0.2}])
def test_injected_transient_reply_keeps_retry_after(email_plain_smtp, faults):
    channel = with_faults(channel_for(email_plain_smtp), faults)
    with pytest.raises(TransientError) as info:
        send(channel, attempt=1)
    assert info.value.retry_after == 0.2
    assert not email_plain_smtp.recorder.messages  # the injected reply stood in for the server's
    send(channel, attempt=2)
    assert len(email_plain_smtp.recorder.messages) == 1


def test_injected_permanent_reply_is_permanent_whatever_retry_after_says(email_plain_smtp):
    channel = with_faults(channel_for(email_plain_smtp), Faults(fail_attempts=[1], status=550, retry_after=0.2))
    with pytest.raises(PermanentError) as info:
        send(channel, attempt=1)
    assert info.value.code == "550"
    assert not email_plain_smtp.recorder.messages
