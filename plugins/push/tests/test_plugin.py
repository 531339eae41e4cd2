"""Registration, transport selection, and options errors that name the key."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from vow.channels import build_channel
from vow.errors import ConfigError
from vow.plugins import Plugins
from vow_push import PushOptions, plugin
from vow_push.apns import ApnsTransport
from vow_push.fcm import FcmTransport
from vow_push.simulated import SimulatedTransport


def test_registers_the_push_channel_with_its_options_class(push_plugins: Plugins) -> None:
    registration = push_plugins.channels.get("push")
    assert registration.options_class is PushOptions
    assert "FCM" in registration.description and "APNs" in registration.description
    assert push_plugins.info()[0].registered == {"channel": ["push"]}


def test_entry_point_points_at_the_plugin_module() -> None:
    (entry_point,) = [ep for ep in importlib.metadata.entry_points(group="vow") if ep.name == "push"]
    assert entry_point.dist.name == "vow-push"
    assert entry_point.load() is plugin


def test_auto_picks_simulated_without_credentials(push_plugins, tmp_path: Path) -> None:
    channel = build_channel("push", {"ledger": str(tmp_path / "l.sqlite")}, plugins=push_plugins)
    assert isinstance(channel, SimulatedTransport)


def test_auto_prefers_fcm_when_both_providers_are_configured(
        push_plugins, push_service_account, push_p8, monkeypatch) -> None:
    monkeypatch.setenv("APNS_AUTH_KEY", push_p8)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(push_service_account))
    assert isinstance(build_channel("push", {}, plugins=push_plugins), FcmTransport)
    apns = {"team_id": "T", "key_id": "K", "topic": "com.example.shop"}
    assert isinstance(build_channel("push", {"transport": "apns", "apns": apns}, plugins=push_plugins),
                      ApnsTransport)


def test_an_explicit_simulated_transport_ignores_credentials(push_plugins, push_service_account,
                                                             monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(push_service_account))
    channel = build_channel("push", {"transport": "simulated", "ledger": str(tmp_path / "l.sqlite")},
                            plugins=push_plugins)
    assert isinstance(channel, SimulatedTransport)


def test_fcm_without_credentials_names_both_variables(push_plugins) -> None:
    with pytest.raises(ConfigError, match=r"push transport 'fcm' .*\$FCM_ACCESS_TOKEN.*"
                       r"missing secret: set the environment variable GOOGLE_APPLICATION_CREDENTIALS"):
        build_channel("push", {"transport": "fcm"}, plugins=push_plugins)


def test_secret_variable_names_are_options(push_plugins, push_service_account, monkeypatch) -> None:
    monkeypatch.setenv("SHOP_FCM_KEY", str(push_service_account))
    channel = build_channel("push", {"transport": "fcm", "fcm": {"credentials_env": "SHOP_FCM_KEY"}},
                            plugins=push_plugins)
    assert channel.url == "https://fcm.googleapis.com/v1/projects/demo-project/messages:send"


@pytest.mark.parametrize(("content", "complaint"), [
    ("not json", "is not JSON"),
    (json.dumps({"type": "authorized_user"}), '"type" must be "service_account"'),
    (json.dumps({"type": "service_account", "client_email": "a@b"}), "lacks private_key"),
    (json.dumps({"type": "service_account", "client_email": "a@b", "private_key": "junk"}),
     "not a readable unencrypted PEM private key"),
])
def test_a_bad_service_account_file_is_a_config_error(push_plugins, tmp_path, monkeypatch, content, complaint):
    path = tmp_path / "sa.json"
    path.write_text(content)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    with pytest.raises(ConfigError, match=r"\$GOOGLE_APPLICATION_CREDENTIALS: .*" + complaint):
        build_channel("push", {}, plugins=push_plugins)


def test_an_unreadable_service_account_path_is_a_config_error(push_plugins, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "nope.json"))
    with pytest.raises(ConfigError, match="cannot read the service-account file"):
        build_channel("push", {}, plugins=push_plugins)


@pytest.mark.parametrize(("options", "complaint"), [
    ({"transport": "gcm"}, r"options\.transport: expected one of 'auto', 'fcm', 'apns', 'simulated', got text 'gcm'"),
    ({"timeout": 0}, r"options\.timeout: 'timeout' must be > 0: 0"),
    ({"latency": -1}, r"options\.latency: 'latency' must be >= 0: -1"),
    # inf passed a "> 0" check and then raised OverflowError at the first send (socket timeout, sleep)
    ({"timeout": float("inf")}, r"options\.timeout: expected a finite number of seconds, got inf"),
    ({"latency": float("inf")}, r"options\.latency: expected a finite number of seconds, got inf"),
    ({"apns": {"priority": 7}}, r"options\.apns\.priority: 'priority' must be in \(1, 5, 10\) \(got 7\)"),
    ({"timeout": "soon"}, r"options\.timeout: expected a number, got text 'soon'"),
    ({"tranport": "fcm"}, r"options\.tranport: unknown key \(allowed: transport, "),
    ({"apns": {"team": "T"}}, r"options\.apns\.team: unknown key \(allowed: team_id, "),
])
def test_bad_options_name_the_key(push_plugins, options, complaint) -> None:
    with pytest.raises(ConfigError, match=complaint):
        build_channel("push", options, plugins=push_plugins)
