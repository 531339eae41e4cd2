"""The simulated transports' dedupe ledger: per channel, shared by processes, crash-proof."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from tests.support import python
from vow import Context, Vow
from vow.channels import deliver
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


def test_a_channel_built_once_delivers_where_vow_sim_dir_points_now(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Channels are built once per process and reused; one built while ``VOW_SIM_DIR`` named another
    folder went on delivering there, so a later run's deliveries were missing from its own ledger."""
    first, second = tmp_path / "first", tmp_path / "second"
    with Vow(store="memory:") as vow:
        monkeypatch.setenv("VOW_SIM_DIR", str(first))
        vow.run("a/1", _email)
        monkeypatch.setenv("VOW_SIM_DIR", str(second))
        vow.run("b/1", _email)
    assert [d.key for d in Ledger(first / "ledger.sqlite").deliveries()] == ["a/1.1"]
    assert [d.key for d in Ledger(second / "ledger.sqlite").deliveries()] == ["b/1.1"]


def _email(ctx: Context):
    return (yield ctx.run(deliver, "email", {"to": "ada@example.com", "subject": "Hi", "body": "Hello"}))


def test_a_threads_connection_to_the_ledger_is_closed_when_the_thread_ends(tmp_path: Path) -> None:
    """Pool threads end unannounced; Python 3.13 warns of a connection collected open (a
    ResourceWarning, an error under this suite's filterwarnings)."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    seen: list[sqlite3.Connection] = []

    def deliver_in_a_thread() -> None:
        ledger.deliver("k", "email", {}, lambda: {"id": "e"})
        seen.append(ledger._connect())

    thread = threading.Thread(target=deliver_in_a_thread)
    thread.start()
    thread.join()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        seen[0].execute("SELECT 1")


def test_a_dropped_ledgers_connection_is_closed(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.deliver("k", "email", {}, lambda: {"id": "e"})
    con = ledger._connect()
    del ledger
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        con.execute("SELECT 1")


def test_a_ledger_collected_in_a_reference_cycle_closes_its_connection_before_python_warns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ledger is often collected with a cycle: a provider built in a leaf that raised stays in the
    traceback's frames, and the test's ``pytest.raises`` holds the traceback. Python 3.13's sqlite3
    warns from the connection's own finalizer, which the collector may call before the holder's
    ``__del__`` that closed it: "ResourceWarning: unclosed database" (met in ``image_sim``'s
    entry-point test and in ``tests/images/test_output_folder.py``, after a test whose image leaf
    raised). Python 3.11's connection has no finalizer, so this fails on 3.13 only."""
    import gc
    import sys

    unraisable: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: unraisable.append(f"{info.exc_value!r}"))
    for _ in range(20):
        ledger = Ledger(tmp_path / "ledger.sqlite")
        ledger.get("k")  # connects
        cycle: list[object] = [ledger]
        cycle.append(cycle)
        del ledger, cycle
    gc.collect()
    assert unraisable == []
