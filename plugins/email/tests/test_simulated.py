"""The simulated transport: Resend-style ids from the key, realistic latency, dedupe in the shared Ledger."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

from vow.channels import Message
from vow.config import structure
from vow.leaf import LeafContext
from vow.simulation import Ledger, stable_uuid
from vow_email import EmailOptions, build_email_channel

ORDER = Message(to="ada@example.com", subject="Order 42 confirmed", body="Thanks.", data={"html": "<p>Thanks.</p>"})


def simulated(ledger, **options):
    return build_email_channel(structure(EmailOptions, {"ledger": str(ledger), "latency": 0, **options}))


def send(channel, key="notify/42.email", attempt=1):
    return channel.send(ORDER, LeafContext(id=key, attempt=attempt, idempotency_key=key))


def test_default_transport_without_credentials_is_simulated(tmp_path):
    assert simulated(tmp_path / "ledger.sqlite").transport_name == "simulated"


def test_building_the_channel_creates_no_files(tmp_path):
    simulated(tmp_path / "sim" / "ledger.sqlite")
    assert not (tmp_path / "sim").exists()


def test_message_id_is_a_uuid_derived_from_the_key(tmp_path):
    receipt = send(simulated(tmp_path / "ledger.sqlite"))
    assert receipt.message_id == stable_uuid("notify/42.email")
    assert uuid.UUID(receipt.message_id).version == 5
    assert receipt.transport == "simulated" and not receipt.duplicate


def test_second_send_with_the_same_key_is_a_duplicate_across_ledger_instances(tmp_path):
    path = tmp_path / "ledger.sqlite"
    first = send(simulated(path), attempt=1)
    again = send(simulated(path), attempt=2)  # another channel, another Ledger object, same file
    other = send(simulated(path), key="notify/43.email")

    assert again.duplicate and not first.duplicate and not other.duplicate
    assert again.message_id == first.message_id and again.attempt == 1  # the first receipt comes back
    [delivered, second] = Ledger(path).deliveries("email")
    assert (delivered.key, delivered.duplicates, second.duplicates) == ("notify/42.email", 1, 0)
    assert delivered.payload == {
        "from": "vow <noreply@example.com>", "to": "ada@example.com", "subject": "Order 42 confirmed",
        "text": "Thanks.", "html": "<p>Thanks.</p>",
        "message_id": f"<{stable_uuid('notify/42.email')}@example.com>",
    }


def test_dedupe_holds_across_processes(tmp_path):
    path = tmp_path / "ledger.sqlite"
    first = send(simulated(path))
    script = (
        "import json, sys\n"
        "from vow.channels import Message\nfrom vow.config import structure\nfrom vow.leaf import LeafContext\n"
        "from vow_email import EmailOptions, build_email_channel\n"
        "channel = build_email_channel(structure(EmailOptions, {'ledger': sys.argv[1], 'latency': 0}))\n"
        "msg = Message(to='ada@example.com', subject='Order 42 confirmed', body='Thanks.')\n"
        "receipt = channel.send(msg, LeafContext(id='notify/42.email', attempt=2))\n"
        "print(json.dumps(receipt.to_dict()))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    receipt = json.loads(out)
    assert receipt["duplicate"] is True and receipt["message_id"] == first.message_id
    assert len(Ledger(path).deliveries("email")) == 1


def test_from_addr_is_used_when_given(tmp_path):
    path = tmp_path / "ledger.sqlite"
    send(simulated(path, from_addr="Shop <orders@shop.example>"))
    [delivered] = Ledger(path).deliveries("email")
    assert delivered.payload["from"] == "Shop <orders@shop.example>"
    assert delivered.payload["message_id"].endswith("@shop.example>")


def test_latency_is_applied(tmp_path):
    channel = simulated(tmp_path / "ledger.sqlite", latency=0.1)
    started = time.monotonic()
    send(channel)
    assert time.monotonic() - started >= 0.04  # 0.1 s +/- 50 %
