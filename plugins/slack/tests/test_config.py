"""Message validation, options, secrets, transport choice and plugin registration."""

from __future__ import annotations

import importlib.metadata

import pytest

import vow_slack.plugin
from vow.channels import Message, build_channel
from vow.errors import ConfigError
from vow.plugins import Plugins
from vow_slack.bot import BotTransport
from vow_slack.simulated import SimulatedTransport
from vow_slack.webhook import WebhookTransport

SECRETS = ("SLACK_BOT_TOKEN", "SLACK_WEBHOOK_URL")


@pytest.fixture
def slack_build(monkeypatch, tmp_path):
    """Build ``slack`` from an options dict in a clean environment (no Slack secrets set)."""
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path))
    plugins = Plugins(entry_points=False)
    plugins.add(vow_slack.plugin, "slack")
    return lambda options=None: build_channel("slack", options, plugins=plugins)


def test_registered_as_slack_with_an_entry_point():
    plugins = Plugins(entry_points=False)
    plugins.add(vow_slack.plugin, "slack")
    assert plugins.channels.names() == ["slack"]
    assert "chat.postMessage" in plugins.channels.get("slack").description
    points = importlib.metadata.entry_points(group="vow", name="slack")
    assert [p.value for p in points] == ["vow_slack.plugin"]


def test_auto_picks_what_the_environment_has(slack_build, monkeypatch):
    assert isinstance(slack_build(), SimulatedTransport)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T/B/X")
    assert isinstance(slack_build(), WebhookTransport)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    assert isinstance(slack_build(), BotTransport)
    assert isinstance(slack_build({"transport": "simulated"}), SimulatedTransport)


@pytest.mark.parametrize("transport,variable", [("bot", "SLACK_BOT_TOKEN"), ("webhook", "SLACK_WEBHOOK_URL")])
def test_chosen_real_transport_without_secret_fails_before_sending(slack_build, transport, variable):
    with pytest.raises(ConfigError, match=f"set the environment variable {variable}"):
        slack_build({"transport": transport})


def test_secret_variable_name_is_an_option(slack_build, monkeypatch):
    with pytest.raises(ConfigError, match="ORDERS_SLACK_TOKEN"):
        slack_build({"transport": "bot", "bot_token_env": "ORDERS_SLACK_TOKEN"})
    monkeypatch.setenv("ORDERS_SLACK_TOKEN", "xoxb-2")
    assert isinstance(slack_build({"transport": "bot", "bot_token_env": "ORDERS_SLACK_TOKEN"}), BotTransport)


@pytest.mark.parametrize("options,expected", [
    ({"chanel": "C1"}, r"options\.chanel: unknown key \(allowed: transport, "),
    ({"transport": "sms"},
     r"options\.transport: expected one of 'auto', 'bot', 'webhook', 'simulated', got text 'sms'"),
    ({"timeout": "soon"}, r"options\.timeout: expected a number, got text 'soon'"),
    ({"timeout": 0}, r"options\.timeout: 'timeout' must be > 0: 0"),
    ({"latency": -1}, r"options\.latency: 'latency' must be >= 0: -1"),
    # inf passed a "> 0" check and then raised OverflowError at the first send (socket timeout, sleep)
    ({"timeout": float("inf")}, r"options\.timeout: expected a finite number of seconds, got inf"),
    ({"latency": float("inf")}, r"options\.latency: expected a finite number of seconds, got inf"),
    ({"api_url": "slack.com/api"}, r"options\.api_url: expected an http\(s\) URL"),
    # these matched the old pattern, then made every send raise httpx.InvalidURL (unclassified)
    ({"api_url": "https://slack.com:abc/api"}, r"options\.api_url: 'https://slack\.com:abc/api' is not a URL "
                                               r"\(Invalid port: 'abc'\)"),
    ({"api_url": "https://[::1/api"}, r"options\.api_url: 'https://\[::1/api' is not a URL"),
    ({"api_url": "https://slack.com:99999/api"}, r"options\.api_url: expected an http\(s\) URL"),
])
def test_bad_options_name_the_key(slack_build, options, expected):
    with pytest.raises(ConfigError, match=expected):
        slack_build(options)


@pytest.mark.parametrize("to", ["C0123ABCD", "G01ABC", "D0XYZ9", "#orders", "#team_alerts-2", "#" + "a" * 80])
def test_good_channels(slack_build, to):
    slack_build().validate(Message(to=to, body="hi"))


# "#orders\n" and "C0123ABCD\n" (a YAML block scalar, or an input ending in a line break) passed: "$" matches
# before a final line break, and the bot posted to channel "#orders\n", a name no Slack channel has.
@pytest.mark.parametrize("to", ["orders", "c0123abcd", "U0123ABCD", "#Orders", "#with space", "#",
                                "#" + "a" * 81, "ops@example.com", "+15551234567", "#orders\n", "C0123ABCD\n"])
def test_bad_channels_say_what_is_allowed(slack_build, to):
    with pytest.raises(ConfigError, match=r"slack message\.to: .* use a channel id .* or '#name'"):
        slack_build().validate(Message(to=to, body="hi"))


def test_bot_needs_a_channel_webhook_does_not(slack_build, monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T/B/X")
    with pytest.raises(ConfigError, match=r"slack message\.to: ''"):
        slack_build({"transport": "bot"}).validate(Message(to="", body="hi"))
    slack_build({"transport": "webhook"}).validate(Message(to="", body="hi"))


@pytest.mark.parametrize("message,expected", [
    (Message(to="#a", body=""), r"message\.body: empty"),
    (Message(to="#a", body="  \n "), r"message\.body: empty"),
    (Message(to="#a", body="x" * 40_001), r"40001 characters, at most 40000"),
    (Message(to="#a", body="x" * 39_990, subject="Order 42 shipped"), r"at most 40000 allowed \(subject included\)"),
    (Message(to="#a", body="hi", data={"title": "x"}),
     r"message\.data: unknown key\(s\) title \(allowed: blocks, thread_ts\)"),
    (Message(to="#a", body="hi", data={"blocks": "[]"}), r"message\.data\.blocks: must be a list"),
    (Message(to="#a", body="hi", data={"thread_ts": "yesterday"}), r"message\.data\.thread_ts: must be a message ts"),
    # passed as the channel's did, and was sent to Slack with its line break
    (Message(to="#a", body="hi", data={"thread_ts": "1700000000.000100\n"}),
     r"message\.data\.thread_ts: must be a message ts"),
])
def test_bad_text_and_data(slack_build, message, expected):
    with pytest.raises(ConfigError, match=expected):
        slack_build().validate(message)


def test_longest_text_passes(slack_build):
    slack_build().validate(Message(to="#a", body="x" * 40_000))
