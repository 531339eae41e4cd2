"""The sink the durability tests count at (the simulated transports' Ledger) is itself sound.

Each channel's simulated transport opens its own :class:`~vow.simulation.Ledger` on the shared
file, so the first fan-out of a run has several channels creating the file at the same moment.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import mounted_tmpfs
from vow.errors import TransientError
from vow.simulation import Ledger

FRESH_FILES = 200
CHANNELS = 8


def test_channels_delivering_at_once_into_a_fresh_ledger_never_see_database_is_locked(tmp_path: Path) -> None:
    errors: collections.Counter[str] = collections.Counter()
    for n in range(FRESH_FILES):  # a race at first use: try it on many fresh files
        path = tmp_path / f"ledger-{n}.sqlite"
        ledgers = [Ledger(path) for _ in range(CHANNELS)]  # one per channel, as the transports do
        start = threading.Barrier(CHANNELS)

        def send(i: int) -> None:
            start.wait()  # noqa: B023 - each thread runs within this iteration
            try:
                ledgers[i].deliver(f"order/{n}.c{i}", f"c{i}", {"body": "hi"},  # noqa: B023
                                   lambda: {"message_id": str(i)})
            except Exception as exc:  # noqa: BLE001 - counted and reported below
                errors[f"{type(exc).__name__}: {exc}"] += 1

        threads = [threading.Thread(target=send, args=(i,)) for i in range(CHANNELS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors, f"deliveries failed on {sum(errors.values())} of {FRESH_FILES * CHANNELS} sends: {dict(errors)}"



@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: room for a ledger, until another program fills it."""
    yield from mounted_tmpfs(tmp_path / "disk", "size=256k")


def test_a_delivery_the_full_disk_refuses_is_a_transient_error_naming_the_ledger_and_not_recorded(
        disk: Path) -> None:
    # Before: SQLite ended the transaction at SQLITE_FULL itself, and the ROLLBACK after it raised
    # "cannot rollback - no transaction is active" in place of the full disk.
    ledger = Ledger(disk / "ledger.sqlite")
    ledger.deliver("order/1.email", "email", {"body": "hi"}, lambda: {"message_id": "1"})
    with open(disk / "filler", "wb", buffering=0) as filler:  # another program takes the rest of the disk
        with contextlib.suppress(OSError):
            while True:
                filler.write(b"x" * 4096)
    with pytest.raises(TransientError, match=rf"could not use the simulation's ledger {disk}/ledger.sqlite: "
                                             r"database or disk is full") as caught:
        for n in range(2, 100):  # until its pages and its write-ahead log have no room left
            ledger.deliver(f"order/{n}.email", "email", {"body": "x" * 20_000}, lambda: {"id": "y" * 20_000})
    assert caught.value.code == "SQLITE_FULL"
    (disk / "filler").unlink()
    delivered = [d.key for d in ledger.deliveries()]
    assert f"order/{n}.email" not in delivered and len(delivered) == n - 1
    ledger.close()
