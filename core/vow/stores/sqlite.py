"""The ``sqlite`` store: the embedded default, one file shared by threads and processes.

Layout: a ``promises`` table with one row per :class:`~vow.records.PromiseRecord` (tags as
JSON text) and a ``leases`` table with one row per root workflow ever claimed. The store
format version (:data:`vow.stores.base.FORMAT_VERSION`) lives in ``PRAGMA user_version``; a
file written by a newer vow is refused, and so is a file that is not a sound SQLite database:
both are reported as :class:`~vow.errors.StoreError` naming the file, which is left untouched.

Durability. The file runs in WAL mode. With ``synchronous=normal`` (the default) a commit is
complete once it is written to the write-ahead log, without waiting for the disk: every
committed batch survives a crash of the process (even ``kill -9``), because the operating
system still holds the write; a power loss or an operating-system crash may lose the last
commits (never corrupt the file). ``synchronous=full`` flushes the log to disk on every commit
and survives power loss too, at the price of one fsync per commit.

Concurrency. Every write is one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction: it takes the
write lock before reading anything, so a read transaction is never upgraded to a write (the
upgrade is what produces "database is locked" errors that no busy timeout can cure). Waiting
for the lock uses SQLite's busy timeout and, on top of it, a retry with backoff until
``busy_timeout`` seconds are spent. Readers never block writers in WAL mode. Each thread gets
its own connection.
"""

from __future__ import annotations

import functools
import json
import os
import random
import sqlite3
import threading
import time
import weakref
from operator import attrgetter
from typing import Any, Callable, Iterable, Sequence, TypeVar
from urllib.parse import quote

import attrs

from vow.errors import ConfigError, LeaseLostError, PromiseNotFoundError, StoreError
from vow.hookspecs import hookimpl
from vow.records import Batch, BatchResult, Kind, Lease, PromiseRecord, State
from vow.stores.base import FORMAT_VERSION, StoreOperations, lease_is_free, same_outcome
from vow.stores.base import BRANCH_KINDS, INTERNAL_STEPS  # listings

DEFAULT_PATH = os.path.join(".vow", "vow.sqlite")
SYNCHRONOUS_MODES = ("normal", "full")


@attrs.frozen
class SQLiteOptions:
    """Options of the ``sqlite`` store (URL query parameters or YAML ``store:`` options)."""

    path: str = DEFAULT_PATH
    """The database file; parent directories are created."""
    synchronous: str = "normal"
    """``normal`` (survives process crashes) or ``full`` (also survives power loss; slower)."""
    busy_timeout: float = 60.0
    """Seconds a write waits for another writer before giving up with :class:`StoreError`."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS promises (
    id TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL,
    kind TEXT NOT NULL,
    root TEXT NOT NULL,
    func TEXT NOT NULL,
    args TEXT NOT NULL,
    value TEXT,
    parent TEXT,
    timeout REAL,
    idempotency_key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    created_at REAL NOT NULL,
    settled_at REAL,
    tags TEXT NOT NULL
);
-- Index entries end with the rowid, so these also serve "ORDER BY created_at, rowid".
CREATE INDEX IF NOT EXISTS promises_root ON promises (root, created_at);
CREATE INDEX IF NOT EXISTS promises_parent ON promises (parent, created_at);
CREATE INDEX IF NOT EXISTS promises_pending_roots ON promises (created_at)
    WHERE state = 'pending' AND parent IS NULL AND kind = 'workflow';
-- Listings of runs (root workflows), newest first, by state or name or neither: SQLiteStore.runs.
CREATE INDEX IF NOT EXISTS promises_runs_by_state ON promises (state, created_at, id)
    WHERE parent IS NULL AND kind = 'workflow';
CREATE INDEX IF NOT EXISTS promises_runs_by_name ON promises (<RUN_NAME>, created_at, id)
    WHERE parent IS NULL AND kind = 'workflow';
CREATE INDEX IF NOT EXISTS promises_runs ON promises (created_at, id)
    WHERE parent IS NULL AND kind = 'workflow';
CREATE TABLE IF NOT EXISTS leases (
    root TEXT PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    token INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
"""

