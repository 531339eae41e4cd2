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
upgrade is what produces "database is locked" errors that no busy timeout can cure). A writer
that finds the lock taken tries again after 50 µs, then less and less often (at most every 2 ms)
until ``busy_timeout`` seconds are spent: SQLite's own busy handler sleeps 1 ms at once, while
another process's commit holds the lock for a tenth of that. Any other statement that finds the
file busy is retried with backoff, up to ``busy_timeout`` too. Readers never block writers in
WAL mode. Each thread gets its own connection.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
import sqlite3
import stat
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Sequence
from operator import attrgetter
from typing import Any, TypeVar
from urllib.parse import quote

import attrs

from vow.errors import ConfigError, PromiseNotFoundError, StoreError
from vow.hookspecs import Register, hookimpl
from vow.naming import refuse_unstorable, storable
from vow.records import Batch, BatchResult, Kind, Lease, PromiseRecord, Settle, State, make_batch_result, make_record
from vow.reserved import INTERNAL_STEPS
from vow.retention import BATCH_RUNS, FINISHED_STATES, PrunedRun, PruneResult
from vow.schedules.record import ScheduleRecord
from vow.stores.base import (  # listings
    BRANCH_KINDS,
    BUCKET,
    FORMAT_VERSION,
    LEASE_ROOT,
    ChangeFeed,
    StoreOperations,
    bucket_after_hold,
    bucket_after_take,
    conflict_error,
    lease_claimable,
    lease_lost_error,
    lease_takeover,
    parked_reason,
    past_deadline,
    refuse_unstorable_batch,
    same_outcome,
    search_conditions,
    timeout_error_text,
)
from vow.stores.owners import OwnerLocks

_log = logging.getLogger("vow.sqlite")

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
    read_only: bool = False
    """Open the file without writing to it (what ``vow ls`` and ``vow show`` do): it may be a file, a
    folder or a file system this user cannot write; a write through the store fails saying so."""


# A run's name (vow.stores.base.run_name) in SQL: the pipeline's name for a YAML pipeline run, else
# the workflow's. The index on it and the query must spell it identically (so: one constant).
# CASE, unlike AND, evaluates lazily: json_type never sees malformed JSON.
_RUN_NAME = ("CASE WHEN func = 'vow.pipeline' AND json_valid(args) THEN (CASE WHEN json_type(args, '$[0].name') "
             "= 'text' THEN json_extract(args, '$[0].name') ELSE func END) ELSE func END")

_MIGRATIONS: dict[int, list[str]] = {
    # format 1 (vow 0.1): promises and leases
    1: [
        """CREATE TABLE IF NOT EXISTS promises (
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
        )""",
        # Index entries end with the rowid, so these also serve "ORDER BY created_at, rowid".
        "CREATE INDEX IF NOT EXISTS promises_root ON promises (root, created_at)",
        "CREATE INDEX IF NOT EXISTS promises_parent ON promises (parent, created_at)",
        """CREATE INDEX IF NOT EXISTS promises_pending_roots ON promises (created_at)
            WHERE state = 'pending' AND parent IS NULL AND kind = 'workflow'""",
        """CREATE TABLE IF NOT EXISTS leases (
            root TEXT PRIMARY KEY NOT NULL,
            owner TEXT NOT NULL,
            token INTEGER NOT NULL,
            expires_at REAL NOT NULL
        )""",
    ],
    # format 2 (vow 0.2): recoveries and parking, the change feed, an index of held leases
    2: [
        "ALTER TABLE leases ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE leases ADD COLUMN parked TEXT",
        "CREATE INDEX IF NOT EXISTS leases_held ON leases (owner) WHERE owner != ''",
        """CREATE TABLE IF NOT EXISTS changes (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            root TEXT NOT NULL,
            id TEXT NOT NULL
        )""",
        # Listings of runs (root workflows), newest first, by state, by name or neither: SQLiteStore.runs.
        """CREATE INDEX IF NOT EXISTS promises_runs_by_state ON promises (state, created_at, id)
            WHERE parent IS NULL AND kind = 'workflow'""",
        f"""CREATE INDEX IF NOT EXISTS promises_runs_by_name ON promises ({_RUN_NAME}, created_at, id)
            WHERE parent IS NULL AND kind = 'workflow'""",
        """CREATE INDEX IF NOT EXISTS promises_runs ON promises (created_at, id)
            WHERE parent IS NULL AND kind = 'workflow'""",
    ],
    # format 3 (vow 0.2, issue 16): schedules and the token buckets of shared rate limits
    3: [
        """CREATE TABLE IF NOT EXISTS schedules (
            name TEXT PRIMARY KEY NOT NULL,
            definition TEXT NOT NULL,
            paused INTEGER NOT NULL DEFAULT 0,
            cursor REAL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS buckets (
            name TEXT PRIMARY KEY NOT NULL,
            tokens REAL NOT NULL,
            stamp REAL NOT NULL
        )""",
    ],
}
"""Statements that bring a file from format ``n - 1`` to ``n``; a new file runs them all."""

_ADDED_INDEXES: dict[str, str] = {
    # The parked leases (SQLiteStore.parked_leases, for `vow ls --state parked`): a few among every
    # root ever claimed. Renewals and claims change neither column, so they never touch it.
    "leases_parked": "CREATE INDEX IF NOT EXISTS leases_parked ON leases (root) WHERE parked IS NOT NULL",
}
"""Indexes added after the current format was: a file of that format may lack them, and every read
answers the same without them, only slower. A store that may write the file makes the missing ones
as it opens it. (A new format instead would make every earlier vow refuse the file, and this one
refuse to read a file of the format before that it may not write.)"""

_COLUMNS = ("id, state, kind, root, func, args, value, parent, timeout, idempotency_key, attempt, "
            "created_at, settled_at, tags")
_SELECT = f"SELECT {_COLUMNS} FROM promises"
_SETTLE = "UPDATE promises SET state = ?, value = ?, settled_at = ? WHERE id = ? AND state = 'pending'"
# A resolve or reject must also beat the promise's deadline (sleeps excepted: theirs is the wake-up time).
_SETTLE_BEFORE_DEADLINE = (
    "UPDATE promises SET state = ?, value = ?, settled_at = ? WHERE id = ? AND state = 'pending' "
    "AND (timeout IS NULL OR kind = 'sleep' OR timeout > ?)")
_ATTEMPT = "UPDATE promises SET attempt = ? WHERE id = ? AND state = 'pending'"
_RELEASE = ("UPDATE leases SET owner = '', expires_at = 0, recoveries = 0 "
            "WHERE root = ? AND owner = ? AND token = ? AND owner != ''")
_LEASE_COLUMNS = "owner, token, expires_at, recoveries, parked"
_FENCE_ONE = "SELECT l.token, p.state FROM leases l LEFT JOIN promises p ON p.id = l.root WHERE l.root = ?"
FEED_WINDOW = 10_000  # outside writes the change feed keeps
LOCK_FIRST_WAIT = 0.00005  # seconds a writer waits before it looks at a taken write lock again ...
LOCK_MAX_WAIT = 0.002  # ... growing to this
CHECKPOINT_EVERY = 128  # commits between two checkpoints of the log
CHECKPOINT_IDLE_SECONDS = 1.0  # ... or this long after the last commit
WAL_RESTART_BYTES = 8 * 2**20  # a log this long is copied to its end by the committing connection, and starts over
WAL_TRUNCATE_BYTES = 16 * 2**20  # a log still this long (other processes kept it from starting over) is truncated
WAL_SIZE_LIMIT = 8 * 2**20  # bytes the log file is cut back to when it starts over
CLOSE_CHECKPOINT_SECONDS = 2.0  # how long close() waits for other connections to let it truncate the log
_CHUNK = 500  # ids per "IN (...)" query, well under SQLite's bound-parameter limit

_STATES = {s.value: s for s in State}
_KINDS = {k.value: k for k in Kind}
_PENDING = State.PENDING
_RESOLVED = State.RESOLVED
_REJECTED = State.REJECTED
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


