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


def timings(action, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def show(label: str, seconds: list[float], unit: str) -> None:
    scale = {"µs": 1e6, "ms": 1e3}[unit]
    median, best = statistics.median(seconds) * scale, min(seconds) * scale
    print(f"{label:34s} median {median:8.2f} {unit}   best {best:8.2f} {unit}")


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

        show(f"{kind}: apply 1 create + 1 settle", timings(create_and_settle, 3000), "µs")
        show(f"{kind}: apply 1,000 creates", [create_1000() for _ in range(30)], "ms")
        root, batch = tree_batch()
        store.apply(batch)
        show(f"{kind}: tree of 1,000 rows", timings(lambda: store.tree(root), 200), "ms")
        show(f"{kind}: get", timings(lambda: store.get(root + ".500"), 20000), "µs")
        store.close()


if __name__ == "__main__":
    for name in sys.argv[1:] or ["sqlite", "memory"]:
        main(name)
