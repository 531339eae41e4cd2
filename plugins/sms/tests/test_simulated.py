"""The simulated transport: Twilio-style receipts, and one delivery per key across ledgers and processes."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vow.channels import Message
from vow.leaf import LeafContext
from vow.simulation import Ledger
from vow_sms import SmsOptions, build_sms_channel
from vow_sms.simulated import SimulatedTransport

MESSAGE = Message(to="+14155550123", body="Order 42 is confirmed.")


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "sim" / "ledger.sqlite"


def simulated(ledger_path: Path, **options):
    return build_sms_channel(SmsOptions(transport="simulated", ledger=str(ledger_path), latency=0.01, **options))


def test_receipt_looks_like_twilio(ledger_path: Path) -> None:
    receipt = simulated(ledger_path, from_number="+15005550006").send(MESSAGE, LeafContext(id="notify/42.sms"))
    assert re.fullmatch(r"SM[0-9a-f]{32}", receipt.message_id)
    assert (receipt.channel, receipt.transport, receipt.to) == ("sms", "simulated", MESSAGE.to)
    assert (receipt.idempotency_key, receipt.attempt, receipt.duplicate) == ("notify/42.sms", 1, False)
    assert receipt.detail == {"status": "queued", "segments": 1, "encoding": "GSM-7",
                              "from": "+15005550006", "messaging_service_sid": None}


def test_same_key_is_delivered_once_across_two_ledgers_on_one_file(ledger_path: Path) -> None:
    first = simulated(ledger_path).send(MESSAGE, LeafContext(id="notify/42.sms", attempt=1))
    again = simulated(ledger_path).send(MESSAGE, LeafContext(id="notify/42.sms", attempt=2))
    assert again.duplicate is True
    assert again.message_id == first.message_id
    assert again.attempt == 1  # the first receipt comes back, not a new one
    deliveries = Ledger(ledger_path).deliveries("sms")
    assert len(deliveries) == 1
    assert (deliveries[0].key, deliveries[0].duplicates) == ("notify/42.sms", 1)
    assert deliveries[0].payload == {"to": MESSAGE.to, "body": MESSAGE.body, "from": None,
                                     "messaging_service_sid": None}


def test_different_keys_are_different_messages(ledger_path: Path) -> None:
    channel = simulated(ledger_path)
    a = channel.send(MESSAGE, LeafContext(id="notify/42.sms"))
    b = channel.send(MESSAGE, LeafContext(id="notify/43.sms"))
    assert a.message_id != b.message_id
    assert not a.duplicate and not b.duplicate
    assert len(Ledger(ledger_path).deliveries("sms")) == 2


def test_same_key_is_delivered_once_across_processes(ledger_path: Path) -> None:
    other_process = textwrap.dedent(f"""
        from vow.channels import Message
        from vow.leaf import LeafContext
        from vow_sms import SmsOptions, build_sms_channel
        channel = build_sms_channel(SmsOptions(transport="simulated", ledger={str(ledger_path)!r}, latency=0))
        print(channel.send(Message(to="+14155550123", body="hi"), LeafContext(id="notify/7.sms")).message_id)
    """)
    done = subprocess.run([sys.executable, "-c", other_process], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    mine = simulated(ledger_path).send(Message(to="+14155550123", body="hi"), LeafContext(id="notify/7.sms"))
    assert mine.duplicate is True
    assert mine.message_id == done.stdout.strip()


def test_segments_and_encoding_in_the_receipt(ledger_path: Path) -> None:
    channel = simulated(ledger_path)
    long_gsm = channel.send(Message(to=MESSAGE.to, body="x" * 161), LeafContext(id="a"))
    emoji = channel.send(Message(to=MESSAGE.to, body="Your order shipped 📦"), LeafContext(id="b"))
    assert (long_gsm.detail["encoding"], long_gsm.detail["segments"]) == ("GSM-7", 2)
    assert (emoji.detail["encoding"], emoji.detail["segments"]) == ("UCS-2", 1)


def test_default_latency_is_realistic_and_the_ledger_is_the_shared_default(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "shared"))
    transport = build_sms_channel(SmsOptions(transport="simulated")).transport
    assert isinstance(transport, SimulatedTransport)
    assert transport.latency == 0.15
    assert transport.ledger.path == tmp_path / "shared" / "ledger.sqlite"