def _record(row: tuple[Any, ...]) -> PromiseRecord:
    """A record from a row in ``_COLUMNS`` order (positional: no per-field work beyond the enums)."""
    tags = row[13]
    return make_record(row[0], _STATES[row[1]], _KINDS[row[2]], row[3], row[4], row[5], row[6], row[7],
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


def _insert_runs(records: list[PromiseRecord]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """``(INSERT statement, rows)`` runs in record order (order matters: it breaks created_at ties)."""
    runs: list[tuple[str, list[tuple[Any, ...]]]] = []
    rows: list[tuple[Any, ...]] = []
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


def _file_kind(mode: int) -> str:
    """What a file that is no regular file is, in words (from its ``st_mode``)."""
    for test, kind in ((stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return kind
    return "special file"


def _header_size(header: bytes) -> int:
    """The database size a SQLite file header records, or 0 when the header does not say."""
    page_size = int.from_bytes(header[16:18], "big")
    pages = int.from_bytes(header[28:32], "big")
    # The count is valid only when "version-valid-for" matches the change counter.
    return (65536 if page_size == 1 else page_size) * pages if header[92:96] == header[24:28] else 0


_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def _is_busy(exc: sqlite3.Error) -> bool:
    """Whether SQLite refused because another connection holds a lock (primary code BUSY or LOCKED)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _BUSY_CODES


F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class _ForkGate:
    """Keeps fork() out of SQLite calls in flight in other threads of this process.

    SQLite guards its process-wide state (the file-locking table, the allocator) with mutexes. A
    fork while another thread holds one copies it held into the child, whose first SQLite call then
    waits forever. So every call this module makes passes through the gate, and a fork waits (up to
    a second) until none is in flight; calls that start meanwhile wait for the fork to be done.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # taken directly on the hot path; the condition only when forking
        self._cond = threading.Condition(self._lock)
        self._active = 0
        self._forking = False
        self._depth = threading.local()  # calls nest (a write that waits out a busy file): count the outermost

    def __enter__(self) -> None:
        local = self._depth
        depth = getattr(local, "n", 0)
        local.n = depth + 1
        if depth:
            return
        with self._lock:
            if self._forking:
                self._cond.wait_for(lambda: not self._forking)
            self._active += 1

    def __exit__(self, *exc: object) -> None:
        local = self._depth
        depth = local.n - 1
        local.n = depth
        if depth:
            return
        with self._lock:
            self._active -= 1
            if not self._active and self._forking:  # before_fork waits for the last call to end
                self._cond.notify_all()

    def before_fork(self) -> None:
        self._cond.acquire()
        self._forking = True
        self._cond.wait_for(lambda: self._active == 0, timeout=1.0)
        self._cond.release()

    def after_fork_in_parent(self) -> None:
        with self._cond:
            self._forking = False
            self._cond.notify_all()

    def after_fork_in_child(self) -> None:
        self.__init__()  # type: ignore[misc]  # the child's other threads are gone: a fresh gate


_GATE = _ForkGate()


class _Reads:
    """The reads running on a store's connections now. ``close`` waits for them to end, and refuses
    new ones, before it closes the connections: closing one under a statement another thread is
    running crashes the process (sqlite3 reads the connection it closed). Writes need no count:
    they hold the store's writer lock, which ``close`` takes."""

    __slots__ = ("_cond", "_running", "closed")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._running = 0
        self.closed = False

    def enter(self) -> bool:
        """Count a read starting; ``False`` (nothing counted) once the store is closed."""
        with self._cond:
            if self.closed:
                return False
            self._running += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._running -= 1
            if self.closed and not self._running:
                self._cond.notify_all()

    def close(self, timeout: float) -> bool:
        """Refuse new reads and wait up to ``timeout`` seconds for the running ones; whether they ended."""
        with self._cond:
            self.closed = True
            return self._cond.wait_for(lambda: not self._running, timeout)


def _reading(method: F) -> F:
    """Run a read, retrying while the file is busy; report any SQLite failure as :class:`StoreError`."""

    @functools.wraps(method)
    def wrapper(self: SQLiteStore, *args: Any, **kwargs: Any) -> Any:
        reads = self._reads
        if not reads.enter():
            raise StoreError(f"SQLite store {self.path}: the store is closed")
        try:
            with _GATE:
                try:
                    return method(self, *args, **kwargs)
                except sqlite3.Error as exc:
                    if not _is_busy(exc):
                        raise self._error(exc) from exc
            return self._retry_busy(lambda: method(self, *args, **kwargs))
        finally:
            reads.leave()

    return wrapper  # type: ignore[return-value]


class SQLiteStore(StoreOperations):
    """Promises and leases in one SQLite file (WAL), safe for many threads and processes."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH, *, synchronous: str = "normal",
                 busy_timeout: float = 60.0, read_only: bool = False) -> None:
        """``read_only``: an existing file, for reading: a write through the store is refused. A file
        this process may not write (a read-only file, folder or mount) is opened with SQLite's
        ``mode=ro``, or ``immutable=1`` when no -shm file can be made beside it (then no writer can be
        at work either). A file of an older format, or an empty one, is opened as usual: it must be
        written to be read."""
        synchronous = str(synchronous).lower()
        if synchronous not in SYNCHRONOUS_MODES:
            raise ConfigError(f"sqlite store option synchronous: expected one of "
                              f"{', '.join(SYNCHRONOUS_MODES)}, got {synchronous!r}")
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, (int, float)) or not (
                0 < busy_timeout < math.inf):  # nan passes "<= 0"; inf overflows a wait
            raise ConfigError(f"sqlite store option busy_timeout: expected a finite number of seconds > 0, "
                              f"got {busy_timeout!r}")
        self.path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        self.synchronous = synchronous
        self.busy_timeout = float(busy_timeout)
        self.url = f"sqlite://{self.path}" + ("" if synchronous == "normal" else f"?synchronous={synchronous}")
        self._forget_connections()
        self._closed = False
        self._commits = 0
        self._identity: tuple[int, int] | None = None
        self._owners = OwnerLocks(self.path + "-owners")
        self.read_only = read_only
        self._reader_uri = f"file:{quote(self.path)}?mode=ro"
        self._read_only_uri: str | None = None
        version = self._check_file()
        if read_only and version == FORMAT_VERSION:
            self._identity = _file_identity(self.path)
            # A file this process may write is opened as usual, so the last connection to close still
            # empties the log and removes it with -shm (a read-only one leaves them); query_only refuses writes.
            self._read_only_uri = self._reader_uri if _read_only_because(self.path) else None
        else:
            self.read_only = False
            why = _read_only_because(self.path)
            if why is not None and read_only:  # it must be written to be read
                if version == 0:
                    raise StoreError(f"SQLite store {self.path}: is empty: no run was stored in it yet, and it "
                                     f"cannot be written ({why})")
                raise StoreError(f"SQLite store {self.path}: written by an older vow (store format {version}; this "
                                 f"vow reads {FORMAT_VERSION}), and it cannot be upgraded here ({why}): open it once "
                                 "with this vow where it can be written")
            if why is not None:  # said now, not as the first run's failure at its first write
                raise self._cannot_write(why)
            self._create_schema()
        _open_stores.add(self)

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path}>"

    # -- opening

    def _check_file(self) -> int:
        """Refuse, without writing to it, a file that is not a sound vow store of a known format;
        its format version (0: none yet)."""
        if os.path.isdir(self.path):
            raise StoreError(f"SQLite store {self.path}: is a directory, not a database file")
        try:
            mode = os.stat(self.path).st_mode
            if not stat.S_ISREG(mode):  # SQLite calls each of these a "disk I/O error"
                raise StoreError(f"SQLite store {self.path}: is a {_file_kind(mode)}, not a database file")
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            if self.read_only:
                raise StoreError(f"SQLite store {self.path}: the file does not exist") from None
            try:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
            except OSError as exc:
                raise StoreError(f"SQLite store {self.path}: cannot create its directory: {exc}") from None
            return 0
        if size == 0:
            return 0  # an empty file is an empty database (SQLite's own rule)
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
        return int(version)

    def _read_format(self) -> tuple[int, set[str]]:
        """The format version and table names, read through a read-only connection (writes nothing)."""
        try:
            return self._read_format_through(self._reader_uri)
        except sqlite3.Error as exc:
            # In WAL mode even a reader needs the -shm file beside the database, and makes it when it
            # is missing: in a folder it may not write (a read-only mount), it cannot.
            if not getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
                raise
            if _wal_bytes(self.path) and not os.path.exists(self.path + "-shm"):
                raise StoreError(f"SQLite store {self.path}: its log {self.path}-wal holds writes not yet in the "
                                 "file, and without its -shm file SQLite cannot read them in a folder it may not "
                                 "write: copy the file and its -wal to a folder you may write") from None
            if _read_only_because(self.path) is None:
                raise
            # No -shm and no log to read, in a folder no one may write: no writer can be at work
            # (it would need both), so the file may be read as it is, without locks.
            uri = f"file:{quote(self.path)}?mode=ro&immutable=1"
            found = self._read_format_through(uri)
            self._reader_uri = uri
            return found

    def _read_format_through(self, uri: str) -> tuple[int, set[str]]:
        con = sqlite3.connect(uri, uri=True, timeout=self.busy_timeout)
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
                if con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                    # Only before the file's first write (the switch to WAL is one): lets `vow prune`
                    # give pages back to the disk.
                    con.execute("PRAGMA auto_vacuum = INCREMENTAL")
                con.execute("PRAGMA journal_mode = WAL")
            if con.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION and not _missing_indexes(con):
                return  # the usual case: nothing to write, so no need to wait for the write lock
            self._begin(con)
            try:
                version = con.execute("PRAGMA user_version").fetchone()[0]
                if version > FORMAT_VERSION:  # another process got there first with a newer vow
                    raise StoreError(f"SQLite store {self.path}: written by a newer vow (store format "
                                     f"{version}; this vow supports up to {FORMAT_VERSION})")
                for step in range(version + 1, FORMAT_VERSION + 1):
                    for statement in _MIGRATIONS[step]:
                        con.execute(statement)
                for statement in _ADDED_INDEXES.values():
                    con.execute(statement)
                con.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
                con.execute("COMMIT")
            except BaseException:
                self._rollback(con)
                raise

        try:
            try:
                with _GATE:
                    setup()
            except sqlite3.Error as exc:
                if not _is_busy(exc):
                    raise self._error(exc) from exc
                self._retry_busy(setup)
            self._identity = _file_identity(self.path)
        except BaseException:
            self.close()
            raise

    def _con(self) -> sqlite3.Connection:
        try:
            con: sqlite3.Connection = self._local.con
            return con
        except AttributeError:
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"SQLite store {self.path}: the store is closed")
        try:
            uri = self._read_only_uri
            con = sqlite3.connect(uri or self.path, uri=uri is not None, timeout=self.busy_timeout,
                                  isolation_level=None, check_same_thread=False, cached_statements=256)
            if self.read_only:
                con.execute("PRAGMA query_only = 1")
            con.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            # Checkpoints are made by the checkpointer thread and, to start a long log over, by
            # _committed; SQLite's own would copy the whole log on the engine's thread every 1,000 pages
            con.execute("PRAGMA wal_autocheckpoint = 0")
            con.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            # From now on no SQLite busy handler: a busy write lock is waited for by _begin, anything
            # else busy by _retry_busy (every statement on it runs in _write, _reading or _busy_safe)
            con.execute("PRAGMA busy_timeout = 0")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        with self._connections_lock:
            self._connections.append(con)
        self._local.con = con
        return con

    def _forget_connections(self) -> None:
        """Fresh connections, locks and checkpointer: at the start, and in a forked child (the
        parent's are not the child's to use)."""
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        # Writers of this process take turns here before they ask SQLite for the write lock: one
        # waiting for another thread of this process (the engine for a claim, say) is woken the
        # moment it is done, instead of polling the file lock. Other processes are polled (_begin).
        self._writer = threading.RLock()
        self._reads = _Reads()
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_wanted = threading.Event()

    def _committed(self, con: sqlite3.Connection) -> None:
        """Count a commit on ``con``; every CHECKPOINT_EVERY commits, have the log copied into the file.

        The checkpointer thread copies it in the background (a passive checkpoint, beside the
        commits). Against a log that keeps getting commits that copy never reaches the end, so the
        log would never start over. So once the log passes WAL_RESTART_BYTES, the connection that
        just committed finishes the copy itself: in this process nobody commits meanwhile, so it
        reaches the end (the background copies left it little to do), and the next commit starts
        the log over in place. The file is rewritten, not truncated and grown again, which costs
        more than the copy. When it keeps falling short (other processes write or read meanwhile),
        the checkpointer thread truncates the log once it passes WAL_TRUNCATE_BYTES.
        """
        self._commits += 1
        if self._checkpointer is None:
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="vow-sqlite-checkpoint",
                                                  daemon=True)
            self._checkpointer.start()
        if self._commits % CHECKPOINT_EVERY == 0:
            log = _wal_bytes(self.path)
            if log <= WAL_RESTART_BYTES or (not _checkpoint(con) and log > WAL_TRUNCATE_BYTES):
                self._checkpoint_wanted.set()

    def _checkpoint_loop(self) -> None:
        """Copy the log into the file in the background: when asked, and each second while commits come.

        A passive checkpoint copies what it can without waiting for anyone. A log that other
        processes kept from starting over, once it passes WAL_TRUNCATE_BYTES, gets a TRUNCATE
        checkpoint: it holds new writers back (a few milliseconds) until it has copied everything,
        then empties the log, so it stays bounded whatever the load.
        """
        with _GATE:
            con = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        done = 0
        try:
            while not self._closed:
                self._checkpoint_wanted.wait(CHECKPOINT_IDLE_SECONDS)
                self._checkpoint_wanted.clear()
                if self._closed or self._commits == done:
                    continue
                done = self._commits
                with _GATE:
                    _checkpoint(con, full=_wal_bytes(self.path) > WAL_TRUNCATE_BYTES)
        finally:
            with _GATE:
                con.close()

    def close(self) -> None:
        """Empty the log into the file (when no other process is using it), close every connection
        this store opened; the store is unusable afterwards."""
        self._closed = True
        self._checkpoint_wanted.set()
        checkpointer = self._checkpointer
        if checkpointer is not None and checkpointer is not threading.current_thread():
            checkpointer.join(self.busy_timeout)  # its checkpoint and ours must not race
        self._owners.close()
        _open_stores.discard(self)
        # No connection may be closed under a statement another thread runs (the process would
        # crash): wait for the reads and the write running now, and let no new one start
        reads_ended = self._reads.close(self.busy_timeout)
        if not self._writer.acquire(timeout=self.busy_timeout) or not reads_ended:
            _log.warning("SQLite store %s: closed while another thread still used it (for %g s); its "
                         "connections are left open", self.path, self.busy_timeout)
            return
        try:
            with self._connections_lock:
                connections, self._connections = self._connections, []
            self._local = threading.local()
            with _GATE:
                if connections and self._commits:
                    con = connections[0]
                    con.execute(f"PRAGMA busy_timeout = {int(CLOSE_CHECKPOINT_SECONDS * 1000)}")
                    if not _checkpoint(con, full=True) and _wal_bytes(self.path):
                        _log.info("SQLite store %s: the log was not emptied at close (another process is "
                                  "using the file; it will)", self.path)
                for con in connections:
                    try:
                        con.close()
                    except sqlite3.Error:
                        pass
        finally:
            self._writer.release()

    # -- transactions and errors

    def _begin(self, con: sqlite3.Connection) -> None:
        """Take the write lock (``BEGIN IMMEDIATE``), waiting up to ``busy_timeout`` seconds.

        Another connection's commit holds the lock for tens of microseconds, so a writer that finds
        it taken looks again after 50 µs, then less and less often (at most every 2 ms); SQLite's
        own busy handler would sleep a whole millisecond first (this connection has none)."""
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if not _is_busy(exc):
                raise self._error(exc) from exc
            self._retry_busy(lambda: con.execute("BEGIN IMMEDIATE"), first=LOCK_FIRST_WAIT, most=LOCK_MAX_WAIT,
                             growth=1.5)

    def _retry_busy(self, action: Callable[[], Any], *, first: float = 0.001, most: float = 0.05,
                    growth: float = 2.0) -> Any:
        """Repeat ``action`` while SQLite reports the file busy, up to ``busy_timeout``: after ``first``
        seconds, then waits growing by ``growth`` up to ``most`` (each jittered)."""
        deadline = time.monotonic() + self.busy_timeout
        delay = first
        while True:
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * growth, most)
            try:
                with _GATE:
                    return action()
            except sqlite3.Error as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise self._error(exc) from exc

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
        if _is_busy(exc):  # a busy error reaches here only once busy_timeout is spent
            return StoreError(f"SQLite store {self.path}: still locked by another connection after "
                              f"{self.busy_timeout:g} s (busy_timeout; sqlite:PATH?busy_timeout=SECONDS waits longer): "
                              f"{exc}")
        why = _read_only_because(self.path) if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")) else None
        if why is not None:
            return self._cannot_write(why)
        if name.startswith("SQLITE_READONLY") and self.read_only:  # the file may be written: the URL said not to
            return StoreError(f"SQLite store {self.path}: opened read-only (read_only=true), so it takes no writes: "
                              "drop read_only=true from the store URL to write to it")
        if name == "SQLITE_IOERR_SHMSIZE":  # SQLite's own words, "disk I/O error", do not say the disk is full
            return StoreError(f"SQLite store {self.path}: no room on its disk for {os.path.basename(self.path)}-shm, "
                              f"the file SQLite shares between readers: free some space ({exc})")
        return StoreError(f"SQLite store {self.path}: {exc}")

    def _cannot_write(self, why: str) -> StoreError:
        readable = os.path.isfile(self.path) and os.path.getsize(self.path) > 0
        return StoreError(f"SQLite store {self.path}: cannot be written ({why})"
                          + (": vow ls and vow show can read it; to change it" if readable else ": to store runs")
                          + ", give a store you may write (--store, $VOW_STORE)")

    # -- writes

    def apply(self, batch: Batch) -> BatchResult:
        """Apply ``batch`` in one transaction: fences, creates, settles, attempts; all or nothing."""
        creates, settles = batch.creates, batch.settles
        if not (creates or settles or batch.attempts or batch.fences):
            return BatchResult()
        for s in settles:
            if s.state is _PENDING:
                raise ValueError(f"cannot settle {s.id!r} as pending")
        refuse_unstorable_batch(batch)
        # Rows are made before the write lock is taken: other writers (workers on this file) wait
        # for it as long as it is held.
        inserts = _insert_runs(creates) if creates else []
        return self._write(lambda con: self._apply_in(con, batch, inserts))

    def _apply_in(self, con: sqlite3.Connection, batch: Batch,
                  inserts: list[tuple[str, list[tuple[Any, ...]]]]) -> BatchResult:
        fenced = bool(batch.fences)
        settled_parents: dict[str, PromiseRecord] = {}
        version = self._check_fences(con, batch.fences) if fenced else 0
        existing: dict[str, PromiseRecord] = {}
        conflicts: dict[str, PromiseRecord] = {}
        unchanged: set[str] = set()  # settles that repeated a stored outcome
        creates, settles = batch.creates, batch.settles
        created_ids: list[str] = []
        if creates:
            inserted = 0
            for statement, rows in inserts:
                inserted += con.executemany(statement, rows).rowcount
            if inserted < len(creates):
                existing, created_ids = self._existing(con, creates, inserted)
            elif batch.outside:
                created_ids = [r.id for r in creates]
            if fenced:  # before this batch's settles: the parents' states as they were stored
                settled_parents = self._settled_parents(
                    con, [r for r in creates if r.id not in existing] if existing else creates, batch.fences)
        if settles:
            now = time.time()
            if batch.outside or (len(settles) > 1 and len({s.id for s in settles}) < len(settles)):
                # exact, one by one: a client's write (the feed gets what changed), or an id settled twice
                conflicts, unchanged = self._settle_in_order(con, settles, now, time_out=not fenced)
            else:  # each id once, so their order does not matter: a statement per kind of settle
                if len(settles) == 1:  # a sequential step's round: one execute, no list or generator (2 % of a step)
                    s = settles[0]
                    if s.state is _RESOLVED or s.state is _REJECTED:
                        changed = con.execute(_SETTLE_BEFORE_DEADLINE,
                                              (s.state._value_, s.value, s.settled_at, s.id, now)).rowcount
                    else:
                        changed = con.execute(_SETTLE, (s.state._value_, s.value, s.settled_at, s.id)).rowcount
                else:
                    others = [s for s in settles if s.state is not _RESOLVED and s.state is not _REJECTED]
                    changed = 0
                    if len(others) < len(settles):  # rows made as they are bound: a large round keeps none
                        changed = con.executemany(_SETTLE_BEFORE_DEADLINE, (
                            (s.state._value_, s.value, s.settled_at, s.id, now) for s in settles
                            if s.state is _RESOLVED or s.state is _REJECTED)).rowcount
                    if others:
                        changed += con.executemany(_SETTLE, [(s.state._value_, s.value, s.settled_at, s.id)
                                                             for s in others]).rowcount
                if changed < len(settles):
                    conflicts, unchanged = self._conflicts(con, settles, now, time_out=not fenced)
        if fenced:
            conflicts.update(settled_parents)
            if conflicts:
                raise conflict_error(conflicts)
        if batch.attempts:
            con.executemany(_ATTEMPT, [(n, i) for i, n in batch.attempts.items()])
        if batch.outside:
            self._announce(con, creates, created_ids, [s for s in settles if s.id not in unchanged], conflicts)
        if fenced:
            self._remember_fences(con, batch, version)
        return make_batch_result(existing, conflicts)

    def _settled_parents(self, con: sqlite3.Connection, creates: list[PromiseRecord],
                         fences: dict[str, int]) -> dict[str, PromiseRecord]:
        """Parents of ``creates`` that were settled before this batch (a fenced root's own state was
        checked already; a parent this batch creates was not stored before it)."""
        parents = {r.parent for r in creates if r.parent is not None and r.parent not in fences}
        if parents:
            parents.difference_update(r.id for r in creates)
        if not parents:
            return {}
        rows = self._select_ids(con, _COLUMNS, list(parents))
        return {row[0]: record for row in rows if (record := _record(row)).settled}

    def _announce(self, con: sqlite3.Connection, creates: list[PromiseRecord], created_ids: list[str],
                  settles: list[Settle], conflicts: dict[str, PromiseRecord]) -> None:
        """Append this outside write to the change feed, keeping its last FEED_WINDOW entries."""
        roots = {r.id: r.root for r in creates}
        settled = [s.id for s in settles if s.id not in conflicts]
        missing = [i for i in settled if i not in roots]
        if missing:
            roots.update(self._select_ids(con, "id, root", missing))
        entries = [(roots[i], i) for i in dict.fromkeys(created_ids + settled) if i in roots]
        if not entries:
            return
        con.executemany("INSERT INTO changes (root, id) VALUES (?, ?)", entries)
        last = con.execute("SELECT max(seq) FROM changes").fetchone()[0]
        con.execute("DELETE FROM changes WHERE seq <= ?", (last - FEED_WINDOW,))

    def _check_fences(self, con: sqlite3.Connection, fences: dict[str, int]) -> int:
        """Every fenced root still has the writer's token and is not settled (one query per chunk).

        Roots that this connection's last fenced commit found so, with the same token, are not read
        again when nothing was written since: SQLite's ``data_version`` is unchanged (no other
        connection, in this process or another, committed) and so is this connection's count of
        changed rows (it wrote nothing else). Returns the ``data_version`` read."""
        version: int = con.execute("PRAGMA data_version").fetchone()[0]
        known = getattr(self._local, "fenced", None)
        if known is not None and known[0] == version and known[1] == con.total_changes:
            verified = known[2]
            if fences.items() <= verified.items():  # every root checked with this token: the usual commit
                return version
            fences = {root: token for root, token in fences.items() if verified.get(root) != token}
        if len(fences) == 1:
            [(root, token)] = fences.items()
            row = con.execute(_FENCE_ONE, (root,)).fetchone()
            if row is not None and row[0] == token and (row[1] is None or row[1] == "pending"):
                return version
            raise lease_lost_error([root])
        else:
            current = {}
            roots = list(fences)
            for start in range(0, len(roots), _CHUNK):
                chunk = roots[start:start + _CHUNK]
                for root, token, state in con.execute(
                        f"SELECT l.root, l.token, p.state FROM leases l LEFT JOIN promises p ON p.id = l.root "
                        f"WHERE l.root IN ({','.join('?' * len(chunk))})", chunk):
                    current[root] = (token, state)
        lost = sorted(root for root, token in fences.items()
                      if (row := current.get(root)) is None or row[0] != token or row[1] not in (None, "pending"))
        if lost:
            raise lease_lost_error(lost)
        return version

    def _remember_fences(self, con: sqlite3.Connection, batch: Batch, version: int) -> None:
        """At the end of a fenced transaction: its roots hold their tokens and are pending, as the
        next fenced commit of this connection may assume if nothing is written meanwhile (not a root
        this batch created or settled: its state is no longer the one checked).

        Kept even if the COMMIT then fails: the rollback leaves the checked state as it was, and
        ``total_changes`` still counts the rows written and rolled back."""
        verified = dict(batch.fences)  # a copy: the caller may use its batch again
        # Plain loops: on Python 3.11 they took 0.7 µs for a step's batch (and 107 µs for 1,000 creates
        # and settles) where a set of the ids gathered by map(attrgetter) took 1.9 µs (and 172 µs).
        for settle in batch.settles:
            verified.pop(settle.id, None)
        for record in batch.creates:
            verified.pop(record.id, None)
        self._local.fenced = (version, con.total_changes, verified)

    def _existing(self, con: sqlite3.Connection, creates: list[PromiseRecord], inserted: int
                  ) -> tuple[dict[str, PromiseRecord], list[str]]:
        """The stored records of the creates that were ignored because their id existed, and the
        ids this batch did create."""
        # SQLite gives a new row the rowid max(rowid) + 1, and we hold the write lock: the rows
        # this batch inserted are exactly the ``inserted`` highest rowids.
        first_new = (con.execute("SELECT max(rowid) FROM promises").fetchone()[0] or 0) - inserted + 1
        stored = {row[1]: (row[0], row[1:]) for row in self._select_ids(con, "rowid, " + _COLUMNS,
                                                                         [r.id for r in creates])}
        existing = {}
        created = []
        seen: set[str] = set()
        for r in creates:
            if r.id not in stored:  # OR IGNORE also skips a row that breaks NOT NULL
                raise ValueError(f"cannot store promise {r.id!r}: a required field is None ({r!r})")
            rowid, row = stored[r.id]
            if rowid < first_new or r.id in seen:  # there before, or created earlier in this batch
                existing[r.id] = _record(row)
            else:
                created.append(r.id)
            seen.add(r.id)
        return existing, created

    def _conflicts(self, con: sqlite3.Connection, settles: list[Settle], now: float, *,
                   time_out: bool) -> tuple[dict[str, PromiseRecord], set[str]]:
        """Settles that changed nothing: same outcome (fine), another outcome or a passed deadline (conflict;
        with ``time_out``, the promise is timed out here), no such id (error). Read after the batch's own
        updates, so the set of unchanged ids is not exact: only :meth:`_settle_in_order`'s is."""
        stored = {row[0]: _record(row) for row in self._select_ids(con, _COLUMNS, [s.id for s in settles])}
        conflicts = {}
        unchanged = set()
        for s in settles:
            record = stored.get(s.id)
            if record is None:
                raise PromiseNotFoundError(f"cannot settle {s.id!r}: no promise with that id")
            if record.state is _PENDING:  # refused by the deadline rule
                text = timeout_error_text(record)
                if time_out:
                    con.execute(_SETTLE, (State.TIMEDOUT.value, text, s.settled_at, record.id))
                record = stored[s.id] = attrs.evolve(record, state=State.TIMEDOUT, value=text,
                                                     settled_at=s.settled_at)
                conflicts[s.id] = record
            elif not same_outcome(record, s):
                conflicts[s.id] = record
            else:
                unchanged.add(s.id)
        return conflicts, unchanged

    def _settle_in_order(self, con: sqlite3.Connection, settles: list[Settle], now: float, *,
                         time_out: bool) -> tuple[dict[str, PromiseRecord], set[str]]:
        """Apply ``settles`` one by one, each seeing the ones before it (a batch that settles an id twice)."""
        conflicts: dict[str, PromiseRecord] = {}
        unchanged: set[str] = set()
        for s in settles:
            row = con.execute(_SELECT + " WHERE id = ?", (s.id,)).fetchone()
            if row is None:
                raise PromiseNotFoundError(f"cannot settle {s.id!r}: no promise with that id")
            record = _record(row)
            if record.state is not _PENDING:
                if not same_outcome(record, s):
                    conflicts[s.id] = record
                elif s.id not in conflicts:
                    unchanged.add(s.id)
            elif past_deadline(record, s, now):
                text = timeout_error_text(record)
                if time_out:
                    con.execute(_SETTLE, (State.TIMEDOUT.value, text, s.settled_at, s.id))
                conflicts[s.id] = attrs.evolve(record, state=State.TIMEDOUT, value=text, settled_at=s.settled_at)
            else:
                con.execute(_SETTLE, (s.state._value_, s.value, s.settled_at, s.id))
        return conflicts, unchanged

    @staticmethod
    def _select_ids(con: sqlite3.Connection, columns: str, ids: list[str], *, table: str = "promises",
                    key: str = "id") -> list[tuple[Any, ...]]:
        """``columns`` of the rows of ``table`` whose ``key`` is one of ``ids`` (a query per chunk)."""
        rows: list[tuple[Any, ...]] = []
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows += con.execute(f"SELECT {columns} FROM {table} WHERE {key} IN ({marks})", chunk).fetchall()
        return rows

    # -- reads

    @_reading
    def get(self, id: str) -> PromiseRecord | None:
        """The record with ``id``, or ``None``."""
        if not storable(id):  # sqlite3 cannot even pass it as a parameter; it was never stored
            return None
        row = self._con().execute(_SELECT + " WHERE id = ?", (id,)).fetchone()
        return None if row is None else _record(row)

    @_reading
    def get_many(self, ids: Iterable[str]) -> dict[str, PromiseRecord]:
        """The records among ``ids`` that exist, by id (one consistent snapshot)."""
        ids = [i for i in ids if storable(i)]
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
        if not storable(parent):
            return []
        rows = self._con().execute(_SELECT + " WHERE parent = ? ORDER BY created_at, rowid", (parent,))
        return [_record(row) for row in rows]

    @_reading
    def subtree(self, id: str) -> list[PromiseRecord]:
        """``id``'s record and every record under it, oldest first: one query through the index of parents."""
        if not storable(id):
            return []
        rows = self._con().execute(
            "WITH RECURSIVE under(id) AS (SELECT ? UNION ALL SELECT p.id FROM promises p JOIN under ON p.parent = "
            f"under.id) {_SELECT} WHERE id IN under ORDER BY created_at, rowid", (id,))
        return [_record(row) for row in rows]

    @_reading
    def tree(self, root: str) -> list[PromiseRecord]:
        """Every record whose root is ``root`` (the root included), oldest first."""
        if not storable(root):
            return []
        rows = self._con().execute(_SELECT + " WHERE root = ? ORDER BY created_at, rowid", (root,))
        return [_record(row) for row in rows]

    @_reading
    def trees(self, roots: Sequence[str]) -> dict[str, list[PromiseRecord]]:
        """The trees of several roots, read in one snapshot (a worker resuming the runs it claimed)."""
        roots = [root for root in roots if storable(root)]
        con = self._con()
        found: dict[str, list[PromiseRecord]] = {}
        con.execute("BEGIN")
        try:
            for at in range(0, len(roots), _CHUNK):
                chunk = roots[at:at + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                for row in con.execute(f"{_SELECT} WHERE root IN ({marks}) ORDER BY root, created_at, rowid", chunk):
                    record = _record(row)
                    found.setdefault(record.root, []).append(record)
        finally:
            self._rollback(con)
        return found

    @_reading
    def search(self, *, state: State | None = None, kind: Kind | None = None, root: str | None = None,
               roots_only: bool = False, tag: tuple[str, str] | None = None,
               limit: int = 1000) -> list[PromiseRecord]:
        """Records matching every given filter, newest first, at most ``limit``."""
        if limit <= 0 or not all(map(storable, (root or "", *(tag or ())))):
            return []
        where, params = search_conditions("?", state=state, kind=kind, root=root, roots_only=roots_only)
        if tag is not None:
            key, value = tag
            where.append("EXISTS (SELECT 1 FROM json_each(promises.tags) WHERE key = ? AND value = ?)")
            params += [key, value]
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._con().execute(sql + " ORDER BY created_at DESC, rowid DESC LIMIT ?", (*params, limit))
        return [_record(row) for row in rows]

    # -- leases

    def now(self) -> float:
        """The store's clock: this machine's (every process sharing the file runs on it)."""
        return time.time()

    @_reading
    def changes(self, after: int | None) -> ChangeFeed:
        """Outside writes after sequence number ``after``; ``None``: no entries, just the current number."""
        con = self._con()
        if after is None:
            return ChangeFeed(con.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0])
        rows = con.execute("SELECT seq, root, id FROM changes WHERE seq > ? ORDER BY seq", (after,)).fetchall()
        if not rows:
            return ChangeFeed(after)
        complete = rows[0][0] == after + 1 or con.execute(
            "SELECT min(seq) FROM changes").fetchone()[0] <= after + 1
        return ChangeFeed(rows[-1][0], [(root, pid) for _, root, pid in rows], complete)

    def hold_owner(self, owner: str) -> bool:
        """Hold ``owner``'s lock file beside the store (``<file>-owners/``) while this process lives."""
        held = self._owners.hold(owner)
        if held:
            self._owners.sweep(self._holds_leases)
        return held

    @_reading
    def _holds_leases(self, owner: str) -> bool:
        return self._con().execute("SELECT 1 FROM leases WHERE owner = ? LIMIT 1", (owner,)).fetchone() is not None

    def release_owner(self, owner: str) -> None:
        """Drop ``owner``'s lock file: its leases may be taken at once."""
        self._owners.release(owner)

    def owner_alive(self, owner: str) -> bool | None:
        """``True`` while ``owner`` holds its lock file, ``False`` once it is unlocked, else ``None``."""
        return self._owners.alive(owner)

    def _owners_by_liveness(self, con: sqlite3.Connection) -> tuple[list[str], list[str]]:
        """``(alive, dead)`` among the owners holding leases now (few: one per live worker process)."""
        alive, dead = [], []
        for (owner,) in con.execute("SELECT DISTINCT owner FROM leases WHERE owner != ''"):
            state = self._owners.alive(owner)
            if state is True:
                alive.append(owner)
            elif state is False:
                dead.append(owner)
        return alive, dead

    @_reading
    def claimable(self, *, limit: int = 100, now: float | None = None) -> list[PromiseRecord]:
        """Pending, unparked root workflows whose lease is free, expired or held by a dead owner; oldest first."""
        now = time.time() if now is None else now
        if limit <= 0:
            return []
        con = self._con()
        alive, dead = self._owners_by_liveness(con)
        expired = "l.expires_at <= ?" + (f" AND l.owner NOT IN ({','.join('?' * len(alive))})" if alive else "")
        rows = con.execute(
            f"SELECT {', '.join('p.' + c for c in _COLUMNS.split(', '))} "
            "FROM promises p INDEXED BY promises_pending_roots LEFT JOIN leases l ON l.root = p.id "
            "WHERE p.state = 'pending' AND p.parent IS NULL AND p.kind = 'workflow' "
            f"AND (l.root IS NULL OR (l.parked IS NULL AND (l.owner = '' OR ({expired})"
            + (f" OR l.owner IN ({','.join('?' * len(dead))})" if dead else "") + "))) "
            "ORDER BY p.created_at, p.rowid LIMIT ?", (now, *alive, *dead, limit))
        return [_record(row) for row in rows]

    def claim(self, root: str, owner: str, ttl: float, *, now: float | None = None,
              max_recoveries: int | None = None) -> Lease | None:
        """Take (or renew) the lease on ``root`` for ``ttl`` seconds; ``None`` if held by another owner or parked."""
        return self.claim_many([root], owner, ttl, now=now, max_recoveries=max_recoveries).get(root)

    def claim_many(self, roots: Sequence[str], owner: str, ttl: float, *, now: float | None = None,
                   max_recoveries: int | None = None) -> dict[str, Lease]:
        """Claim the leases on ``roots`` in one transaction; the ones taken, by root."""
        if not owner:
            raise ValueError("a lease owner must not be empty")
        if not roots:
            return {}
        refuse_unstorable(roots, LEASE_ROOT)
        now = time.time() if now is None else now

        unique = list(dict.fromkeys(roots))

        def claim_all(con: sqlite3.Connection) -> dict[str, Lease]:
            # One read of every lease and one statement per kind of write, not two statements per
            # root: the write lock, which other workers wait for, is held a fraction as long.
            current = {row[0]: Lease(*row) for row in self._select_ids(
                con, f"root, {_LEASE_COLUMNS}", unique, table="leases", key="root")}
            liveness: dict[str, bool | None] = {}  # asked once per owner

            def alive(other: str) -> bool | None:
                if other not in liveness:
                    liveness[other] = self._owners.alive(other)
                return liveness[other]

            taken = {}
            writes: dict[str, list[tuple[Any, ...]]] = {}
            for root in unique:
                step = _claim_step(root, current.get(root), owner, ttl, now, max_recoveries, alive)
                if step is not None:
                    statement, params, lease = step
                    writes.setdefault(statement, []).append(params)
                    if lease is not None:
                        taken[root] = lease
            for statement, rows in writes.items():  # each root once: the order of the statements is free
                con.executemany(statement, rows)
            return taken

        return self._write(claim_all)

    def renew(self, leases: Sequence[Lease], ttl: float, *, now: float | None = None) -> list[Lease]:
        """Extend the leases still held (same owner and token); the ones lost are left out."""
        now = time.time() if now is None else now
        leases = [lease for lease in leases if storable(lease.root)]  # one that is not was never held
        if not leases:
            return []

        def renew_in(con: sqlite3.Connection) -> list[Lease]:
            kept = []
            for lease in leases:
                cur = con.execute("UPDATE leases SET expires_at = ? WHERE root = ? AND owner = ? AND token = ? "
                                  "AND owner != ''", (now + ttl, lease.root, lease.owner, lease.token))
                if cur.rowcount:
                    kept.append(attrs.evolve(lease, expires_at=now + ttl))
            return kept

        return self._write(renew_in)

    def release(self, lease: Lease) -> None:
        """Give up ``lease`` if still held; its token is kept so tokens only grow."""
        self.release_many([lease])

    def release_many(self, leases: Sequence[Lease]) -> None:
        """Release ``leases`` in one transaction (each only if still held; tokens are kept)."""
        leases = [lease for lease in leases if storable(lease.root)]  # one that is not was never held
        if leases:
            self._write(lambda con: con.executemany(_RELEASE, [(x.root, x.owner, x.token) for x in leases]))

    @_reading
    def lease(self, root: str) -> Lease | None:
        """The current lease row for ``root`` (held or not), or ``None``."""
        if not storable(root):
            return None
        row = self._con().execute(f"SELECT {_LEASE_COLUMNS} FROM leases WHERE root = ?", (root,)).fetchone()
        return None if row is None else Lease(root, *row)

    @_reading
    def parked_leases(self) -> list[Lease]:
        """Every parked lease, ordered by root: through the index of them (:data:`_ADDED_INDEXES`)
        where the file has it, else by reading every lease (a file no store here could write yet)."""
        rows = self._con().execute(f"SELECT root, {_LEASE_COLUMNS} FROM leases WHERE parked IS NOT NULL "
                                   "ORDER BY root")
        return [Lease(*row) for row in rows]

    def unpark(self, root: str) -> bool:
        """Make a parked root claimable again, its recovery count reset."""
        if not storable(root):
            return False
        return bool(self._write(lambda con: con.execute(
            "UPDATE leases SET parked = NULL, recoveries = 0, owner = '', expires_at = 0 "
            "WHERE root = ? AND parked IS NOT NULL", (root,)).rowcount))

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction and commit it, unless the file was
        deleted or replaced under this process (then nothing is committed: :class:`StoreError`)."""
        with _GATE, self._writer:
            return self._write_now(work)

    def _write_now(self, work: Callable[[sqlite3.Connection], T]) -> T:
        con = self._con()
        self._begin(con)
        try:
            result = work(con)
            self._check_identity()
            con.execute("COMMIT")
            self._committed(con)
        except sqlite3.Error as exc:
            self._rollback(con)
            raise self._error(exc) from exc
        except BaseException:
            self._rollback(con)
            raise
        return result

    def _check_identity(self) -> None:
        """Refuse to commit into a file that no longer is the one at ``path`` (deleted or replaced):
        the commit would land in an inode no other process sees."""
        if self._identity is not None and _file_identity(self.path) != self._identity:
            raise StoreError(f"SQLite store {self.path}: the file was deleted or replaced while this process "
                             "had it open; stopping so nothing is written where no other process can see it. "
                             "Restore the file (or start again with a new store)")

    # -- retention (added for `vow prune`; see vow.retention) ------------------------------------

    TRUNCATE_WAIT_SECONDS = 2.0
    """How long a prune's last checkpoint waits for readers (holding writers back) before giving up."""

    def delete_runs(self, roots: Sequence[str], *, settled_before: float) -> dict[str, int]:
        """Delete each run whose root promise settled before ``settled_before``: its whole tree and
        its lease, in one transaction. Returns the records deleted per run deleted."""
        unique = [root for root in dict.fromkeys(roots) if storable(root)]
        if not unique:
            return {}

        def delete(con: sqlite3.Connection) -> dict[str, int]:
            deleted: dict[str, int] = {}
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start:start + _CHUNK]
                # Checked again under the write lock: a settled root never becomes pending again,
                # so a run chosen here is finished for good.
                eligible = [row[0] for row in con.execute(
                    f"SELECT id FROM promises WHERE id IN ({','.join('?' * len(chunk))}) AND parent IS NULL "
                    "AND state != 'pending' AND settled_at < ?", (*chunk, settled_before))]
                if not eligible:
                    continue
                marks = ",".join("?" * len(eligible))
                deleted.update(con.execute(f"SELECT root, count(*) FROM promises WHERE root IN ({marks}) "
                                           "GROUP BY root", eligible).fetchall())
                con.execute(f"DELETE FROM promises WHERE root IN ({marks})", eligible)
                con.execute(f"DELETE FROM leases WHERE root IN ({marks})", eligible)
            return deleted

        return self._write(delete)

    def prune(self, *, before: float, states: Collection[State] = FINISHED_STATES, dry_run: bool = False,
              compact: bool = False) -> PruneResult:
        """Delete the runs whose root settled in ``states`` before ``before`` (see :mod:`vow.retention`),
        a batch of runs per transaction; then give the space back and truncate the log.

        Space: a file with incremental vacuum on (``PRAGMA auto_vacuum``) hands its free pages back
        to the disk after every prune. A file made without it keeps them for reuse, unless
        ``compact``: then it is rewritten once (``VACUUM``) with incremental vacuum on, which
        blocks writers for as long as the rewrite takes.
        """
        states = frozenset(State(s) for s in states)
        if State.PENDING in states:
            raise ValueError("a pending run is never pruned")
        bytes_before = self._disk_bytes()
        candidates = self._prune_candidates(before, states)
        removed: list[PrunedRun] = []
        for start in range(0, len(candidates), BATCH_RUNS):
            chunk = candidates[start:start + BATCH_RUNS]
            ids = [row[0] for row in chunk]
            counts = self._tree_sizes(ids) if dry_run else self.delete_runs(ids, settled_before=before)
            removed += [PrunedRun(rid, _STATES[state], func, settled_at, counts[rid])
                        for rid, state, func, settled_at in chunk if rid in counts]
        if dry_run:
            return PruneResult(tuple(removed), True, bytes_before, bytes_before, self._free_bytes())
        compacted = self._give_space_back(compact)
        truncated = self._truncate_log()
        return PruneResult(tuple(removed), False, bytes_before, self._disk_bytes(), self._free_bytes(), compacted,
                           truncated)

    @_reading
    def _prune_candidates(self, before: float, states: frozenset[State]) -> list[tuple[Any, ...]]:
        marks = ",".join("?" * len(states))
        return self._con().execute(
            f"SELECT id, state, func, settled_at FROM promises WHERE parent IS NULL AND state IN ({marks}) "
            "AND settled_at < ? ORDER BY settled_at, id", (*sorted(s.value for s in states), before)).fetchall()

    @_reading
    def _tree_sizes(self, roots: list[str]) -> dict[str, int]:
        sizes: dict[str, int] = {}
        con = self._con()
        for start in range(0, len(roots), _CHUNK):
            chunk = roots[start:start + _CHUNK]
            sizes.update(con.execute(f"SELECT root, count(*) FROM promises WHERE root IN "
                                     f"({','.join('?' * len(chunk))}) GROUP BY root", chunk).fetchall())
        return sizes

    def _disk_bytes(self) -> int:
        """The database file plus its write-ahead log, in bytes."""
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))

    @_reading
    def _free_bytes(self) -> int:
        con = self._con()
        pages = int(con.execute("PRAGMA freelist_count").fetchone()[0])
        return pages * int(con.execute("PRAGMA page_size").fetchone()[0])

    def _give_space_back(self, compact: bool) -> bool:
        """Hand free pages back to the disk where the file allows it; ``compact``: make it allow it.
        Returns whether the file was rewritten."""
        mode = self._auto_vacuum()
        if mode == 2:  # incremental
            # executescript steps the pragma to its end (execute() would free a single page)
            self._busy_safe(lambda con: con.executescript("BEGIN IMMEDIATE; PRAGMA incremental_vacuum; COMMIT;"))
            return False
        if mode == 0 and compact:
            # The mode takes effect with the VACUUM, which rewrites the whole file.
            self._busy_safe(lambda con: con.executescript("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;"))
            return True
        return False

    @_reading
    def _auto_vacuum(self) -> int:
        return int(self._con().execute("PRAGMA auto_vacuum").fetchone()[0])

    def _busy_safe(self, action: Callable[[sqlite3.Connection], Any]) -> None:
        """Run a write outside :meth:`_write` (a pragma, a VACUUM), retrying while the file is busy."""
        con = self._con()

        def attempt() -> None:
            try:
                action(con)
            except BaseException:
                self._rollback(con)
                raise

        with _GATE, self._writer:
            try:
                try:
                    attempt()
                except sqlite3.Error as exc:
                    if not _is_busy(exc):
                        raise
                    self._retry_busy(attempt)
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
            self._committed(con)

    def _truncate_log(self) -> bool:
        """Checkpoint the whole log into the file and truncate it to zero bytes.

        A connection of its own with a short busy timeout: the checkpoint waits for readers and
        holds writers back while it waits, so it gives up after :attr:`TRUNCATE_WAIT_SECONDS`
        rather than stall a busy store (the checkpointer thread copies the log later, and
        ``journal_size_limit`` bounds it). A checkpoint already running (the checkpointer
        thread's) makes SQLite answer "busy" at once: that one is waited out.
        """
        deadline = time.monotonic() + self.TRUNCATE_WAIT_SECONDS
        try:
            con = sqlite3.connect(self.path, timeout=min(self.busy_timeout, self.TRUNCATE_WAIT_SECONDS),
                                  isolation_level=None)
        except sqlite3.Error:
            return False
        try:
            delay = 0.005
            while True:
                try:
                    if con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0:
                        return True
                except sqlite3.Error as exc:
                    if not _is_busy(exc):
                        return False
                if time.monotonic() + delay > deadline:
                    return False
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        finally:
            con.close()
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
        counts: dict[str, dict[State, int]] = {root: {} for root in roots}
        wanted = [root for root in counts if storable(root)]
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

    # -- schedules (see Store.schedules and vow.schedules) ---------------------------------------

    @_reading
    def schedules(self) -> list[ScheduleRecord]:
        """Every stored schedule, ordered by name."""
        rows = self._con().execute(
            "SELECT name, definition, paused, cursor, updated_at FROM schedules ORDER BY name").fetchall()
        return [ScheduleRecord(name, definition, bool(paused), cursor, updated_at)
                for name, definition, paused, cursor, updated_at in rows]

    def put_schedule(self, schedule: ScheduleRecord) -> None:
        """Create or replace schedule ``schedule.name`` (one statement)."""
        s = schedule
        self._write(lambda con: con.execute(
            "INSERT INTO schedules (name, definition, paused, cursor, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, paused = excluded.paused, "
            "cursor = excluded.cursor, updated_at = excluded.updated_at",
            (s.name, s.definition, int(s.paused), s.cursor, time.time())))

    def advance_schedule(self, name: str, cursor: float) -> bool:
        """Move the cursor of ``name`` forward to ``cursor`` (never back)."""
        return bool(self._write(lambda con: con.execute(
            "UPDATE schedules SET cursor = ? WHERE name = ? AND (cursor IS NULL OR cursor < ?)",
            (cursor, name, cursor)).rowcount))

    def delete_schedule(self, name: str) -> bool:
        """Delete schedule ``name``; whether it existed."""
        return bool(self._write(lambda con: con.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount))

    # -- rate limits (see Store.take_token and vow.ratelimit) ------------------------------------

    def take_token(self, bucket: str, per_second: float, burst: int, *, now: float | None = None) -> float:
        """Take a token from ``bucket``, or say how long until there is one (one write transaction,
        so workers in other processes take turns on the same row)."""
        refuse_unstorable([bucket], BUCKET)

        def take(con: sqlite3.Connection) -> float:
            at = time.time() if now is None else now
            row = con.execute("SELECT tokens, stamp FROM buckets WHERE name = ?", (bucket,)).fetchone()
            tokens, stamp = row if row is not None else (float(burst), at)
            wait, tokens, stamp = bucket_after_take(tokens, stamp, per_second, burst, at)
            con.execute("INSERT OR REPLACE INTO buckets (name, tokens, stamp) VALUES (?, ?, ?)",
                        (bucket, tokens, stamp))
            return wait

        result: float = self._write(take)
        return result

    def hold_bucket(self, bucket: str, seconds: float, *, now: float | None = None) -> None:
        """Give no token from ``bucket`` for ``seconds``."""
        refuse_unstorable([bucket], BUCKET)

        def hold(con: sqlite3.Connection) -> None:
            at = time.time() if now is None else now
            row = con.execute("SELECT tokens, stamp FROM buckets WHERE name = ?", (bucket,)).fetchone()
            tokens, stamp = row if row is not None else (0.0, at)
            con.execute("INSERT OR REPLACE INTO buckets (name, tokens, stamp) VALUES (?, ?, ?)",
                        (bucket, *bucket_after_hold(tokens, stamp, seconds, at)))

        self._write(hold)


