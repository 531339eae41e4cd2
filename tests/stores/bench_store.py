"""Micro-benchmarks of the shipped stores: ``python tests/stores/bench_store.py [sqlite|memory]``.

Not collected by pytest. Prints the median time of the operations the engine leans on.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from vow.records import Batch, Kind, PromiseRecord, Settle, State
from vow.stores.memory import MemoryStore
from vow.stores.sqlite import SQLiteStore


def median_us(action, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main(kind: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.sqlite") if kind == "sqlite" else MemoryStore()
        now = time.time()
        counter = iter(range(10**9))

        def create_and_settle():
            n = next(counter)
            rid = f"bench/{n}"
            store.apply(Batch(creates=[PromiseRecord(rid, State.PENDING, Kind.STEP, "bench", "send", "[1]",
                                                     parent="bench", created_at=now, idempotency_key=rid)],
                              settles=[Settle(rid, State.RESOLVED, '"ok"', now)]))

        def tree_batch() -> tuple[str, Batch]:
            root = f"tree/{next(counter)}"
            return root, Batch(creates=[PromiseRecord(f"{root}.{i}" if i else root, State.PENDING, Kind.STEP, root,
                                                      "send", "[1]", parent=None if i == 0 else root,
                                                      created_at=now + i, idempotency_key=f"{root}.{i}",
                                                      tags={"channel": "email"} if i % 2 else {})
                                        for i in range(1000)])

        def create_1000() -> float:
            root, batch = tree_batch()  # records are built before the clock starts
            start = time.perf_counter()
            store.apply(batch)
            return time.perf_counter() - start

        print(f"{kind}: apply 1 create + 1 settle: {median_us(create_and_settle, 3000):8.1f} µs")
        print(f"{kind}: apply 1,000 creates:        {statistics.median(create_1000() for _ in range(30)) * 1e3:8.2f} ms")
        root, batch = tree_batch()
        store.apply(batch)
        print(f"{kind}: tree of 1,000 rows:         {median_us(lambda: store.tree(root), 200) / 1000:8.2f} ms")
        print(f"{kind}: get:                        {median_us(lambda: store.get(root + '.500'), 20000):8.1f} µs")
        store.close()


if __name__ == "__main__":
    for name in sys.argv[1:] or ["sqlite", "memory"]:
        main(name)
