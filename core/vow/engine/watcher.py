"""The watcher: what changes in the store from outside while the engine runs.

Two things: outside writes (a ``vow resolve``, a ``vow cancel``, a ``Vow.submit`` from any
process or machine), read from the store's change feed; and root workflows another worker runs
that callers here wait for (a second ``vow.run`` of the same id elsewhere), read by id. The watcher
runs on its own thread and hands what it finds to the engine thread (``deliver``); it never
touches the engine's state. A store that can push (PostgreSQL's ``LISTEN/NOTIFY``) wakes it at
once; otherwise it looks every ``poll_interval`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from vow.errors import StoreError
from vow.records import PromiseRecord
from vow.stores.base import ChangeFeed, PushingStore

__all__ = ["Watcher"]

_log = logging.getLogger("vow.engine")

REMIND_SECONDS = 60.0
"""While the store keeps failing (a server restarting, a network down), the watcher says so once,
then again at most this often: it looks every ``poll_interval``, 20 times a second by default."""


class Watcher:
    """Reads the change feed and the remote roots callers wait for, on its own thread."""

    def __init__(self, store: Any, poll_interval: float, *,
                 on_changes: Callable[[ChangeFeed], None],
                 on_remote: Callable[[dict[str, PromiseRecord], set[str]], None]) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self._on_changes = on_changes
        self._on_remote = on_remote
        self._remote: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._seq: int | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._failed = 0  # looks that failed in a row
        self._said = 0.0  # when the failing was last logged (monotonic)

    def start(self) -> None:
        """Start watching from the feed's current position (idempotent)."""
        if self._thread is not None:
            return
        self._seq = self.store.changes(None).seq
        if isinstance(self.store, PushingStore):
            self._unsubscribe = self.store.subscribe(self._wake.set)
        self._thread = threading.Thread(target=self._loop, name="vow-watcher", daemon=True)
        self._thread.start()

    def watch_remote(self, root: str) -> None:
        """Report ``root``'s record (and whether its lease is free) until :meth:`unwatch_remote`."""
        with self._lock:
            self._remote.add(root)
        self._wake.set()

    def unwatch_remote(self, root: str) -> None:
        """Stop reporting ``root``."""
        with self._lock:
            self._remote.discard(root)

    def stop(self) -> None:
        """Stop the thread."""
        self._stopped = True
        self._wake.set()
        if self._unsubscribe is not None:
            try:
                self._unsubscribe()
            except Exception:  # noqa: BLE001
                pass

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            if self._stopped:
                return
            try:
                self._look()
            except Exception as exc:  # noqa: BLE001 - a failing store: look again next time, never drop waiters
                if self._stopping():  # the client is closing its store under this look: nothing to tell
                    return
                self._failing(exc)
            else:
                if self._failed:
                    _log.info("watching the store works again, after %d failed looks", self._failed)
                    self._failed = 0

    def _stopping(self) -> bool:
        """Whether :meth:`stop` was called, read now (another thread sets it during a look)."""
        return self._stopped

    def _failing(self, exc: Exception) -> None:
        """Log a failed look: the first of a streak, then once a REMIND_SECONDS (a store error, which
        an outage brings, in one line; anything else with its traceback)."""
        self._failed += 1
        now = time.monotonic()
        if self._failed > 1 and now - self._said < REMIND_SECONDS:
            return
        self._said = now
        again = f"looking again every {self.poll_interval:g} s" + (
            f" ({self._failed} failed looks in a row)" if self._failed > 1 else "")
        if isinstance(exc, StoreError):
            _log.warning("watching the store failed: %s; %s", exc, again)
        else:
            _log.warning("watching the store failed; %s", again, exc_info=exc)

    def _look(self) -> None:
        feed = self.store.changes(self._seq)
        if feed.entries or not feed.complete:
            self._on_changes(feed)
        self._seq = feed.seq
        with self._lock:
            remote = list(self._remote)
        if remote:
            records = self.store.get_many(remote)
            free = {rid for rid, record in records.items() if not record.settled and self.store.lease_free(rid)}
            self._on_remote(records, free)