_NEW_LEASE = "INSERT INTO leases (root, owner, token, expires_at) VALUES (?, ?, 1, ?)"
_PARK_LEASE = "UPDATE leases SET owner = '', expires_at = 0, recoveries = ?, parked = ? WHERE root = ?"
# Compare-and-swap on the token read (the claim holds the write lock: it always matches).
_TAKE_LEASE = "UPDATE leases SET owner = ?, token = ?, expires_at = ?, recoveries = ? WHERE root = ? AND token = ?"


def _claim_step(root: str, current: Lease | None, owner: str, ttl: float, now: float, max_recoveries: int | None,
                owner_alive: Callable[[str], bool | None]) -> tuple[str, tuple[Any, ...], Lease | None] | None:
    """What claiming ``root``, whose lease row is ``current``, writes: ``(statement, parameters, the lease
    taken)``, the lease ``None`` when the claim parks the root instead (one takeover too many);
    ``None`` when the lease may not be taken."""
    if not lease_claimable(current, owner, now, owner_alive):
        return None
    if current is None:
        return _NEW_LEASE, (root, owner, now + ttl), Lease(root, owner, 1, now + ttl)
    if current.owner == owner:
        token, recoveries = current.token, current.recoveries
    else:
        token = current.token + 1
        recoveries = current.recoveries + 1 if lease_takeover(current, owner) else current.recoveries
        if max_recoveries is not None and recoveries > max_recoveries:
            return _PARK_LEASE, (recoveries, parked_reason(root, recoveries), root), None
    return (_TAKE_LEASE, (owner, token, now + ttl, recoveries, root, current.token),
            Lease(root, owner, token, now + ttl, recoveries))