# A run's name (vow.stores.base.run_name) in SQL: the pipeline's name for a YAML pipeline run, else
# the workflow's. The index on it and the query must spell it identically (so: one constant).
# CASE, unlike AND, evaluates lazily: json_type never sees malformed JSON.
_RUN_NAME = ("CASE WHEN func = 'vow.pipeline' AND json_valid(args) THEN (CASE WHEN json_type(args, '$[0].name') "
             "= 'text' THEN json_extract(args, '$[0].name') ELSE func END) ELSE func END")
_SCHEMA = _SCHEMA.replace("<RUN_NAME>", _RUN_NAME)

_COLUMNS = ("id, state, kind, root, func, args, value, parent, timeout, idempotency_key, attempt, "
            "created_at, settled_at, tags")
_SELECT = f"SELECT {_COLUMNS} FROM promises"
_SETTLE = "UPDATE promises SET state = ?, value = ?, settled_at = ? WHERE id = ? AND state = 'pending'"
_ATTEMPT = "UPDATE promises SET attempt = ? WHERE id = ? AND state = 'pending'"
_RELEASE = "UPDATE leases SET owner = '', expires_at = 0 WHERE root = ? AND owner = ? AND token = ?"
CHECKPOINT_EVERY = 256  # commits between two checkpoints of the log by the checkpointer thread
CHECKPOINT_IDLE_SECONDS = 1.0  # ... or this long after the last commit
WAL_SIZE_LIMIT = 64 * 2**20  # bytes the log file is truncated to after a checkpoint resets it
_CHUNK = 500  # ids per "IN (...)" query, well under SQLite's bound-parameter limit

_STATES = {s.value: s for s in State}
_KINDS = {k.value: k for k in Kind}
_PENDING = State.PENDING
_EMPTY_TAGS = "{}"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads
_HEADER = b"SQLite format 3\x00"


_parsed_tags: dict[str, dict[str, str]] = {}


def _tags(text: str) -> dict[str, str]:
    """Tags from their JSON text; the few distinct tag sets are parsed once and copied after."""
    parsed = _parsed_tags.get(text)
    if parsed is None:
        if len(_parsed_tags) >= 4096:
            _parsed_tags.clear()
        parsed = _parsed_tags[text] = _loads(text)
    return parsed.copy()


def _record(row: tuple) -> PromiseRecord:
    """A record from a row in ``_COLUMNS`` order (positional: no per-field work beyond the enums)."""
    tags = row[13]
    return PromiseRecord(row[0], _STATES[row[1]], _KINDS[row[2]], row[3], row[4], row[5], row[6], row[7],
                         row[8], row[9], row[10], row[11], row[12], {} if tags == _EMPTY_TAGS else _tags(tags))


# Inserts come in three shapes, so that the usual record (no value, timeout or settle time yet)
# binds no ``None``: sqlite3 binds ``None`` several times slower than a str, int or float, and
# binding is most of the cost of an insert. ``state._value_`` is the enum's plain str.
_FIXED = ("id", "state", "kind", "root", "func", "args")
_INSERT_SHAPES = [
    (f"INSERT OR IGNORE INTO promises ({', '.join(columns)}, tags) VALUES ({', '.join('?' * (len(columns) + 1))})",
     attrgetter(*(c + "._value_" if c in ("state", "kind") else c for c in columns)))
    for columns in (
        (*_FIXED, "parent", "idempotency_key", "attempt", "created_at"),
        (*_FIXED, "idempotency_key", "attempt", "created_at"),  # no parent: a root
        (*_FIXED, "value", "parent", "timeout", "idempotency_key", "attempt", "created_at", "settled_at"),
    )
]


def _insert_runs(records: list[PromiseRecord]) -> list[tuple[str, list[tuple]]]:
    """``(INSERT statement, rows)`` runs in record order (order matters: it breaks created_at ties)."""
    runs: list[tuple[str, list[tuple]]] = []
    rows: list[tuple] = []
    current = -1
    for r in records:
        if r.value is None and r.timeout is None and r.settled_at is None:
            shape = 0 if r.parent is not None else 1
        else:
            shape = 2
        if shape != current:
            current = shape
            rows = []
            runs.append((_INSERT_SHAPES[shape][0], rows))
        tags = r.tags
        rows.append(_INSERT_SHAPES[shape][1](r) + (_dumps(tags) if tags else _EMPTY_TAGS,))
    return runs


