"""The sink the durability tests count at (the simulated transports' Ledger) is itself sound.

Each channel's simulated transport opens its own :class:`~vow.simulation.Ledger` on the shared
file, so the first fan-out of a run has several channels creating the file at the same moment.
"""

from __future__ import annotations

import collections
import threading
from pathlib import Path

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
