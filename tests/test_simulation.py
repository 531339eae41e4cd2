"""The simulated transports' dedupe ledger: per channel, shared by processes, crash-proof."""

from __future__ import annotations

from pathlib import Path

from tests.support import python
from vow.simulation import Ledger, stable_uuid


def test_the_same_key_on_two_channels_is_two_deliveries(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    assert ledger.deliver("k", "email", {}, lambda: {"id": "e"}) == ({"id": "e"}, False)
    assert ledger.deliver("k", "sms", {}, lambda: {"id": "s"}) == ({"id": "s"}, False)
    assert ledger.deliver("k", "sms", {}, lambda: {"id": "again"}) == ({"id": "s"}, True)
    assert ledger.get("k", "sms").duplicates == 1
    assert ledger.get("k", "email").duplicates == 0


def test_a_delivery_made_by_another_process_is_a_duplicate_here(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    code = (f"from vow.simulation import Ledger; "
            f"Ledger({str(path)!r}).deliver('order/1.push', 'push', {{'n': 1}}, lambda: {{'id': 'p1'}})")
    assert python("-c", code).returncode == 0
    receipt, duplicate = Ledger(path).deliver("order/1.push", "push", {"n": 1}, lambda: {"id": "p2"})
    assert (receipt, duplicate) == ({"id": "p1"}, True)


def test_stable_ids_come_from_the_key() -> None:
    assert stable_uuid("order/1.email") == stable_uuid("order/1.email") != stable_uuid("order/2.email")