def _header_size(header: bytes) -> int:
    """The database size a SQLite file header records, or 0 when the header does not say."""
    page_size = int.from_bytes(header[16:18], "big")
    pages = int.from_bytes(header[28:32], "big")
    # The count is valid only when "version-valid-for" matches the change counter.
    return (65536 if page_size == 1 else page_size) * pages if header[92:96] == header[24:28] else 0


def _is_busy(exc: sqlite3.Error) -> bool:
    message = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in message or "busy" in message)


F = TypeVar("F", bound=Callable[..., Any])


def _reading(method: F) -> F:
    """Run a read, retrying while the file is busy; report any SQLite failure as :class:`StoreError`."""

    @functools.wraps(method)
    def wrapper(self: SQLiteStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            if not _is_busy(exc):
                raise self._error(exc) from exc
        return self._retry_busy(lambda: method(self, *args, **kwargs))

    return wrapper  # type: ignore[return-value]


class SQLiteStore(StoreOperations):
    """Promises and leases in one SQLite file (WAL), safe for many threads and processes."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH, *, synchronous: str = "normal",
                 busy_timeout: float = 60.0) -> None:
        synchronous = str(synchronous).lower()
        if synchronous not in SYNCHRONOUS_MODES:
            raise ConfigError(f"sqlite store option synchronous: expected one of "
                              f"{', '.join(SYNCHRONOUS_MODES)}, got {synchronous!r}")
        if not isinstance(busy_timeout, (int, float)) or busy_timeout <= 0:
            raise ConfigError(f"sqlite store option busy_timeout: expected a number of seconds > 0, got {busy_timeout!r}")
        self.path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        self.synchronous = synchronous
        self.busy_timeout = float(busy_timeout)
        self.url = f"sqlite://{self.path}" + ("" if synchronous == "normal" else f"?synchronous={synchronous}")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self._commits = 0
        self._checkpoint_wanted = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._check_file()
        self._create_schema()
        _open_stores.add(self)

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path}>"

    # -- opening

    def _check_file(self) -> None:
        """Refuse, without writing to it, a file that is not a sound vow store of a known format."""
        if os.path.isdir(self.path):
            raise StoreError(f"SQLite store {self.path}: is a directory, not a database file")
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            try:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
            except OSError as exc:
                raise StoreError(f"SQLite store {self.path}: cannot create its directory: {exc}") from None
            return
        if size == 0:
            return  # an empty file is an empty database (SQLite's own rule)
        try:
            with open(self.path, "rb") as f:
                header = f.read(100)
        except OSError as exc:
            raise StoreError(f"SQLite store {self.path}: cannot read the file: {exc}") from None
        if len(header) < 100 or not header.startswith(_HEADER):
            raise StoreError(f"SQLite store {self.path}: not a SQLite database (wrong path, or a damaged file)")
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                version, tables = self._read_format()
                break
            except sqlite3.Error as exc:
                if _is_busy(exc) and time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                # SQLite itself checks the page count in the header against the file (and, unlike a
                # check of ours, against the write-ahead log a checkpoint may be copying from).
                expected = _header_size(header)
                if not _is_busy(exc) and expected and size < expected:
                    raise StoreError(f"SQLite store {self.path}: the file is truncated ({size} bytes, its "
                                     f"header says {expected}); restore it from a backup") from exc
                raise self._error(exc) from exc
        if version > FORMAT_VERSION:
            raise StoreError(f"SQLite store {self.path}: written by a newer vow (store format {version}; "
                             f"this vow supports up to {FORMAT_VERSION}); upgrade vow to open it")
        if version == 0 and tables:
            raise StoreError(f"SQLite store {self.path}: a SQLite database, but not a vow store "
                             f"(it holds tables {', '.join(sorted(tables))} and no vow format version)")
        if version > 0 and not {"promises", "leases"} <= tables:
            raise StoreError(f"SQLite store {self.path}: tables are missing (format {version}, "
                             f"tables: {', '.join(sorted(tables)) or 'none'}); the file is damaged")

    def _read_format(self) -> tuple[int, set[str]]:
        """The format version and table names, read through a read-only connection (writes nothing)."""
        con = sqlite3.connect(f"file:{quote(self.path)}?mode=ro", uri=True, timeout=self.busy_timeout)
        try:
            con.execute("BEGIN")  # one snapshot: another process may be creating the schema right now
            version = con.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "promises" in tables:  # touches the last page: a cheap probe of the file's end
                con.execute("SELECT id FROM promises ORDER BY rowid DESC LIMIT 1").fetchall()
            return version, tables
        finally:
            con.close()

    def _create_schema(self) -> None:
        def setup() -> None:
            con = self._con()
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode = WAL")
            if con.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION:
                return  # the usual case: nothing to write, so no need to wait for the write lock
            self._begin(con)
            try:
                version = con.execute("PRAGMA user_version").fetchone()[0]
                if version > FORMAT_VERSION:  # another process got there first with a newer vow
                    raise StoreError(f"SQLite store {self.path}: written by a newer vow (store format "
                                     f"{version}; this vow supports up to {FORMAT_VERSION})")
                if version == 0:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            con.execute(statement)
                    con.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
                con.execute("COMMIT")
            except BaseException:
                self._rollback(con)
                raise

        try:
            try:
                setup()
            except sqlite3.Error as exc:
                if not _is_busy(exc):
                    raise self._error(exc) from exc
                self._retry_busy(setup)
        except BaseException:
            self.close()
            raise

    def _con(self) -> sqlite3.Connection:
        try:
            return self._local.con
        except AttributeError:
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"SQLite store {self.path}: the store is closed")
        try:
            con = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                  check_same_thread=False, cached_statements=256)
            con.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            # No checkpoint inside a commit: it fsyncs the log and the file (2-4 ms) while the engine
            # waits for its commit. The checkpointer thread does it instead (see _committed).
            con.execute("PRAGMA wal_autocheckpoint = 0")
            con.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        with self._connections_lock:
            self._connections.append(con)
        self._local.con = con
        return con

    def _forget_connections(self) -> None:
        self._local = threading.local()
        self._connections = []
        self._connections_lock = threading.Lock()
        self._checkpointer = None
        self._checkpoint_wanted = threading.Event()

    def _committed(self) -> None:
        """Count a commit; the checkpointer copies the log into the file every few hundred commits."""
        self._commits += 1
        if self._checkpointer is None:
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="vow-sqlite-checkpoint",
                                                  daemon=True)
            self._checkpointer.start()
        if self._commits % CHECKPOINT_EVERY == 0:
            self._checkpoint_wanted.set()

    def _checkpoint_loop(self) -> None:
        """Checkpoint off the engine thread: after CHECKPOINT_EVERY commits, or a second after the last."""
        con = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        done = 0
        try:
            while not self._closed:
                self._checkpoint_wanted.wait(CHECKPOINT_IDLE_SECONDS)
                self._checkpoint_wanted.clear()
                if self._closed or self._commits == done:
                    continue
                done = self._commits
                _checkpoint(con)
        finally:
            con.close()

    def close(self) -> None:
        """Checkpoint the log, close every connection this store opened; the store is unusable afterwards."""
        self._closed = True
        self._checkpoint_wanted.set()
        _open_stores.discard(self)
        with self._connections_lock:
            connections, self._connections = self._connections, []
        self._local = threading.local()
        if connections and self._commits:
            _checkpoint(connections[0])
        for con in connections:
            try:
                con.close()
            except sqlite3.Error:
                pass

    # -- transactions and errors

    def _begin(self, con: sqlite3.Connection) -> None:
        """Take the write lock (``BEGIN IMMEDIATE``), waiting up to ``busy_timeout`` seconds."""
        started = time.monotonic()
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if not _is_busy(exc):
                raise self._error(exc) from exc
            # SQLite's busy handler has waited already, unless the lock was refused outright
            # (a recovery in progress, for one): retry for what is left of the timeout.
            self._retry_busy(lambda: con.execute("BEGIN IMMEDIATE"), started)

    def _retry_busy(self, action: Callable[[], Any], started: float | None = None) -> Any:
        """Repeat ``action`` with backoff while SQLite reports the file busy, up to ``busy_timeout``."""
        deadline = (time.monotonic() if started is None else started) + self.busy_timeout
        delay = 0.001
        while True:
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.05)
            try:
                return action()
            except sqlite3.Error as exc:
                if not _is_busy(exc):
                    raise self._error(exc) from exc
                if time.monotonic() >= deadline:
                    raise StoreError(f"SQLite store {self.path}: still locked by another connection after "
                                     f"{self.busy_timeout:g} s (busy_timeout): {exc}") from exc

    @staticmethod
    def _rollback(con: sqlite3.Connection) -> None:
        if con.in_transaction:
            try:
                con.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _error(self, exc: sqlite3.Error) -> StoreError:
        name = getattr(exc, "sqlite_errorname", "")
        if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in str(exc):
            return StoreError(f"SQLite store {self.path}: the file is damaged or not a vow store: {exc}")
        return StoreError(f"SQLite store {self.path}: {exc}")

    # -- writes

    def apply(self, batch: Batch) -> BatchResult:
        """Apply ``batch`` in one transaction: fences, creates, settles, attempts; all or nothing."""
        if not batch and not batch.fences:
            return BatchResult()
        settles = batch.settles
        for s in settles:
            if s.state is _PENDING:
                raise ValueError(f"cannot settle {s.id!r} as pending")
        return self._write(lambda con: self._apply_in(con, batch))

    def _apply_in(self, con: sqlite3.Connection, batch: Batch) -> BatchResult:
        if batch.fences:
            self._check_fences(con, batch.fences)
        existing: dict[str, PromiseRecord] = {}
        conflicts: dict[str, PromiseRecord] = {}
        creates, settles = batch.creates, batch.settles
        if creates:
            inserted = 0
            for statement, rows in _insert_runs(creates):
                inserted += con.executemany(statement, rows).rowcount
            if inserted < len(creates):
                existing = self._existing(con, creates, inserted)
        if settles:
            changed = con.executemany(_SETTLE, [(s.state._value_, s.value, s.settled_at, s.id) for s in settles]).rowcount
            if changed < len(settles):
                conflicts = self._conflicts(con, settles)
        if batch.attempts:
            con.executemany(_ATTEMPT, [(n, i) for i, n in batch.attempts.items()])
        return BatchResult(existing, conflicts)

    def _check_fences(self, con: sqlite3.Connection, fences: dict[str, int]) -> None:
        lost = []
        for root, token in fences.items():
            row = con.execute("SELECT l.token, p.state FROM leases l LEFT JOIN promises p ON p.id = l.root "
                              "WHERE l.root = ?", (root,)).fetchone()
            if row is None or row[0] != token or row[1] not in (None, "pending"):
                lost.append(root)
        if lost:
            lost.sort()
            error = LeaseLostError(f"lease lost on {', '.join(map(repr, lost))}: another worker took over, "
                                   "or the workflow was settled (canceled) from outside")
            error.roots = lost  # type: ignore[attr-defined]
            raise error

    def _existing(self, con: sqlite3.Connection, creates: list[PromiseRecord], inserted: int) -> dict[str, PromiseRecord]:
        """The stored records of the creates that were ignored because their id existed."""
        # SQLite gives a new row the rowid max(rowid) + 1, and we hold the write lock: the rows
        # this batch inserted are exactly the ``inserted`` highest rowids.
        first_new = (con.execute("SELECT max(rowid) FROM promises").fetchone()[0] or 0) - inserted + 1
        stored = {row[1]: (row[0], row[1:]) for row in self._select_ids(con, "rowid, " + _COLUMNS,
                                                                         [r.id for r in creates])}
        existing = {}
        seen: set[str] = set()
        for r in creates:
            if r.id not in stored:  # OR IGNORE also skips a row that breaks NOT NULL
                raise ValueError(f"cannot store promise {r.id!r}: a required field is None ({r!r})")
            rowid, row = stored[r.id]
            if rowid < first_new or r.id in seen:  # there before, or created earlier in this batch
                existing[r.id] = _record(row)
            seen.add(r.id)
        return existing

    def _conflicts(self, con: sqlite3.Connection, settles: list) -> dict[str, PromiseRecord]:
        """Settles that changed nothing: same outcome (fine), another outcome (conflict), no such id (error)."""
        stored = {row[0]: row for row in self._select_ids(con, _COLUMNS, [s.id for s in settles])}
        conflicts = {}
        for s in settles:
            row = stored.get(s.id)
            if row is None:
                raise PromiseNotFoundError(f"cannot settle {s.id!r}: no promise with that id")
            record = _record(row)
            if not same_outcome(record, s):
                conflicts[s.id] = record
        return conflicts

    @staticmethod
    def _select_ids(con: sqlite3.Connection, columns: str, ids: list[str]) -> list[tuple]:
        rows: list[tuple] = []
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows += con.execute(f"SELECT {columns} FROM promises WHERE id IN ({marks})", chunk).fetchall()
        return rows

    # -- reads

    @_reading
    def get(self, id: str) -> PromiseRecord | None:
        """The record with ``id``, or ``None``."""
        row = self._con().execute(_SELECT + " WHERE id = ?", (id,)).fetchone()
        return None if row is None else _record(row)

    @_reading
    def get_many(self, ids: Iterable[str]) -> dict[str, PromiseRecord]:
        """The records among ``ids`` that exist, by id (one consistent snapshot)."""
        ids = list(ids)
        con = self._con()
        if len(ids) <= _CHUNK:
            return {row[0]: _record(row) for row in self._select_ids(con, _COLUMNS, ids)}
        con.execute("BEGIN")  # a read transaction: every chunk sees the same snapshot
        try:
            return {row[0]: _record(row) for row in self._select_ids(con, _COLUMNS, ids)}
        finally:
            self._rollback(con)

    @_reading
    def children(self, parent: str) -> list[PromiseRecord]:
        """Direct children of ``parent``, oldest first."""
        rows = self._con().execute(_SELECT + " WHERE parent = ? ORDER BY created_at, rowid", (parent,))
        return [_record(row) for row in rows]

    @_reading
    def tree(self, root: str) -> list[PromiseRecord]:
        """Every record whose root is ``root`` (the root included), oldest first."""
        rows = self._con().execute(_SELECT + " WHERE root = ? ORDER BY created_at, rowid", (root,))
        return [_record(row) for row in rows]

    @_reading
    def search(self, *, state: State | None = None, kind: Kind | None = None, root: str | None = None,
               roots_only: bool = False, tag: tuple[str, str] | None = None,
               limit: int = 1000) -> list[PromiseRecord]:
        """Records matching every given filter, newest first, at most ``limit``."""
        if limit <= 0:
            return []
        where, params = [], []
        if state is not None:
            where.append("state = ?")
            params.append(State(state).value)
        if kind is not None:
            where.append("kind = ?")
            params.append(Kind(kind).value)
        if root is not None:
            where.append("root = ?")
            params.append(root)
        if roots_only:
            where.append("parent IS NULL")
        if tag is not None:
            key, value = tag
            where.append("EXISTS (SELECT 1 FROM json_each(promises.tags) WHERE key = ? AND value = ?)")
            params += [key, value]
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._con().execute(sql + " ORDER BY created_at DESC, rowid DESC LIMIT ?", (*params, limit))
        return [_record(row) for row in rows]

    # -- leases

    @_reading
    def claimable(self, *, limit: int = 100, now: float | None = None) -> list[PromiseRecord]:
        """Pending root workflows whose lease is free, expired or held by a dead local process; oldest first."""
        now = time.time() if now is None else now
        if limit <= 0:
            return []
        local = self._local_owner_prefix
        # SQL keeps leases that may be free; owners on this host are checked for life in Python.
        rows = self._con().execute(
            f"SELECT {', '.join('p.' + c for c in _COLUMNS.split(', '))}, l.owner, l.token, l.expires_at "
            "FROM promises p INDEXED BY promises_pending_roots LEFT JOIN leases l ON l.root = p.id "
            "WHERE p.state = 'pending' AND p.parent IS NULL AND p.kind = 'workflow' "
            "AND (l.root IS NULL OR l.owner = '' OR l.expires_at <= ? OR substr(l.owner, 1, ?) = ?) "
            "ORDER BY p.created_at, p.rowid", (now, len(local), local))
        found = []
        for row in rows:
            lease = None if row[14] is None else Lease(row[0], row[14], row[15], row[16])
            if lease_is_free(lease, "", now):
                found.append(_record(row))
                if len(found) >= limit:
                    break
        return found

    @functools.cached_property
    def _local_owner_prefix(self) -> str:
        from vow.stores.base import new_owner_id

        return new_owner_id().split(":", 1)[0] + ":"

    def claim(self, root: str, owner: str, ttl: float, *, now: float | None = None) -> Lease | None:
        """Take (or renew) the lease on ``root`` for ``ttl`` seconds; ``None`` if another live owner holds it."""
        if not owner:
            raise ValueError("a lease owner must not be empty")
        now = time.time() if now is None else now

        return self._write(lambda con: _claim_in(con, root, owner, ttl, now))

    def claim_many(self, roots: Sequence[str], owner: str, ttl: float, *,
                   now: float | None = None) -> dict[str, Lease]:
        """Claim the leases on ``roots`` in one transaction; the ones taken, by root."""
        if not owner:
            raise ValueError("a lease owner must not be empty")
        if not roots:
            return {}
        now = time.time() if now is None else now

        def claim_all(con: sqlite3.Connection) -> dict[str, Lease]:
            taken = {}
            for root in roots:
                lease = _claim_in(con, root, owner, ttl, now)
                if lease is not None:
                    taken[root] = lease
            return taken

        return self._write(claim_all)

    def renew(self, leases: Sequence[Lease], ttl: float, *, now: float | None = None) -> list[Lease]:
        """Extend the leases still held (same owner and token); the ones lost are left out."""
        now = time.time() if now is None else now
        if not leases:
            return []

        def renew_in(con: sqlite3.Connection) -> list[Lease]:
            kept = []
            for lease in leases:
                cur = con.execute("UPDATE leases SET expires_at = ? WHERE root = ? AND owner = ? AND token = ?",
                                  (now + ttl, lease.root, lease.owner, lease.token))
                if cur.rowcount:
                    kept.append(Lease(lease.root, lease.owner, lease.token, now + ttl))
            return kept

        return self._write(renew_in)

    def release(self, lease: Lease) -> None:
        """Give up ``lease`` if still held; its token is kept so tokens only grow."""
        self._write(lambda con: con.execute(_RELEASE, (lease.root, lease.owner, lease.token)))

    def release_many(self, leases: Sequence[Lease]) -> None:
        """Release ``leases`` in one transaction (each only if still held; tokens are kept)."""
        if leases:
            self._write(lambda con: con.executemany(_RELEASE, [(x.root, x.owner, x.token) for x in leases]))

    @_reading
    def lease(self, root: str) -> Lease | None:
        """The current lease row for ``root`` (held or not), or ``None``."""
        row = self._con().execute("SELECT owner, token, expires_at FROM leases WHERE root = ?", (root,)).fetchone()
        return None if row is None else Lease(root, *row)

    def _write(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction and commit it."""
        con = self._con()
        self._begin(con)
        try:
            result = work(con)
            con.execute("COMMIT")
            self._committed()
        except sqlite3.Error as exc:
            self._rollback(con)
            raise self._error(exc) from exc
        except BaseException:
            self._rollback(con)
            raise
        return result


    # -- listings: runs and their branches (see StoreOperations.runs and .branch_counts) ----------

    @_reading
    def runs(self, *, state: State | None = None, name: str | None = None, since: float | None = None,
             until: float | None = None, before: tuple[float, str] | None = None,
             limit: int = 50) -> list[PromiseRecord]:
        """Root workflows, newest first; one walk of the ``promises_runs*`` indexes, so a page
        costs the same on a store of a thousand promises or of millions."""
        if limit <= 0:
            return []
        sql, params = self._runs_query(state=state, name=name, since=since, until=until, before=before, limit=limit)
        return [_record(row) for row in self._con().execute(sql, params)]

    @staticmethod
    def _runs_query(*, state: State | None, name: str | None, since: float | None, until: float | None,
                    before: tuple[float, str] | None, limit: int) -> tuple[str, tuple[Any, ...]]:
        """The SQL of :meth:`runs` and its parameters."""
        # The root and state conditions are literals, not parameters: the planner uses a partial
        # index only when it can see that the query implies the index's WHERE clause.
        where = ["parent IS NULL", "kind = 'workflow'"]
        params: list[Any] = []
        if state is not None:
            where.append(f"state = '{State(state).value}'")  # an enum value: safe to inline
        if since is not None:
            where.append("created_at >= ?")
            params.append(float(since))
        if until is not None:
            where.append("created_at < ?")
            params.append(float(until))
        if before is not None:
            where.append("(created_at, id) < (?, ?)")
            params += [float(before[0]), str(before[1])]
        if name is not None:
            where.append(f"{_RUN_NAME} = ?")
            params.append(name)
        sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT ?"
        return sql, (*params, limit)

    @_reading
    def branch_counts(self, roots: Iterable[str]) -> dict[str, dict[State, int]]:
        """Each root's branches by state, counted in SQL over the ``promises_parent`` index."""
        wanted = list(dict.fromkeys(roots))
        counts: dict[str, dict[State, int]] = {root: {} for root in wanted}
        internal = " AND ".join(f"id != parent || '.{name}'" for name in INTERNAL_STEPS)
        kinds = ", ".join(f"'{kind.value}'" for kind in BRANCH_KINDS)
        con = self._con()
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            rows = con.execute(
                f"SELECT parent, state, count(*) FROM promises WHERE parent IN ({','.join('?' * len(chunk))}) "
                f"AND kind IN ({kinds}) AND {internal} GROUP BY parent, state", chunk)
            for parent, state, n in rows:
                counts[parent][_STATES[state]] = n
        return counts


def _claim_in(con: sqlite3.Connection, root: str, owner: str, ttl: float, now: float) -> Lease | None:
    """Claim one lease inside a write transaction."""
    row = con.execute("SELECT owner, token, expires_at FROM leases WHERE root = ?", (root,)).fetchone()
    current = None if row is None else Lease(root, *row)
    if not lease_is_free(current, owner, now):
        return None
    if current is None:
        con.execute("INSERT INTO leases (root, owner, token, expires_at) VALUES (?, ?, 1, ?)", (root, owner, now + ttl))
        return Lease(root, owner, 1, now + ttl)
    token = current.token if current.owner == owner else current.token + 1
    # Compare-and-swap on the token read above (we hold the write lock: it always matches).
    con.execute("UPDATE leases SET owner = ?, token = ?, expires_at = ? WHERE root = ? AND token = ?",
                (owner, token, now + ttl, root, current.token))
    return Lease(root, owner, token, now + ttl)


def _checkpoint(con: sqlite3.Connection) -> None:
    # PASSIVE never waits for readers or writers; what it cannot copy now, the next round copies.
    try:
        con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error:
        pass


# A connection must never cross a fork: a forked child forgets its parent's and opens its own.
_open_stores: "weakref.WeakSet[SQLiteStore]" = weakref.WeakSet()
os.register_at_fork(after_in_child=lambda: [store._forget_connections() for store in list(_open_stores)])


def open_sqlite(options: SQLiteOptions) -> SQLiteStore:
    """A SQLite file (WAL): the embedded default, safe for several processes on one machine."""
    return SQLiteStore(options.path, synchronous=options.synchronous, busy_timeout=options.busy_timeout)


@hookimpl
def vow_register_stores(register) -> None:
    """Register the ``sqlite`` store."""
    register("sqlite", open_sqlite, SQLiteOptions)
