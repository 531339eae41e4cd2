"""The simulated transport: ledger dedupe across processes' worth of Ledger objects, ids, latency."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vow.channels import Message, build_channel
from vow.errors import ConfigError, PermanentError, TransientError
from vow.faults import Faults, with_faults
from vow.leaf import LeafContext
from vow.simulation import Ledger
from vow_push.simulated import SimulatedTransport

APNS_DEVICE = "ab" * 32
FCM_DEVICE = "fGx7Qw3nRk2:APA91bH" + "x" * 140


def simulated(plugins, ledger: Path, **options) -> SimulatedTransport:
    channel = build_channel("push", {"ledger": str(ledger), "latency": 0, **options}, plugins=plugins)
    assert isinstance(channel, SimulatedTransport)  # "auto" without credentials
    return channel


def test_a_second_send_with_the_same_key_is_a_duplicate_even_through_another_ledger(
        push_plugins, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite"
    message = Message(to=APNS_DEVICE, body="Your order #42 is confirmed", subject="Order confirmed",
                      data={"order_id": 42})
    first = simulated(push_plugins, ledger).send(message, LeafContext(id="notify/42.push", attempt=1))
    again = simulated(push_plugins, ledger).send(message, LeafContext(id="notify/42.push", attempt=2))
    assert first.duplicate is False and again.duplicate is True
    assert again.message_id == first.message_id and again.attempt == 1  # the first receipt, returned again
    (delivery,) = Ledger(ledger).deliveries("push")
    assert delivery.duplicates == 1
    assert delivery.payload == {"to": APNS_DEVICE, "title": "Order confirmed",
                                "body": "Your order #42 is confirmed", "data": {"order_id": 42}}


def test_message_names_look_like_fcm_and_derive_from_the_key(push_plugins, tmp_path: Path) -> None:
    channel = simulated(push_plugins, tmp_path / "ledger.sqlite", fcm={"project_id": "shop-app"})
    one = channel.send(Message(to=FCM_DEVICE, body="a"), LeafContext(id="notify/1.push"))
    two = channel.send(Message(to=FCM_DEVICE, body="a"), LeafContext(id="notify/2.push"))
    assert one.message_id.startswith("projects/shop-app/messages/0:")
    assert one.message_id != two.message_id
    again = simulated(push_plugins, tmp_path / "other.sqlite", fcm={"project_id": "shop-app"}).send(
        Message(to=FCM_DEVICE, body="a"), LeafContext(id="notify/1.push"))
    assert again.message_id == one.message_id  # same key, same id, even in a fresh ledger
    assert one.transport == "simulated" and one.channel == "push"


def test_latency_is_realistic_and_configurable(push_plugins, tmp_path: Path) -> None:
    channel = simulated(push_plugins, tmp_path / "ledger.sqlite", latency=0.08)
    started = time.monotonic()
    channel.send(Message(to=APNS_DEVICE, body="hi"), LeafContext(id="notify/9.push"))
    assert time.monotonic() - started >= 0.05  # 0.08 s +-25 %
    default = build_channel("push", {"ledger": str(tmp_path / "l.sqlite")}, plugins=push_plugins)
    assert default.mean_latency == 0.12  # push is the fastest channel of the seed scenario


def test_both_token_kinds_are_accepted_and_junk_is_not(push_plugins, tmp_path: Path) -> None:
    channel = simulated(push_plugins, tmp_path / "ledger.sqlite")
    channel.validate(Message(to=APNS_DEVICE, body="hi"))
    channel.validate(Message(to=FCM_DEVICE, body="hi"))
    with pytest.raises(ConfigError, match=r"'customer@example\.com' is not a device token: an APNs device token"):
        channel.validate(Message(to="customer@example.com", body="hi"))


def test_injected_statuses_map_like_fcm(push_plugins, tmp_path: Path) -> None:
    channel = simulated(push_plugins, tmp_path / "ledger.sqlite")
    message = Message(to=APNS_DEVICE, body="hi")
    with pytest.raises(TransientError) as caught:
        with_faults(channel, Faults(fail_attempts=[1], status=503, retry_after=0.5)).send(
            message, LeafContext(id="k", attempt=1))
    assert caught.value.retry_after == 0.5
    with pytest.raises(PermanentError) as caught:
        with_faults(channel, Faults(fail_attempts=[1], status=404, message="UNREGISTERED")).send(
            message, LeafContext(id="k", attempt=1))
    assert caught.value.code == "UNREGISTERED"
    assert Ledger(tmp_path / "ledger.sqlite").deliveries("push") == []  # nothing was delivered


SEND_IN_A_PROCESS = """
import json, sys
from vow.channels import Message
from vow.leaf import LeafContext
from vow.simulation import Ledger
from vow_push.simulated import SimulatedTransport
channel = SimulatedTransport(Ledger(sys.argv[1]), mean_latency=0.01)
receipt = channel.send(Message(to="ab" * 32, body="hi"), LeafContext(id="notify/7.push", attempt=int(sys.argv[2])))
print(json.dumps(receipt.to_dict()))
"""


def test_two_processes_sending_the_same_key_push_once(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", SEND_IN_A_PROCESS, str(ledger), str(attempt)],
                              stdout=subprocess.PIPE, text=True) for attempt in (1, 2)]
    receipts = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(r["duplicate"] for r in receipts) == [False, True]
    assert receipts[0]["message_id"] == receipts[1]["message_id"]
    assert [(d.key, d.duplicates) for d in Ledger(ledger).deliveries("push")] == [("notify/7.push", 1)]
