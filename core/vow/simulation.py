"""Building blocks for simulated transports: a crash-proof dedupe ledger, latency, stable ids.

Every shipped simulated transport records deliveries in a :class:`Ledger`, a SQLite file that
several processes may share. A second delivery with an idempotency key already in the ledger
is reported as a duplicate and not delivered again: the ledger is the "provider" that dedupes,
and the sink that tests count deliveries at.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from vow.errors import TransientError
from vow.files import output_errors

DEFAULT_DIR_ENV = "VOW_SIM_DIR"


def default_ledger_path() -> Path:
    """``$VOW_SIM_DIR/ledger.sqlite``, or ``.vow/sim/ledger.sqlite`` under the working directory."""
    base = os.environ.get(DEFAULT_DIR_ENV) or os.path.join(".vow", "sim")
    return Path(base) / "ledger.sqlite"


def stable_hex(key: str, length: int = 32, *, salt: str = "") -> str:
    """Hex digits derived from ``key``: the same key always gives the same id."""
    return hashlib.blake2b(f"{salt}|{key}".encode(), digest_size=(length + 1) // 2).hexdigest()[:length]


def stable_uuid(key: str, *, namespace: uuid.UUID = uuid.NAMESPACE_URL) -> str:
    """A UUID (version 5) derived from ``key``: how a key becomes an ``apns-id`` or a Message-ID."""
    return str(uuid.uuid5(namespace, f"vow:{key}"))


def latency(mean: float, jitter: float, key: str, attempt: int = 1) -> float:
    """A realistic, repeatable latency: ``mean`` seconds give or take ``jitter`` (a fraction)."""
    rng = random.Random(f"{key}|{attempt}")
    return max(0.0, mean * (1 + jitter * (2 * rng.random() - 1)))


def _use_wal(con: sqlite3.Connection) -> None:
    if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        con.execute("PRAGMA journal_mode=WAL")


def _while_busy(step: Callable[[], None], *, timeout: float = 60.0) -> None:
    """Run ``step``, retrying while SQLite is busy. Changing the journal mode of a fresh file gets
    SQLITE_BUSY at once (no busy wait) when another connection does the same at that moment."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


@attrs.frozen
class Delivery:
    """One delivery the ledger accepted."""

    key: str
    channel: str
    receipt: dict[str, Any]
    payload: dict[str, Any]
    delivered_at: float
    duplicates: int


class _Held:
    """A thread's connection to a ledger file, closed when dropped: with its thread, or with the
    ledger (Python 3.13 warns of a connection collected open, and a pool thread's ends unannounced)."""

    __slots__ = ("__weakref__", "_closer", "con", "path")

    def __init__(self, con: sqlite3.Connection, path: Path) -> None:
        self.con = con
        self.path = path
        # A finalizer, not __del__: collected in a cycle (a ledger in the frames of a traceback), the
        # holder's __del__ may run after the connection's own finalizer, which on 3.13 warns that it
        # is still open. The finalizer holds the connection, so it is never in that cycle's garbage,
        # and the collector calls it before any __del__ of the cycle.
        self._closer = weakref.finalize(self, con.close)
        self._closer.atexit = False  # as before: at exit a thread may still be using it

    def close(self) -> None:
        self._closer()


