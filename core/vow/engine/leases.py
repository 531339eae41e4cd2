"""The lease keeper: who this engine is to the store, and keeping its leases alive.

The owner id is made fresh for every engine (a forked child gets a new engine, so a new id:
leases and fencing tokens tell parent and child apart). Before its first claim the owner shows
the store it is alive (:meth:`~vow.stores.base.Store.hold_owner`), so when this process dies
its leases are taken over at once rather than when they expire.

A store whose showing of an owner can end while the process lives (a PostgreSQL server restart
ends the session holding the owner's lock: :class:`~vow.stores.base.CheckedOwnersStore`) is
asked every renewal interval to make sure, from the moment the owner is first shown alive,
leases held or not: an idle owner reads alive again within that interval, not only once it
renews a lease.

Renewal runs on its own thread with its own store connection, on the monotonic clock, so a
workflow body that keeps the engine thread busy does not let the leases lapse. It cannot help
against code that holds the GIL without a break for longer than the lease (a long call into a C
extension): no Python thread runs then. A renewal that comes late is logged as a warning, and the
fencing token still guarantees that a worker that lost its lease writes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from vow.records import Lease
from vow.stores.base import CheckedOwnersStore, Store

__all__ = ["LeaseKeeper"]

_log = logging.getLogger("vow.engine")


class LeaseKeeper:
    """Claims, renews and releases the leases of one engine's owner."""

    def __init__(self, store: Store, owner: str, ttl: float, *, max_recoveries: int | None,
                 on_lost: Callable[[list[str]], None]) -> None:
        self.store = store
        self.owner = owner
        self.ttl = ttl
        self.max_recoveries = max_recoveries
        self._on_lost = on_lost
        self._held: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._alive_shown = False
        self._checked = store if isinstance(store, CheckedOwnersStore) else None  # whose owners can lapse

    def show_alive(self) -> None:
        """Tell the store this owner lives (once, before the first claim)."""
        if not self._alive_shown:
            self._alive_shown = True
            self.store.hold_owner(self.owner)
            if self._checked is not None:
                self._start()  # checked from now on, leases or not

    def claim(self, root: str) -> Lease | None:
        """Take the lease on ``root``; ``None`` if another owner holds it or it is parked."""
        self.show_alive()
        return self.store.claim(root, self.owner, self.ttl, max_recoveries=self.max_recoveries)

    def claim_many(self, roots: Sequence[str]) -> dict[str, Lease]:
        """Take the leases on ``roots`` in one transaction; the ones taken, by root."""
        self.show_alive()
        return self.store.claim_many(roots, self.owner, self.ttl, max_recoveries=self.max_recoveries)

    def keep(self, lease: Lease) -> None:
        """Renew ``lease`` until :meth:`forget`."""
        with self._lock:
            self._held[lease.root] = lease
        self._start()

    def _start(self) -> None:
        """Start the renewal thread (once)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._renew_loop, name="vow-leases", daemon=True)
                self._thread.start()

    def forget(self, root: str) -> Lease | None:
        """Stop renewing ``root``'s lease; returns it (to release it)."""
        with self._lock:
            return self._held.pop(root, None)

    def stop(self) -> None:
        """Stop renewing; the leases are released by whoever stops the runs."""
        self._stopped = True
        self._wake.set()

    def _renew_loop(self) -> None:
        interval = self.ttl / 3
        last = time.monotonic()
        while True:
            self._wake.wait(interval)
            if self._stopped:
                return
            now = time.monotonic()
            if now - last > self.ttl / 2:
                _log.warning("lease renewal came %.1fs late (every %.1fs is due); something held this process "
                             "(a leaf or workflow holding the GIL?): a lease lapses after %.1fs without renewal",
                             now - last - interval, interval, self.ttl)
            last = now
            if self._checked is not None:
                try:
                    self._checked.check_owners()
                except Exception:  # noqa: BLE001 - check again next time; renewing does not depend on it
                    _log.warning("checking that this owner shows alive failed", exc_info=True)
            with self._lock:
                leases = list(self._held.values())
            if not leases:
                continue
            try:
                kept = {lease.root: lease for lease in self.store.renew(leases, self.ttl)}
            except Exception:  # noqa: BLE001 - try again next time; the leases are valid for a while
                _log.warning("lease renewal failed", exc_info=True)
                continue
            lost = []
            with self._lock:
                for lease in leases:
                    if lease.root not in kept:
                        if self._held.get(lease.root) is lease:
                            del self._held[lease.root]
                            lost.append(lease.root)
                    elif self._held.get(lease.root) is lease:
                        self._held[lease.root] = kept[lease.root]
            if lost:
                self._on_lost(lost)
