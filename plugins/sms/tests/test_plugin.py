"""Registration through vow's plugin manager, and options checked with the key that is wrong."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from vow.channels import Message, build_channel
from vow.errors import ConfigError
from vow.leaf import LeafContext
from vow.plugins import Plugins
from vow.simulation import Ledger
from vow_sms import SmsChannel, SmsOptions, plugin


@pytest.fixture
def sms_plugins() -> Plugins:
    plugins = Plugins(entry_points=False)
    plugins.add(plugin, "sms")
    return plugins


def test_registers_the_sms_channel_with_its_options_class(sms_plugins: Plugins) -> None:
    registration = sms_plugins.channels.get("sms")
    assert registration.options_class is SmsOptions
    assert "Twilio" in registration.description
    assert sms_plugins.info()[0].registered == {"channel": ["sms"]}


def test_entry_point_points_at_the_plugin_module() -> None:
    (entry_point,) = [ep for ep in importlib.metadata.entry_points(group="vow") if ep.name == "sms"]
    assert entry_point.dist.name == "vow-sms"
    assert entry_point.load() is plugin


def test_build_channel_from_an_options_dict_and_send(sms_plugins: Plugins, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite"
    channel = build_channel("sms", {"transport": "simulated", "ledger": str(ledger), "latency": 0},
                            plugins=sms_plugins)
    assert isinstance(channel, SmsChannel)
    channel.send(Message(to="+14155550123", body="hi"), LeafContext(id="notify/1.sms"))
    assert Ledger(ledger).get("notify/1.sms").channel == "sms"


def test_an_unknown_option_names_the_key_and_what_is_allowed(sms_plugins: Plugins) -> None:
    with pytest.raises(ConfigError, match=r"options\.form_number: unknown key \(allowed: transport, from_number"):
        build_channel("sms", {"transport": "simulated", "form_number": "+14155550123"}, plugins=sms_plugins)


def test_a_badly_typed_option_names_the_key(sms_plugins: Plugins) -> None:
    with pytest.raises(ConfigError, match=r"options\.timeout: expected a number, got text 'soon'"):
        build_channel("sms", {"timeout": "soon"}, plugins=sms_plugins)


@pytest.mark.parametrize("options, message", [
    ({"transport": "twillio"}, "transport: expected one of 'auto', 'twilio', 'simulated', got text 'twillio'"),
    ({"from_number": "4155550123"}, "from_number: '4155550123' is not a phone number in E.164"),
    ({"messaging_service_sid": "MG123"}, "messaging_service_sid: 'messaging_service_sid' must match regex"),
    ({"status_callback": "/sms/status"}, "status_callback: expected an http(s) URL"),
    # these matched the old pattern, then made every send raise httpx.InvalidURL (unclassified)
    ({"status_callback": "https://hooks.example.com:abc/sms"}, "status_callback: 'https://hooks.example.com:abc/sms' "
                                                               "is not a URL (Invalid port: 'abc')"),
    ({"status_callback": "http://[::1/sms"}, "status_callback: 'http://[::1/sms' is not a URL"),
    ({"status_callback": "https://hooks.example.com:99999/sms"}, "status_callback: expected an http(s) URL"),
    ({"auth_token_env": "my token"}, "auth_token_env: 'auth_token_env' must match regex"),
    ({"timeout": 0}, "timeout: 'timeout' must be > 0: 0"),
    ({"latency": -1}, "latency: 'latency' must be >= 0: -1"),
    # inf passed a "> 0" check and then raised OverflowError at the first send (socket timeout, sleep)
    ({"timeout": float("inf")}, "timeout: expected a finite number of seconds, got inf"),
    ({"latency": float("inf")}, "latency: expected a finite number of seconds, got inf"),
])
def test_invalid_option_values_say_what_is_allowed(sms_plugins: Plugins, options: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_channel("sms", options, plugins=sms_plugins)
    assert str(err.value).startswith("channel 'sms' options.")
    assert message in str(err.value)
