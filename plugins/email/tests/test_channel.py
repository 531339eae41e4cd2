"""Registration, options, transport choice and message validation of the ``email`` channel."""

from __future__ import annotations

import importlib.metadata

import pytest

import vow_email.plugin
from vow.channels import Message, build_channel, deliver
from vow.errors import ConfigError
from vow.leaf import LeafContext
from vow.plugins import Plugins
from vow.simulation import Ledger


@pytest.fixture
def plugins():
    manager = Plugins(entry_points=False)
    manager.add(vow_email.plugin, "email")
    return manager


def build(plugins, options=None, faults=None):
    return build_channel("email", options, faults, plugins=plugins)


def test_registered_under_the_entry_point_group():
    [entry] = [ep for ep in importlib.metadata.entry_points(group="vow") if ep.name == "email"]
    assert entry.value == "vow_email.plugin" and entry.load() is vow_email.plugin


def test_registration(plugins):
    [registration] = list(plugins.channels)
    assert registration.name == "email" and "Resend" in registration.description
    assert plugins.info()[0].registered == {"channel": ["email"]}


@pytest.mark.parametrize("options, where", [
    ({"transport": "carrier-pigeon"}, "options.transport"),
    ({"smtp": {"security": "tls"}}, "options.smtp.security"),
    ({"smtp": {"port": "submission"}}, "options.smtp.port"),
    ({"timeout": "soon"}, "options.timeout"),
    ({"form_addr": "a@b.example"}, "form_addr"),
    ({"resend": {"api_key": "re_123"}}, "options.resend"),
])
def test_bad_options_name_the_key(plugins, options, where):
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        build(plugins, options)


@pytest.mark.parametrize("url", ["api.example.com", "ftp://api.example.com", "https://", "http://[::1",
                                 "https://api.example.com:abc/x", "https://api.example.com:99999"])
def test_a_base_url_that_is_not_an_http_url_is_refused_when_built(plugins, url):
    """Not at the first send, where a bad port or bracket raised httpx.InvalidURL (unclassified) and a
    missing scheme a PermanentError on every delivery."""
    with pytest.raises(ConfigError, match=r"options\.resend\.base_url: .*expected an http\(s\) URL"):
        build(plugins, {"transport": "simulated", "resend": {"base_url": url}})


@pytest.mark.parametrize("options, reason", [
    ({"smtp": {"port": 0}}, r"options\.smtp\.port: 'port' must be >= 1: 0"),
    ({"smtp": {"port": 70000}}, r"options\.smtp\.port: 'port' must be <= 65535: 70000"),
    ({"timeout": 0}, r"options\.timeout: 'timeout' must be > 0: 0"),
    ({"latency": -1}, r"options\.latency: 'latency' must be >= 0: -1"),
    # inf passed a "> 0" check and then raised OverflowError at the first send (socket timeout, sleep)
    ({"timeout": float("inf")}, r"options\.timeout: expected a finite number of seconds, got inf"),
    ({"latency": float("inf")}, r"options\.latency: expected a finite number of seconds, got inf"),
])
def test_out_of_range_numbers_are_config_errors(plugins, options, reason):
    with pytest.raises(ConfigError, match=reason):
        build(plugins, options)


def test_auto_prefers_resend_when_its_key_is_set(plugins, monkeypatch):
    monkeypatch.setenv("RESEND_API_KEY", "re_123")
    channel = build(plugins, {"from_addr": "orders@shop.example", "smtp": {"host": "smtp.shop.example"}})
    assert channel.transport_name == "resend"


def test_auto_uses_smtp_when_a_host_is_given(plugins):
    assert build(plugins, {"from_addr": "orders@shop.example", "smtp": {"host": "smtp.shop.example"}}
                 ).transport_name == "smtp"


def test_auto_falls_back_to_simulated(plugins):
    assert build(plugins).transport_name == "simulated"


@pytest.mark.parametrize("transport", ["smtp", "resend"])
def test_real_transports_need_from_addr(plugins, monkeypatch, transport):
    monkeypatch.setenv("RESEND_API_KEY", "re_123")
    with pytest.raises(ConfigError, match="from_addr: required for transport " + transport):
        build(plugins, {"transport": transport, "smtp": {"host": "smtp.shop.example"}})


def test_auto_names_why_it_needs_from_addr(plugins, monkeypatch):
    monkeypatch.setenv("RESEND_API_KEY", "re_123")
    with pytest.raises(ConfigError, match="because RESEND_API_KEY is set"):
        build(plugins)


@pytest.mark.parametrize("from_addr", ["", "  ", "orders", "orders@", "a@b.example, c@d.example",
                                       "x@bad_domain.example",
                                       "x@\N{SNOWMAN}.example",  # IDNA 2003 allowed symbols; IDNA 2008 does not
                                       "x@-shop.example", "x@shop..example", "x@" + "a" * 64 + ".example"])
def test_bad_from_addr(plugins, from_addr):
    with pytest.raises(ConfigError, match="options.from_addr"):
        build(plugins, {"from_addr": from_addr})