def _missing_indexes(con: sqlite3.Connection) -> bool:
    """Whether the file lacks one of :data:`_ADDED_INDEXES` (one read of its schema)."""
    names = list(_ADDED_INDEXES)
    found = con.execute(f"SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN "
                        f"({', '.join('?' for _ in names)})", names).fetchone()[0]
    return bool(found < len(names))


def _file_identity(path: str) -> tuple[int, int] | None:
    """``(device, inode)`` of the file at ``path``, or ``None`` when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _checkpoint(con: sqlite3.Connection, *, full: bool = False) -> bool:
    """Copy the log into the file: PASSIVE (never waits; what it cannot copy now, the next round
    copies) or, with ``full``, TRUNCATE (waits for the log to be free, then empties it). Returns
    whether the checkpoint reached the end of the log."""
    try:
        busy, frames, copied = con.execute(f"PRAGMA wal_checkpoint({'TRUNCATE' if full else 'PASSIVE'})").fetchone()
    except sqlite3.Error as exc:
        _log.debug("checkpoint failed: %s", exc)
        return False
    return not busy and frames == copied


def _wal_bytes(path: str) -> int:
    try:
        return os.path.getsize(path + "-wal")
    except OSError:
        return 0


# A connection must never cross a fork: a forked child forgets its parent's and opens its own.
_open_stores: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    _GATE.after_fork_in_child()
    for store in list(_open_stores):
        store._forget_connections()


os.register_at_fork(before=_GATE.before_fork, after_in_parent=_GATE.after_fork_in_parent,
                     after_in_child=_after_fork_in_child)


def open_sqlite(options: SQLiteOptions) -> SQLiteStore:
    """A SQLite file (WAL): the embedded default, safe for several processes on one machine."""
    return SQLiteStore(options.path, synchronous=options.synchronous, busy_timeout=options.busy_timeout,
                       read_only=options.read_only)


def _read_only_because(path: str) -> str | None:
    """Why this process may not write the SQLite file ``path`` (or make its -wal and -shm beside it),
    or ``None`` when it may. Root may write any file, but not one on a read-only mount, nor an
    immutable one (``chattr +i``), which ``os.access`` knows."""
    folder = os.path.dirname(path)
    try:
        if os.statvfs(path if os.path.exists(path) else folder).f_flag & os.ST_RDONLY:
            return "it is on a read-only file system"
    except OSError:
        pass
    for name in (path, path + "-wal", path + "-shm"):
        if os.path.exists(name) and not os.access(name, os.W_OK, effective_ids=os.access in os.supports_effective_ids):
            return f"{'the file' if name == path else os.path.basename(name)} is read-only to this user"
    # SQLite makes the -wal and -shm files beside the database when they are missing
    missing = not (os.path.exists(path + "-wal") and os.path.exists(path + "-shm"))
    if missing and not os.access(folder, os.W_OK, effective_ids=os.access in os.supports_effective_ids):
        return f"its folder {folder} is read-only to this user"
    return None


@hookimpl
def vow_register_stores(register: Register) -> None:
    """Register the ``sqlite`` store."""
    register("sqlite", open_sqlite, SQLiteOptions)
