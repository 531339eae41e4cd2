"""The simulated transport: Slack-style receipts, deduplicated by a shared Ledger file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

from vow.channels import Message
from vow.leaf import LeafContext
from vow.simulation import Ledger
from vow_slack.channel import build
from vow_slack.options import SlackOptions

KEY = "notify/42.slack"


def simulated(path, latency=0.005):
    return build(SlackOptions(transport="simulated", ledger=str(path), latency=latency))


def test_receipt_looks_like_slack(tmp_path):
    receipt = simulated(tmp_path / "ledger.sqlite").send(Message(to="C0123ABCD", body="hi"), LeafContext(id=KEY))
    assert receipt.transport == "simulated" and receipt.duplicate is False
    channel, ts = receipt.message_id.split(":")
    assert channel == "C0123ABCD" and re.fullmatch(r"\d{10}\.\d{6}", ts)
    assert abs(float(ts) - time.time()) < 600
    assert receipt.detail == {"channel": "C0123ABCD", "ts": ts}


def test_same_key_through_two_ledgers_on_one_file_is_delivered_once(tmp_path):
    path = tmp_path / "ledger.sqlite"
    message = Message(to="#orders", body="Order 42 shipped")
    first = simulated(path).send(message, LeafContext(id=KEY))
    again = simulated(path).send(message, LeafContext(id=KEY, attempt=2))
    assert again.duplicate is True
    assert again.message_id == first.message_id
    deliveries = Ledger(path).deliveries("slack")
    assert len(deliveries) == 1 and deliveries[0].duplicates == 1
    assert deliveries[0].payload == {
        "channel": "#orders", "text": "Order 42 shipped",
        "metadata": {"event_type": "vow_delivery", "event_payload": {"idempotency_key": KEY}},
    }


def test_other_keys_are_other_messages(tmp_path):
    channel = simulated(tmp_path / "ledger.sqlite")
    a = channel.send(Message(to="C0123ABCD", body="a"), LeafContext(id="notify/1.slack"))
    b = channel.send(Message(to="C0123ABCD", body="b"), LeafContext(id="notify/2.slack"))
    assert a.message_id != b.message_id and not b.duplicate


def test_message_without_to_echoes_the_webhook_channel(tmp_path):
    channel = simulated(tmp_path / "ledger.sqlite")
    message = Message(to="", body="hi")
    channel.validate(message)
    assert channel.send(message, LeafContext(id=KEY)).message_id.startswith("webhook:")


def test_latency_is_waited(tmp_path):
    channel = simulated(tmp_path / "ledger.sqlite", latency=0.1)
    started = time.monotonic()
    channel.send(Message(to="C0123ABCD", body="hi"), LeafContext(id=KEY))
    assert time.monotonic() - started >= 0.06  # 0.1 s give or take 30 %


def test_another_process_sees_the_delivery_as_duplicate(tmp_path):
    path = tmp_path / "ledger.sqlite"
    first = simulated(path).send(Message(to="C0123ABCD", body="hi"), LeafContext(id=KEY))
    script = (
        "import json, sys\n"
        "from vow.channels import Message\nfrom vow.leaf import LeafContext\n"
        "from vow_slack.channel import build\nfrom vow_slack.options import SlackOptions\n"
        "ch = build(SlackOptions(transport='simulated', ledger=sys.argv[1], latency=0))\n"
        "print(json.dumps(ch.send(Message(to='C0123ABCD', body='hi'), LeafContext(id=sys.argv[2])).to_dict()))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(path), KEY], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    other = json.loads(out)
    assert other["duplicate"] is True and other["message_id"] == first.message_id
    assert len(Ledger(path).deliveries("slack")) == 1