@pytest.mark.parametrize("transport", ["smtp", "resend"])
def test_an_empty_from_addr_is_refused_not_replaced_by_the_simulated_sender(plugins, monkeypatch, transport):
    """'' is not 'unset': a real transport must not quietly send as vow <noreply@example.com>."""
    monkeypatch.setenv("RESEND_API_KEY", "re_123")
    with pytest.raises(ConfigError, match="email options.from_addr: an email address is required"):
        build(plugins, {"transport": transport, "from_addr": "", "smtp": {"host": "smtp.shop.example"}})


def test_bad_message_id_domain(plugins):
    with pytest.raises(ConfigError, match="options.message_id_domain: 'shop example'"):
        build(plugins, {"message_id_domain": "shop example"})


def test_smtp_needs_a_host(plugins):
    with pytest.raises(ConfigError, match="options.smtp.host: required"):
        build(plugins, {"transport": "smtp", "from_addr": "orders@shop.example"})


def test_smtp_username_without_password_is_a_config_error(plugins, monkeypatch):
    monkeypatch.setenv("SMTP_USERNAME", "mailer")
    with pytest.raises(ConfigError, match="SMTP_PASSWORD"):
        build(plugins, {"transport": "smtp", "from_addr": "orders@shop.example", "smtp": {"host": "localhost"}})


def test_smtp_security_auto_follows_the_port(plugins):
    def mode(port):
        return build(plugins, {"from_addr": "o@shop.example", "smtp": {"host": "h", "port": port}}
                     ).transport.options.tls_mode
    assert (mode(465), mode(587), mode(25)) == ("ssl", "starttls", "starttls")


@pytest.mark.parametrize("to", [
    "", "ada", "ada@", "@example.com", "ada@exa mple.com", "ada@example.com, bob@example.com",
    "ada@example.com\r\nBcc: eve@example.com", "ada@-example.com", "ada@example..com", "a b@example.com",
])
def test_invalid_recipients_are_rejected_before_sending(plugins, to):
    with pytest.raises(ConfigError, match="email message.to") as info:
        build(plugins).validate(Message(to=to, subject="Hi", body="x"))
    assert "ada@example.com" in str(info.value)  # says what is allowed


@pytest.mark.parametrize("to", ["ada@example.com", "Ada Lovelace <ada@example.com>", "ada+orders@mail.example.co.uk",
                                "root@localhost", "jürgen@bücher.example"])
def test_valid_recipients(plugins, to):
    build(plugins).validate(Message(to=to, subject="Hi", body="x"))


@pytest.mark.parametrize("message, where", [
    (Message(to="ada@example.com", body="x"), "message.subject: required"),
    (Message(to="ada@example.com", subject="  ", body="x"), "message.subject: required"),
    (Message(to="ada@example.com", subject="Hi\nBcc: eve@example.com", body="x"), "message.subject: must be one line"),
    (Message(to="ada@example.com", subject="Hi", body=None), "message.body"),
    (Message(to="ada@example.com", subject="Hi", body="x", data={"html": 3}), "message.data.html"),
])
def test_invalid_messages(plugins, message, where):
    with pytest.raises(ConfigError, match=where):
        build(plugins).validate(message)


def test_deliver_leaf(plugins, tmp_path):
    """The core's ``deliver`` leaf builds the channel by name (from the leaf's registry) and returns the receipt."""
    ledger = tmp_path / "ledger.sqlite"
    options = {"ledger": str(ledger), "latency": 0}
    message = {"to": "ada@example.com", "subject": "Order 42", "body": "Thanks."}

    receipt = deliver(LeafContext(id="notify/42.email", plugins=plugins), "email", message, options)
    again = deliver(LeafContext(id="notify/42.email", attempt=2, plugins=plugins), "email", message, options)

    assert receipt["transport"] == "simulated" and not receipt["duplicate"]
    assert again["duplicate"] and again["message_id"] == receipt["message_id"]
    assert len(Ledger(ledger).deliveries("email")) == 1


def test_deliver_validates_before_sending(plugins, tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    with pytest.raises(ConfigError, match="message.to"):
        deliver(LeafContext(id="notify/42.email", plugins=plugins), "email", {"to": "nobody", "subject": "Hi",
                                                                              "body": "x"},
                {"ledger": str(ledger), "latency": 0})
    assert not ledger.exists()


@pytest.mark.parametrize("from_addr", ["Shop <orders@B\N{LATIN SMALL LETTER U WITH DIAERESIS}cher.example>",
                                       "orders@fa\N{LATIN SMALL LETTER SHARP S}.example", "orders@SHOP.Example"])
def test_internationalised_and_mixed_case_domains_are_accepted(plugins, from_addr):
    build(plugins, {"from_addr": from_addr})


def test_domains_are_checked_by_the_idna_package() -> None:
    assert any(r.startswith("idna") for r in importlib.metadata.requires("vow-email") or [])