class Ledger:
    """Deliveries keyed by idempotency key, in a SQLite file shared by processes and threads.

    Without a ``path`` it is the default file (:func:`default_ledger_path`) as the environment
    names it at each use, not once: a channel is built once per process and reused, and it must
    not go on writing where ``VOW_SIM_DIR`` pointed when it was built.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._path = Path(path) if path else None
        self._local = threading.local()
        self._ready: set[Path] = set()  # files whose table this object has made sure of

    @property
    def path(self) -> Path:
        """The ledger's file."""
        return self._path or default_ledger_path()

    def _create(self, con: sqlite3.Connection) -> None:
        # Created on first use, so building a channel (``vow validate``) leaves no file behind.
        # Keyed per channel: the same key on two channels is two deliveries, not a duplicate.
        con.execute(
            "CREATE TABLE IF NOT EXISTS deliveries (channel TEXT NOT NULL, key TEXT NOT NULL, "
            "receipt TEXT NOT NULL, payload TEXT NOT NULL, delivered_at REAL NOT NULL, "
            "duplicates INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (channel, key))"
        )

    def _connect(self) -> sqlite3.Connection:
        path = self.path
        held: _Held | None = getattr(self._local, "held", None)
        con = held.con if held is not None else None
        if held is not None and held.path != path:
            held.close()  # the environment names another file now
            self._local.held = con = None
        if con is None:
            with output_errors(path, "the simulation's ledger"):
                path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
            try:
                _while_busy(lambda: _use_wal(con))
                con.execute("PRAGMA synchronous=NORMAL")
                if path not in self._ready:
                    _while_busy(lambda: self._create(con))
                    self._ready.add(path)
            except BaseException:
                con.close()  # kept, it would skip making the table on the next attempt
                raise
            self._local.held = _Held(con, path)
        return con

    def deliver(self, key: str, channel: str, payload: dict[str, Any],
                make_receipt: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """Record a delivery of ``key`` on ``channel``; return ``(receipt, duplicate)``.

        When ``key`` was delivered on ``channel`` before, nothing is delivered: the first receipt comes back
        with ``duplicate=True`` and the ledger counts the duplicate.
        """
        with self._errors():
            return self._deliver(key, channel, payload, make_receipt)

    def _deliver(self, key: str, channel: str, payload: dict[str, Any],
                 make_receipt: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        con = self._connect()
        con.execute("BEGIN IMMEDIATE")
        try:
            row = con.execute("SELECT receipt FROM deliveries WHERE channel=? AND key=?", (channel, key)).fetchone()
            if row is not None:
                con.execute("UPDATE deliveries SET duplicates = duplicates + 1 WHERE channel=? AND key=?",
                            (channel, key))
                con.execute("COMMIT")
                return json.loads(row[0]), True
            receipt = make_receipt()
            con.execute(
                "INSERT INTO deliveries (key, channel, receipt, payload, delivered_at) VALUES (?,?,?,?,?)",
                (key, channel, json.dumps(receipt), json.dumps(payload, default=str), time.time()),
            )
            con.execute("COMMIT")
            return receipt, False
        except BaseException:
            if con.in_transaction:  # SQLite ends it itself at some errors (a full disk)
                con.execute("ROLLBACK")
            raise

    def deliveries(self, channel: str | None = None) -> list[Delivery]:
        """Every delivery (of ``channel``), oldest first."""
        sql = "SELECT key, channel, receipt, payload, delivered_at, duplicates FROM deliveries"
        with self._errors():
            rows = self._connect().execute(sql + (" WHERE channel=?" if channel else "") + " ORDER BY delivered_at",
                                           (channel,) if channel else ()).fetchall()
        return [Delivery(k, c, json.loads(r), json.loads(p), t, d) for k, c, r, p, t, d in rows]

    def get(self, key: str, channel: str | None = None) -> Delivery | None:
        """The delivery recorded for ``key`` (on ``channel``, when given), if any."""
        sql = "SELECT key, channel, receipt, payload, delivered_at, duplicates FROM deliveries WHERE key=?"
        with self._errors():
            row = self._connect().execute(sql + (" AND channel=?" if channel else ""),
                                          (key, channel) if channel else (key,)).fetchone()
        if row is None:
            return None
        k, c, r, p, t, d = row
        return Delivery(k, c, json.loads(r), json.loads(p), t, d)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """An error SQLite gives becomes a :class:`~vow.errors.TransientError` naming the ledger's file:
        a full disk (``database or disk is full``, or ``disk I/O error`` when its ``-shm`` file cannot grow)
        may have room at the next attempt, and a bare ``OperationalError`` named no file at all."""
        try:
            yield
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorname", "SQLITE_ERROR")
            raise TransientError(f"could not use the simulation's ledger {self.path}: {exc}", code=code) from exc

    def close(self) -> None:
        """Close this thread's connection."""
        held = getattr(self._local, "held", None)
        if held is not None:
            held.close()
            self._local.held = None
