"""The ``postgresql`` store: promises and leases on a PostgreSQL server shared by many machines.

Every rule of :mod:`vow.stores.base` holds here as on SQLite; what changes is who judges time,
how owners are known to be alive and how writers meet:

* **One round trip per engine round.** :meth:`PostgresStore.apply` is one call of the
  server-side function ``apply`` (see :mod:`vow_postgres.schema`): one statement, so one
  transaction, with the fences checked and the lease rows locked in it. A batch either commits
  whole or raises and writes nothing. A round whose texts add up to more than one statement may
  carry (:data:`STATEMENT_BYTES`; PostgreSQL refuses a message over 1 GB) is several calls in one
  transaction, still all or nothing.
* **The server's clock.** Lease expiry and deadlines are judged by ``clock_timestamp()`` on the
  server, never by the clock of the machine asking (``now=`` overrides it, for tests). A worker
  on another machine, whatever its clock says, loses a lease only when the server says so.
* **Owners known by their sessions.** :meth:`~PostgresStore.hold_owner` takes an advisory lock
  in a connection kept for it; the server drops the lock when that session ends, however the
  process died. Every worker, on any machine, then sees the owner dead and takes its leases at
  once. An owner that never held a lock here is judged by lease expiry alone.
* **Claims do not queue.** A claim locks lease rows with ``FOR UPDATE SKIP LOCKED``: a row
  another worker is claiming or committing under right now is skipped, not waited for.
* **Outside writes are pushed.** A client's resolve, cancel or submit is appended to the change
  feed and announced with ``NOTIFY``; :meth:`~PostgresStore.subscribe` calls back on every one,
  from a thread that ``LISTEN``\\ s on a connection of its own.

Connections come from a :class:`psycopg_pool.ConnectionPool` opened on first use (so a client
made before a ``fork`` opens its own connections in the child), in autocommit mode: each
statement is its own transaction, and the frequent ones are prepared on the server.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import select
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import attrs
import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from vow.errors import ConfigError, PromiseNotFoundError, StoreError
from vow.naming import refuse_unstorable, storable
from vow.records import Batch, BatchResult, Kind, Lease, PromiseRecord, Settle, State
from vow.reserved import INTERNAL_STEPS
from vow.schedules.record import ScheduleRecord
from vow.stores import redact_url
from vow.stores.base import (
    BRANCH_KINDS,
    BUCKET,
    LEASE_ROOT,
    ChangeFeed,
    StoreOperations,
    bucket_after_hold,
    bucket_after_take,
    conflict_error,
    lease_lost_error,
    parked_reason,
    pipeline_workflow,
    refuse_unstorable_batch,
    run_key,
    run_name,
    search_conditions,
    timeout_error_text,
)
from vow_postgres import schema as _schema
from vow_postgres.conninfo import scrub, secrets, split_url

_log = logging.getLogger("vow.postgres")

DEFAULT_POOL_SIZE = 10
"""Connections a store's pool opens at most (the engine, readers, clients settling from outside)."""
DEFAULT_CONNECT_TIMEOUT = 10
"""Seconds a connection waits for the server to answer, unless the URL (``connect_timeout=``) or
``$PGCONNECT_TIMEOUT`` says otherwise: psycopg's own default is 130 s per address, all that time
silent when the address never answers (a firewall that drops packets, a wrong host, a port where
something else listens)."""
DEFAULT_SYNCHRONOUS_COMMIT = "off"
"""The ``synchronous_commit`` of the store's sessions: see :class:`PostgresOptions`."""
SYNCHRONOUS_COMMIT = ("off", "on", "local", "remote_write", "remote_apply", "server")
VANISHED_AFTER = {"tcp_keepalives_idle": "10s", "tcp_keepalives_interval": "5s", "tcp_keepalives_count": "3",
                  "tcp_user_timeout": "25s"}
"""How the server notices that the machine at the other end of a session that sits idle by design
(an owner shown alive, the change feed listened to) is gone without a word (powered off, cut off):
a probe after 10 s of silence, then every 5 s, the session ended when 3 go unanswered; and data it
sent that stays unacknowledged for 25 s ends it too (while some is in flight, TCP sends no probes
but resends, for 15 minutes and more). About 25 s in all: the operating system's defaults wait two
hours and more, all that time showing a vanished worker alive and its runs taken."""

_UNTIMED = ("SELECT set_config(name, '0', false) FROM pg_settings WHERE name IN ('statement_timeout', "
            "'lock_timeout', 'idle_in_transaction_session_timeout') AND source <> 'client' AND setting <> '0'")
"""Turn off in a session of the store the timeouts an administrator set on the server, the database
or the role (not those the URL's ``options`` or ``PGOPTIONS`` ask for): one that cancels a round's
commit (waiting for a lease another session holds, or carrying large results) loses the results it
carries, and the run fails; its leaves run again when it is resumed. vow's statements are its own
and bounded; its sessions sit idle in a transaction only between the parts of one large round."""
CLIENT_VANISHED_AFTER = {"keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
                         "tcp_user_timeout": 25_000}
"""The same on this side (libpq's parameters, ``tcp_user_timeout`` in ms), unless the URL sets them: a
server whose machine went silent ends each session's wait in about 25 s (a commit sent and never
answered fails, and the run with it) instead of the 15 minutes and more TCP resends for, silent."""

_COLUMNS = ("id, state, kind, root, func, args, value, parent, timeout, idempotency_key, attempt, "
            "created_at, settled_at, tags::text")
_STATES = {s.value: s for s in State}
_KINDS = {k.value: k for k in Kind}
_PENDING = State.PENDING
_EMPTY_TAGS = "{}"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_parsed_tags: dict[str, dict[str, str]] = {}
_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure,
              # The server ended the session (shutdown, restart, pg_terminate_backend) before it
              # committed anything of this statement: a fresh connection may run it.
              pg_errors.AdminShutdown, pg_errors.CrashShutdown, pg_errors.CannotConnectNow,
              # Two writers created the same id at once (see the schema's apply): run it again.
              pg_errors.UniqueViolation)
_RETRIES = 8
STATEMENT_BYTES = 64 * 1024 * 1024
"""The most text (ids, arguments, values) one call of ``apply`` carries. PostgreSQL refuses a
message over 1 GB (it logs "invalid message length" and ends the session) while each value may be
256 MiB (:data:`vow.encoding.MAX_VALUE_BYTES`): a round whose texts add up to more than this is
sent as several calls in one transaction (a call then carries at most this, or one record)."""
_BRANCH_CHUNK = 1000  # roots per statement of branch_counts() (a page of the console's run list fits in one)
_SERVER_NOW = "SELECT extract(epoch FROM clock_timestamp())::float8"
_LISTEN_RETRY_S = 1.0  # between attempts to reconnect the listener


def _tags(text: str) -> dict[str, str]:
    """Tags from their JSON text; the few distinct tag sets are parsed once and copied after."""
    if text == _EMPTY_TAGS:
        return {}
    parsed = _parsed_tags.get(text)
    if parsed is None:
        if len(_parsed_tags) >= 4096:
            _parsed_tags.clear()
        parsed = _parsed_tags[text] = json.loads(text)
    return parsed.copy()


def _record(row: Sequence[Any]) -> PromiseRecord:
    """A record from a row in ``_COLUMNS`` order."""
    return PromiseRecord(row[0], _STATES[row[1]], _KINDS[row[2]], row[3], row[4], row[5], row[6], row[7],
                         row[8], row[9], row[10], row[11], row[12], _tags(row[13]))


_REQUIRED = ("id", "state", "kind", "root", "func", "args", "idempotency_key", "attempt", "created_at")


@attrs.frozen
class PostgresOptions:
    """Options of the ``postgresql`` store: a libpq URL (``postgresql://user@host:5432/db?sslmode=require``)."""

    url: str = "postgresql://"
    """The server: any libpq connection URI; ``PG*`` environment variables fill in what it leaves out."""
    schema: str | None = None
    """The schema holding vow's tables (default ``vow``; also ``?schema=`` in the URL)."""
    pool_size: int | None = None
    """Connections this store's pool opens at most (default 10; also ``?pool_size=`` in the URL)."""
    synchronous_commit: str | None = None
    """PostgreSQL's ``synchronous_commit`` for the store's writes (also ``?synchronous_commit=`` in the URL).

    ``off`` (the default, like SQLite's ``synchronous=normal``): a commit is complete once the
    server has it, without waiting for its disk; it survives any worker dying, and a crash of the
    server or its machine may roll back the last commits (at most about 0.6 s of them; never a
    torn one). ``on`` waits for the disk (and for synchronous standbys) on every commit: nothing
    is lost, at one flush per commit. ``server`` leaves the server's own setting.
    """


F = TypeVar("F", bound=Callable[..., Any])


def _reading(method: F) -> F:
    """Run a read; a connection that broke (a server restart, a session ended) is replaced and the
    read tried again, as a write whose connection broke is (a read may always run again): the
    pool may hold several sessions ended at once, each found out only when used."""

    @functools.wraps(method)
    def wrapper(self: PostgresStore, *args: Any, **kwargs: Any) -> Any:
        for attempt in range(_RETRIES):
            try:
                return method(self, *args, **kwargs)
            except psycopg.OperationalError as exc:
                if attempt == _RETRIES - 1:
                    raise self._error(exc) from None
                _log.info("PostgreSQL store %s: read failed (%s); trying again", self.url, self._scrub(str(exc)))
                time.sleep(0.001 * 2 ** attempt)
            except psycopg.Error as exc:
                raise self._error(exc) from None
        raise AssertionError("unreachable")

    return wrapper  # type: ignore[return-value]


class PostgresStore(StoreOperations):
    """Promises and leases on a PostgreSQL server; safe for many threads, processes and machines."""

    def __init__(self, url: str = "postgresql://", *, schema: str | None = None,
                 pool_size: int | None = None, synchronous_commit: str | None = None) -> None:
        libpq_url, ours = split_url(url)
        hidden = secrets(url)
        try:
            given = psycopg.conninfo.conninfo_to_dict(libpq_url)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"postgresql store URL {redact_url(url)}: {scrub(str(exc), hidden)}") from None
        self._given = set(given) | ({"connect_timeout"} if os.environ.get("PGCONNECT_TIMEOUT") else set())
        schema = _pick("schema", ours.get("schema"), schema, _schema.DEFAULT_SCHEMA)
        raw_size = _pick("pool_size", ours.get("pool_size"), pool_size, DEFAULT_POOL_SIZE)
        try:
            size = int(raw_size)
        except (TypeError, ValueError):
            size = 0
        if not _schema.valid_schema_name(schema):
            raise ConfigError(f"postgresql store option schema: expected a lower-case name of letters, digits "
                              f"and _ (at most 63), got {schema!r}")
        if size < 2:
            raise ConfigError(f"postgresql store option pool_size: expected a whole number >= 2, got {raw_size!r}")
        given_sync = _pick("synchronous_commit", ours.get("synchronous_commit"), synchronous_commit, None)
        sync = str(given_sync if given_sync is not None else DEFAULT_SYNCHRONOUS_COMMIT).lower()
        if sync not in SYNCHRONOUS_COMMIT:
            raise ConfigError(f"postgresql store option synchronous_commit: expected one of "
                              f"{', '.join(SYNCHRONOUS_COMMIT)}, got {sync!r}")
        self.synchronous_commit = sync
        self._sync_given = given_sync is not None
        self._conninfo = libpq_url
        self._secrets = hidden
        self.schema = schema
        self.pool_size = size
        self._lock_space = _schema.lock_space(schema)
        shown = redact_url(libpq_url)
        extra = [f"schema={schema}"] if schema != _schema.DEFAULT_SCHEMA else []
        extra += [f"pool_size={size}"] if size != DEFAULT_POOL_SIZE else []
        extra += [f"synchronous_commit={sync}"] if sync != DEFAULT_SYNCHRONOUS_COMMIT else []
        if extra:
            shown += ("&" if "?" in shown else "?") + "&".join(extra)
        self.url = shown
        self._pool: ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._closed = False
        self._owners_lock = threading.Lock()
        self._held: dict[str, int] = {}  # owner -> advisory lock key, held in self._liveness
        self._liveness: psycopg.Connection[Any] | None = None
        self._subscribers: dict[int, Callable[[], None]] = {}
        self._subscriber_ids = 0
        self._listener: threading.Thread | None = None
        self._listening: psycopg.Connection[Any] | None = None
        self._read_only_by_client = False  # read by _setup: a URL may ask for read-only connections
        s = schema
        self._sql_apply = (f"SELECT * FROM {s}.apply(%b::text[], %b::int8[], %b::text[], %b::text[], %b::text[], "
                           "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::float8[], %b::text[], "
                           "%b::int8[], %b::float8[], %b::float8[], %b::text[], %b::text[], %b::text[], %b::text[], "
                           "%b::float8[], %b::text[], %b::int8[], %b::bool)")
        self._sql_claim = (f"SELECT * FROM {s}.claim(%b::text[], %b::text, %b::float8, %b::float8, %b::bool, "
                           "%b::int4)")
        self._select = f"SELECT {_COLUMNS} FROM {s}.promises"
        self._setup()
        _open_stores.add(self)

    def __repr__(self) -> str:
        return f"<PostgresStore {self.url}>"

    read_only_reason = "default_transaction_read_only=on, set by the URL's options or PGOPTIONS"
    """Why a store that :attr:`read_only` says is read-only is so (``vow run`` and the other commands that
    write say it, see :func:`vow.cli.common.writable`)."""
    read_only_fix = "drop it from the URL's options or from PGOPTIONS"
    """What makes it writable."""

    @property
    def read_only(self) -> bool:
        """Whether the store's own connections asked for read-only transactions: every write fails."""
        return self._read_only_by_client

    # -- opening

    def _setup(self) -> None:
        """Check the schema's version (creating the schema on first use) on a connection of its own."""
        try:
            with self._connect() as con:
                self._keep_libpqs_synchronous_commit(con)
                self._read_only_by_client = self._client_setting(con, "default_transaction_read_only") == "on"
                version = self._read_version(con)
                if version is None:
                    self._create_schema(con)
                else:
                    if self._functions_mark(con) != _schema.functions_mark(self.schema):
                        self._remake_functions(con)
                    self._add_missing_indexes(con)
        except psycopg.errors.ConnectionTimeout as exc:
            timeout = psycopg.conninfo.timeout_from_conninfo(
                psycopg.conninfo.conninfo_to_dict(self._conninfo, **self._timeout_kwargs()))
            raise StoreError(
                f"PostgreSQL store {self.url}: no answer within {timeout} s ({self._scrub(str(exc).strip())}); "
                "check that the host and port name a running PostgreSQL server this machine can reach (a "
                "firewall that drops packets looks like this), or give the URL a longer connect_timeout=SECONDS"
            ) from None
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def _keep_libpqs_synchronous_commit(self, con: psycopg.Connection[Any]) -> None:
        """A ``synchronous_commit`` the connection itself asked for (``options=-c ...`` in the URL,
        ``PGOPTIONS``) is kept: the store's default would quietly undo it; vow's option, given too and
        different, is refused."""
        asked = self._client_setting(con, "synchronous_commit")
        if asked is None or self.synchronous_commit in ("server", asked):
            return
        if self._sync_given:
            raise ConfigError(f"postgresql store option synchronous_commit: given twice, as "
                              f"{self.synchronous_commit!r} and to libpq (options or PGOPTIONS) as {asked!r}")
        self.synchronous_commit = "server"

    @staticmethod
    def _client_setting(con: psycopg.Connection[Any], name: str) -> str | None:
        """The value of setting ``name`` the connection itself asked for (``options=-c ...`` in the URL,
        ``PGOPTIONS``), or ``None`` when it asked for none."""
        row = con.execute("SELECT setting FROM pg_settings WHERE name = %s AND source = 'client'", (name,)).fetchone()
        return str(row[0]) if row is not None else None

    def _connect(self, *, long_idle: bool = False) -> psycopg.Connection[Any]:
        """A connection of the store's own, without an administrator's timeouts (:data:`_UNTIMED`).
        ``long_idle``: it sits idle by design (owners shown alive, the change feed listened to), so a
        server's ``idle_session_timeout`` must not end it, and the server probes it to learn soon that
        its machine is gone (:data:`VANISHED_AFTER`)."""
        con = psycopg.connect(self._conninfo, autocommit=True, fallback_application_name="vow",
                              **self._timeout_kwargs())
        _connections.add(con)
        try:
            con.execute(_UNTIMED)
            if long_idle:
                for name, value in VANISHED_AFTER.items():
                    con.execute("SELECT set_config(%s, %s, false)", (name, value))
                # the setting is PostgreSQL 14's; an older server ends no idle session
                con.execute("SELECT set_config('idle_session_timeout', '0', false) "
                            "WHERE current_setting('server_version_num')::int >= 140000")
        except BaseException:
            con.close()
            raise
        return con

    def _timeout_kwargs(self) -> dict[str, Any]:
        """The store's ``connect_timeout`` and :data:`CLIENT_VANISHED_AFTER`, but for those the user gave
        (a keyword would override the URL's)."""
        ours = {"connect_timeout": DEFAULT_CONNECT_TIMEOUT, **CLIENT_VANISHED_AFTER}
        return {k: v for k, v in ours.items() if k not in self._given}

    def _read_version(self, con: psycopg.Connection[Any]) -> int | None:
        """The recorded schema version; ``None`` when the schema is absent or empty; refuses what it cannot use."""
        row = con.execute(
            "SELECT to_regclass(%s) IS NOT NULL, "
            "(SELECT array_agg(tablename::text ORDER BY tablename) FROM pg_tables WHERE schemaname = %s)",
            (f"{self.schema}.version", self.schema)).fetchone()
        has_version, tables = row if row else (False, None)
        if not has_version:
            if tables:
                raise StoreError(f"PostgreSQL store {self.url}: schema {self.schema!r} holds tables "
                                 f"{', '.join(tables)} and no vow version; it is not a vow store (choose another "
                                 "schema with ?schema=NAME)")
            return None
        version: int | None = _one(con, f"SELECT max(version) FROM {self.schema}.version")
        if version is None:
            raise StoreError(f"PostgreSQL store {self.url}: the table {self.schema}.version is empty; "
                             "the schema is damaged")
        if version > _schema.SCHEMA_VERSION:
            raise StoreError(f"PostgreSQL store {self.url}: written by a newer vow-postgres (schema version "
                             f"{version}; this one supports up to {_schema.SCHEMA_VERSION}); upgrade vow-postgres "
                             "to use it")
        return version

    def _create_schema(self, con: psycopg.Connection[Any]) -> None:
        with con.transaction():
            # Several processes may open a fresh server at once: one creates, the others wait and see it made.
            con.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"vow schema {self.schema}",))
            if self._read_version(con) is not None:
                return
            for statement in _schema.create_statements(self.schema):
                con.execute(statement)
        _log.info("PostgreSQL store %s: created schema %s (version %d)", self.url, self.schema,
                  _schema.SCHEMA_VERSION)

    def _functions_mark(self, con: psycopg.Connection[Any]) -> str | None:
        mark: str | None = _one(con, "SELECT obj_description(%s::regnamespace, 'pg_namespace')", (self.schema,))
        return mark

    def _remake_functions(self, con: psycopg.Connection[Any]) -> None:
        """Replace the schema's functions with this release's (same schema version: same tables and
        calls, perhaps planned or written better), unless another process just did."""
        try:
            with con.transaction():
                con.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"vow schema {self.schema}",))
                if self._functions_mark(con) == _schema.functions_mark(self.schema):
                    return
                for statement in _schema.function_statements(self.schema):
                    con.execute(statement)
        except psycopg.errors.InsufficientPrivilege as exc:
            _log.warning("PostgreSQL store %s: keeping the functions of schema %s as another vow-postgres made "
                         "them (this role may not replace them: %s)", self.url, self.schema, self._scrub(str(exc)))
            return
        _log.info("PostgreSQL store %s: made the functions of schema %s anew (%s)", self.url, self.schema,
                  _schema.functions_mark(self.schema))

    def _add_missing_indexes(self, con: psycopg.Connection[Any]) -> None:
        """Make the indexes of :data:`~vow_postgres.schema.ADDED_INDEXES` a schema made by an earlier
        vow-postgres lacks (a query for each when none is missing), CONCURRENTLY: writers go on meanwhile.
        A role that may not, or a read-only server, leaves them missing: the queries they serve then read
        more, and answer the same; so does a store opening while another makes them (it does not wait)."""
        statements = _schema.added_index_statements(self.schema)
        missing = self._missing_indexes(con, statements)
        if not missing:
            return
        # Not the schema's key (_remake_functions): an opening that must remake the functions would wait
        # for the whole build. A session lock, not a transaction's: CREATE INDEX CONCURRENTLY runs outside
        # any transaction.
        key = f"vow indexes {self.schema}"
        if not _one(con, "SELECT pg_try_advisory_lock(hashtext(%s))", (key,)):
            _log.info("PostgreSQL store %s: another store is making the indexes %s in schema %s", self.url,
                      ", ".join(missing), self.schema)
            return
        try:
            missing = self._missing_indexes(con, statements)  # another store may have just made them
            if missing:
                _log.info("PostgreSQL store %s: making the indexes %s in schema %s (writers go on meanwhile; "
                          "minutes on a large store)", self.url, ", ".join(missing), self.schema)
            # A timeout the URL gives is for the store's rounds: a build cut off by it left an invalid
            # index, and every later opening failed the same way.
            con.execute("SET statement_timeout = 0")
            con.execute("SET lock_timeout = 0")
            for name in missing:
                # An index left invalid by a build that failed (or whose session ended) is never used, nor
                # made again by IF NOT EXISTS; no other store is building it: this one holds the lock.
                con.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {self.schema}.{name}")
                con.execute(statements[name])
        except psycopg.Error as exc:  # an index only makes queries read less: never a reason not to open
            _log.warning("PostgreSQL store %s: schema %s lacks the indexes %s, and they cannot be made here (%s); "
                         "the queries they serve read more until they are", self.url, self.schema,
                         ", ".join(missing), self._scrub(str(exc)))
            return
        finally:
            if not con.closed:
                con.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
        if missing:
            _log.info("PostgreSQL store %s: made the indexes %s in schema %s", self.url, ", ".join(missing),
                      self.schema)

    def _missing_indexes(self, con: psycopg.Connection[Any], statements: dict[str, str]) -> list[str]:
        """The indexes among ``statements`` the schema lacks, or has only invalid (a build that failed)."""
        return [name for name in statements
                if not _one(con, "SELECT coalesce((SELECT indisvalid FROM pg_index "
                                 "WHERE indexrelid = to_regclass(%s)), false)", (f"{self.schema}.{name}",))]

    def _get_pool(self) -> ConnectionPool:
        pool = self._pool
        if pool is not None:
            return pool
        with self._pool_lock:
            if self._closed:
                raise StoreError(f"PostgreSQL store {self.url}: the store is closed")
            if self._pool is None:
                self._pool = ConnectionPool(
                    self._conninfo, min_size=1, max_size=self.pool_size, open=True, timeout=60,
                    kwargs={"autocommit": True, "prepare_threshold": 1, "fallback_application_name": "vow",
                            **self._timeout_kwargs()},
                    configure=self._configure, name=f"vow-{self.schema}")
            return self._pool

    def _configure(self, con: psycopg.Connection[Any]) -> None:
        """Set up each new pooled connection: fork-safe, no administrator's timeouts (:data:`_UNTIMED`),
        and the store's ``synchronous_commit``."""
        _connections.add(con)
        con.execute(_UNTIMED)
        if self.synchronous_commit != "server":
            con.execute(f"SET synchronous_commit TO {self.synchronous_commit}")

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection whose session the server has not ended (:func:`_check_pooled`). An ended
        one is dropped and the next taken at once: the pool's own check slept between one refused
        session and the next (0, 1, 2, 4 ... s), so a pool whose sessions all ended together (a
        restart, a failover, pg_terminate_backend) stalled the next statement for a minute."""
        pool = self._get_pool()
        deadline = time.monotonic() + 60
        while True:
            try:
                con = pool.getconn(timeout=max(0.0, deadline - time.monotonic()))
            except PoolTimeout as exc:
                raise StoreError(f"PostgreSQL store {self.url}: no connection to the server within "
                                 f"60 s ({self._scrub(str(exc))})") from None
            try:
                _check_pooled(con)
                break
            except psycopg.OperationalError:
                con.close()  # so that the pool replaces it
                pool.putconn(con)
        try:
            with con:
                yield con
        finally:
            pool.putconn(con)

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    def _error(self, exc: BaseException) -> StoreError:
        if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
            # Its context is the SQL of the server function that wrote: no help to whoever must fix it.
            refused = self._scrub(exc.diag.message_primary or str(exc))
            if self.read_only:
                return StoreError(f"PostgreSQL store {self.url}: opened read-only ({self.read_only_reason}), so the "
                                  f"server takes no writes ({refused}): {self.read_only_fix} to write to it")
            return StoreError(f"PostgreSQL store {self.url}: the server takes no writes here "
                              f"({refused}); it is a standby or "
                              "default_transaction_read_only is on (for the server, database or role): point the "
                              "store at the primary, or have the setting turned off")
        return StoreError(f"PostgreSQL store {self.url}: {self._scrub(str(exc).strip())}")

    def _forget_after_fork(self) -> None:
        """In a forked child: drop the parent's connections without touching them (see :func:`_detach`)."""
        _inherited.extend(x for x in (self._pool, self._liveness, self._listening) if x is not None)
        self._pool = self._liveness = self._listening = None
        self._pool_lock = threading.Lock()
        self._owners_lock = threading.Lock()
        self._held = {}  # the parent's owners are the parent's; the child holds its own
        self._subscribers = {}
        self._listener = None

    # -- writes

    def apply(self, batch: Batch) -> BatchResult:
        """Apply ``batch`` in one transaction (one statement): fences, creates, settles, attempts; all or nothing."""
        if not batch and not batch.fences:
            return BatchResult()
        for s in batch.settles:
            if s.state is _PENDING:
                raise ValueError(f"cannot settle {s.id!r} as pending")
        refuse_unstorable_batch(batch)
        firsts: dict[str, PromiseRecord] = {}
        duplicates: list[str] = []
        for r in batch.creates:
            if r.id in firsts:
                duplicates.append(r.id)
                continue
            for name in _REQUIRED:
                if getattr(r, name) is None:
                    raise ValueError(f"cannot store promise {r.id!r}: a required field is None ({r!r})")
            firsts[r.id] = r
        creates = list(firsts.values())
        fences = sorted(batch.fences.items())
        parts = _parts(creates, batch.settles, batch.fences)
        try:
            if len(parts) == 1:  # the usual round: one statement, its own transaction
                params = self._apply_params(fences, creates, batch.settles, batch.attempts, batch.outside)
                rows = self._write(lambda con: con.execute(self._sql_apply, params).fetchall())
            else:
                rows = self._write(functools.partial(self._apply_in_parts, parts, fences, batch))
        except _Conflict as conflict:
            raise self._conflict_error(conflict.detail, batch) from None
        existing: dict[str, PromiseRecord] = {}
        conflicts: dict[str, PromiseRecord] = {}
        for row in rows:
            (existing if row[0] == "existing" else conflicts)[row[1]] = _record(row[1:])
        for rid in duplicates:  # a second create of an id in one batch meets the first
            existing.setdefault(rid, firsts[rid])
        return BatchResult(existing, conflicts)

    def _apply_params(self, fences: list[tuple[str, int]], creates: Sequence[PromiseRecord], settles: Sequence[Settle],
                      attempts: dict[str, int], outside: bool) -> tuple[Any, ...]:
        """The parameters of one call of the server's ``apply``."""
        return (
            [root for root, _ in fences], [token for _, token in fences],
            [r.id for r in creates], [r.state._value_ for r in creates], [r.kind._value_ for r in creates],
            [r.root for r in creates], [r.func for r in creates], [r.args for r in creates],
            [r.value for r in creates], [r.parent for r in creates], [r.timeout for r in creates],
            [r.idempotency_key for r in creates], [r.attempt for r in creates], [r.created_at for r in creates],
            [r.settled_at for r in creates], [_dumps(r.tags) if r.tags else _EMPTY_TAGS for r in creates],
            [s.id for s in settles], [s.state._value_ for s in settles], [s.value for s in settles],
            [s.settled_at for s in settles],
            list(attempts), list(attempts.values()), outside,
        )

    def _apply_in_parts(self, parts: list[tuple[list[PromiseRecord], list[Settle]]], fences: list[tuple[str, int]],
                        batch: Batch, con: psycopg.Connection[Any]) -> list[Any]:
        """A round too large for one statement, as one call of ``apply`` per part in one transaction:
        a part the server refuses rolls back the parts before it. Each part checks the fences of the
        roots it has not settled yet (an earlier part that settled a root leaves it settled, which
        its fence check would take for a lease lost); the attempts ride with the last part."""
        rows: list[Any] = []
        settled: set[str] = set()
        with con.transaction():
            for n, (creates, settles) in enumerate(parts):
                last = n == len(parts) - 1
                params = self._apply_params([f for f in fences if f[0] not in settled], creates, settles,
                                            batch.attempts if last else {}, batch.outside)
                rows += con.execute(self._sql_apply, params).fetchall()
                settled.update(s.id for s in settles if s.id in batch.fences)
        return rows

    def _conflict_error(self, detail: dict[str, list[str]], batch: Batch) -> Exception:
        """The :class:`~vow.errors.ConflictError` of a fenced batch the server refused (nothing was written)."""
        stored = self.get_many([*detail["late"], *detail["won"]])
        for r in reversed(batch.creates):  # one the batch itself created is gone with its rollback
            if r.id not in stored and (r.id in detail["won"] or r.id in detail["late"]):
                stored[r.id] = r
        won = {i: stored[i] for i in detail["won"] if i in stored}
        for pid in detail["late"]:  # timed out by the deadline rule: as the store would have stored it
            record = stored[pid]
            if record.state is _PENDING:
                settle = next(s for s in batch.settles if s.id == pid)
                record = attrs.evolve(record, state=State.TIMEDOUT, value=timeout_error_text(record),
                                      settled_at=settle.settled_at)
            won[pid] = record
        return conflict_error(won)

    def _write(self, work: Callable[[psycopg.Connection[Any]], Any], *, idempotent: bool = False) -> Any:
        """Run one write statement. One that surely wrote nothing (a deadlock, a serialization
        failure, a session the server ended) is tried again; so is an ``idempotent`` one whose
        connection broke. A batch whose connection broke mid-way is not: it may have committed."""
        for attempt in range(_RETRIES):
            try:
                with self._connection() as con:
                    return work(con)
            except _RETRYABLE as exc:
                if attempt == _RETRIES - 1:
                    raise self._error(exc) from None
                time.sleep(0.001 * 2 ** attempt)
            except psycopg.OperationalError as exc:
                if not idempotent or attempt == _RETRIES - 1:
                    raise self._raised(exc) from None
                time.sleep(0.001 * 2 ** attempt)
            except psycopg.Error as exc:
                raise self._raised(exc) from None
        raise AssertionError("unreachable")

    def _raised(self, exc: psycopg.Error) -> Exception:
        """The vow error a coded exception of a server-side function stands for (else a StoreError)."""
        state = exc.sqlstate
        detail = exc.diag.message_detail or ""
        if state == _schema.LEASE_LOST:
            return lease_lost_error(json.loads(detail))
        if state == _schema.NOT_FOUND:
            return PromiseNotFoundError(f"cannot settle {detail!r}: no promise with that id")
        if state == _schema.CONFLICT:
            return _Conflict(json.loads(detail))
        return self._error(exc)

    # -- reads

    @_reading
    def get(self, id: str) -> PromiseRecord | None:
        """The record with ``id``, or ``None``."""
        if not storable(id):  # psycopg cannot even send it; it was never stored
            return None
        with self._connection() as con:
            row = con.execute(self._select + " WHERE id = %s", (id,)).fetchone()
        return None if row is None else _record(row)

    @_reading
    def get_many(self, ids: Iterable[str]) -> dict[str, PromiseRecord]:
        """The records among ``ids`` that exist, by id (one statement: one snapshot)."""
        unique = [i for i in dict.fromkeys(ids) if storable(i)]
        if not unique:
            return {}
        with self._connection() as con:
            rows = con.execute(self._select + " WHERE id = ANY(%b::text[])", (unique,)).fetchall()
        return {row[0]: _record(row) for row in rows}

    @_reading
    def children(self, parent: str) -> list[PromiseRecord]:
        """Direct children of ``parent``, oldest first."""
        if not storable(parent):
            return []
        with self._connection() as con:
            # Through the tree of the parent's root, which the root index serves (no index of
            # parents is kept up to date on every create); a parent that is not stored has no
            # known root, and only then are all records scanned.
            s = self.schema
            select = f"SELECT {_COLUMNS}, seq FROM {s}.promises"
            rows = con.execute(f"{select} WHERE root = (SELECT root FROM {s}.promises WHERE id = %s) "
                               f"AND parent = %s UNION ALL {select} WHERE parent = %s "
                               f"AND NOT EXISTS (SELECT 1 FROM {s}.promises WHERE id = %s) "
                               "ORDER BY created_at, seq", (parent, parent, parent, parent)).fetchall()
        return [_record(row) for row in rows]

    @_reading
    def subtree(self, id: str) -> list[PromiseRecord]:
        """``id``'s record and every record under it, oldest first (:class:`~vow.stores.base.SubtreeStore`).

        No index of parents is kept (see :meth:`children`), so the server reads the ids and parents of
        ``id``'s run once, through the root index, and follows the parents there: only the branch's
        records are sent, not the 100,000 of the run it is part of."""
        if not storable(id):
            return []
        s = self.schema
        with self._connection() as con:
            rows = con.execute(
                f"WITH RECURSIVE run AS MATERIALIZED (SELECT id, parent FROM {s}.promises "
                f"WHERE root = (SELECT root FROM {s}.promises WHERE id = %s)), "
                "under(id) AS (SELECT %s::text UNION ALL SELECT r.id FROM run r JOIN under u ON r.parent = u.id) "
                f"{self._select} WHERE id IN (SELECT id FROM under) ORDER BY created_at, seq", (id, id)).fetchall()
        return [_record(row) for row in rows]

    @_reading
    def tree(self, root: str) -> list[PromiseRecord]:
        """Every record whose root is ``root`` (the root included), oldest first."""
        if not storable(root):
            return []
        with self._connection() as con:
            rows = con.execute(self._select + " WHERE root = %s ORDER BY created_at, seq", (root,)).fetchall()
        return [_record(row) for row in rows]

    @_reading
    def trees(self, roots: Sequence[str]) -> dict[str, list[PromiseRecord]]:
        """The trees of several roots in one query (a worker resuming the runs it claimed)."""
        with self._connection() as con:
            rows = con.execute(self._select + " WHERE root = ANY(%s) ORDER BY root, created_at, seq",
                               ([root for root in roots if storable(root)],)).fetchall()
        found: dict[str, list[PromiseRecord]] = {}
        for row in rows:
            record = _record(row)
            found.setdefault(record.root, []).append(record)
        return found

    @_reading
    def search(self, *, state: State | None = None, kind: Kind | None = None, root: str | None = None,
               roots_only: bool = False, tag: tuple[str, str] | None = None,
               limit: int = 1000) -> list[PromiseRecord]:
        """Records matching every given filter, newest first, at most ``limit``."""
        if limit <= 0 or not all(map(storable, (root or "", *(tag or ())))):
            return []
        where, params = search_conditions("%s", state=state, kind=kind, root=root, roots_only=roots_only)
        if tag is not None:
            where.append("tags ->> %s = %s")
            params += [tag[0], tag[1]]
        sql = self._select + (" WHERE " + " AND ".join(where) if where else "")
        with self._connection() as con:
            rows = con.execute(sql + " ORDER BY created_at DESC, seq DESC LIMIT %s", (*params, limit)).fetchall()
        return [_record(row) for row in rows]

    # -- listings: runs (see StoreOperations.runs)

    @_reading
    def runs(self, *, state: State | None = None, name: str | None = None, since: float | None = None,
             until: float | None = None, before: tuple[float, str] | None = None,
             limit: int = 50) -> list[PromiseRecord]:
        """Root workflows, newest first (:meth:`StoreOperations.runs`): a page is one query that reads the
        index ``promises_runs`` from its cursor on (the pending runs: ``promises_open_roots``), never the
        runs of the pages before it, and sends the page's runs alone.

        The state is no index's column (a settle would then write the indexes), so a page of one state
        reads the runs from the cursor on until ``limit`` are in it. A pipeline run's name is in its
        arguments: the server sends the runs of the workflow named or of the pipeline workflow, and the
        pipeline runs of another name are left out here; while they fill a page, the next is read from the
        last run read."""
        if limit <= 0:
            return []
        # Literals, not parameters: the planner uses a partial index only when it can see that the
        # query implies the index's WHERE clause, and a statement run again is prepared (prepare_threshold),
        # then may run on a plan made for any parameters: a state's plan is its own (a rare state's
        # differs), as is a limit's.
        where = ["parent IS NULL", "kind = 'workflow'"]
        params: list[Any] = []
        if state is not None:
            where.append(f"state = '{State(state).value}'")  # an enum value: safe to inline
            if State(state) is _PENDING:  # the same runs, and the index of them: a few among many finished
                where.append("open_root")
        if since is not None:
            where.append("created_at >= %s")
            params.append(float(since))
        if until is not None:
            where.append("created_at < %s")
            params.append(float(until))
        if name is not None:
            where.append("func = ANY(%s)")
            params.append([pipeline_workflow(), *([name] if storable(name) and name != pipeline_workflow() else [])])
        # The id in the index's collation, "C": code points, as Python orders the cursor.
        sql = (f"{self._select} WHERE {' AND '.join(where)}{{}} "
               f'ORDER BY created_at DESC, id COLLATE "C" DESC LIMIT {int(limit)}')
        found: list[PromiseRecord] = []
        cursor = before
        with self._connection() as con:
            while True:
                after: tuple[Any, ...] = () if cursor is None else (float(cursor[0]), str(cursor[1]))
                rows = con.execute(sql.format(' AND (created_at, id COLLATE "C") < (%s, %s)' if after else ""),
                                   (*params, *after)).fetchall()
                records = [_record(row) for row in rows]
                found += records if name is None else [r for r in records if run_name(r) == name]
                if len(rows) < limit or len(found) >= limit:
                    return found[:limit]
                cursor = run_key(records[-1])

    @_reading
    def branch_counts(self, roots: Iterable[str]) -> dict[str, dict[State, int]]:
        """Each root's branches by state (:meth:`StoreOperations.branch_counts`), counted on the server:
        one statement per chunk of roots, which sends one row of numbers per root, never a record.

        No index of parents is kept (see :meth:`children`): a root's direct children are found, as
        children() finds them, among the records of its run (the root index), those whose parent it is.
        An id that is not stored has no run, so it counts none (records whose parent was never stored
        are no run's branches, and finding them would read every record)."""
        counts: dict[str, dict[State, int]] = {root: {} for root in roots}
        wanted = [root for root in counts if storable(root)]  # one that is not was never stored
        s = self.schema
        # Not a branch: a child whose id is the root's id, a dot and one of INTERNAL_STEPS (is_branch).
        # left/substr/length count characters, as Python's slices do; no LIKE, so "%" and "_" are plain.
        # One aggregate per root, a count per state (enum values: safe to inline), and no GROUP BY: a
        # grouping would sort the children of a large fan-out (the planner cannot know how many there are).
        states = list(State)
        tally = ", ".join(f"count(*) FILTER (WHERE p.state = '{state.value}')" for state in states)
        sql = (f"SELECT w.id, c.* FROM unnest(%s::text[]) AS w(id) JOIN {s}.promises r ON r.id = w.id "
               f"CROSS JOIN LATERAL (SELECT {tally} FROM {s}.promises p WHERE p.root = r.root AND p.parent = w.id "
               "AND p.kind = ANY(%s::text[]) AND NOT (left(p.id, length(w.id) + 1) = w.id || '.' "
               "AND substr(p.id, length(w.id) + 2) = ANY(%s::text[]))) AS c")
        kinds = [kind.value for kind in BRANCH_KINDS]
        internal = list(INTERNAL_STEPS)
        with self._connection() as con:
            for start in range(0, len(wanted), _BRANCH_CHUNK):
                rows = con.execute(sql, (wanted[start:start + _BRANCH_CHUNK], kinds, internal)).fetchall()
                for root, *numbers in rows:
                    counts[root] = {state: n for state, n in zip(states, numbers, strict=True) if n}
        return counts

    # -- the change feed

    @_reading
    def changes(self, after: int | None) -> ChangeFeed:
        """Outside writes after sequence number ``after`` (the last ``FEED_WINDOW`` are kept);
        ``None``: no entries, only the current number."""
        with self._connection() as con:
            if after is None:
                return ChangeFeed(int(_one(con, f"SELECT coalesce(max(seq), 0) FROM {self.schema}.changes")))
            rows = con.execute(f"SELECT seq, root, id, (SELECT min(seq) FROM {self.schema}.changes) "
                               f"FROM {self.schema}.changes WHERE seq > %s ORDER BY seq", (after,)).fetchall()
        if not rows:
            return ChangeFeed(after)
        complete = rows[0][0] == after + 1 or rows[0][3] <= after + 1
        return ChangeFeed(rows[-1][0], [(root, pid) for _, root, pid, _ in rows], complete)

    def subscribe(self, on_change: Callable[[], None]) -> Callable[[], None]:
        """Call ``on_change()`` after every outside write (``NOTIFY``), from a listening thread; also
        after the listener reconnects (writes may have been missed). Returns the unsubscribe function."""
        with self._owners_lock:
            if self._closed:
                raise StoreError(f"PostgreSQL store {self.url}: the store is closed")
            self._subscriber_ids += 1
            key = self._subscriber_ids
            self._subscribers[key] = on_change
            if self._listener is None or not self._listener.is_alive():
                self._listener = threading.Thread(target=self._listen, name="vow-postgres-listen", daemon=True)
                self._listener.start()

        def unsubscribe() -> None:
            with self._owners_lock:
                self._subscribers.pop(key, None)

        return unsubscribe

    def _listen(self) -> None:
        """The listening thread: ``LISTEN`` on a connection of its own and call the subscribers."""
        missed = False
        while True:
            if self._stopping() or threading.current_thread() is not self._listener:
                return
            try:
                con = self._connect(long_idle=True)
                con.execute(f"LISTEN {_schema.channel(self.schema)}")
                self._listening = con
                if missed:
                    self._notify_subscribers()
                while not self._stopping():
                    for _ in con.notifies(timeout=0.5):
                        self._notify_subscribers()
                con.close()
                return
            except psycopg.Error as exc:
                if self._stopping():
                    return
                _log.warning("PostgreSQL store %s: listening for changes failed (%s); reconnecting",
                             self.url, self._scrub(str(exc)))
                missed = True
                time.sleep(_LISTEN_RETRY_S)

    def _stopping(self) -> bool:
        """Whether the listening thread should end: the store is closed, or nobody listens any more."""
        with self._owners_lock:
            return self._closed or not self._subscribers

    def _notify_subscribers(self) -> None:
        for callback in list(self._subscribers.values()):
            try:
                callback()
            except Exception:  # noqa: BLE001 - one subscriber's bug must not stop the others
                _log.exception("a change-feed subscriber failed")

    # -- time and owners

    @_reading
    def now(self) -> float:
        """The server's clock, in epoch seconds: what lease expiry and deadlines are judged by.

        As of the moment this returns: of three readings, the one with the shortest round trip is
        taken, plus half that round trip and the time since (a caller comparing it with its own
        clock then sees the true offset, not the network's delay)."""
        best: tuple[float, float, float] | None = None
        with self._connection() as con:
            for _ in range(3):  # the fastest of three round trips says the most about the clock
                sent = time.monotonic()
                server = float(_one(con, "SELECT extract(epoch FROM clock_timestamp())::float8"))
                took = time.monotonic() - sent
                if best is None or took < best[0]:
                    best = (took, server, time.monotonic())
        assert best is not None
        took, server, read = best
        return server + took / 2 + (time.monotonic() - read)

    def hold_owner(self, owner: str) -> bool:
        """Show ``owner`` alive: an advisory lock held in this store's liveness session. When the
        process dies the server ends the session and drops the lock: every worker sees it dead."""
        with self._owners_lock:
            if owner in self._held:
                return True
            try:
                con = self._liveness_connection()
                key = self._show_alive(con, owner)
                if key is None:
                    return False  # held by another session: the same id in two processes
                self._held[owner] = key
                # Owners that died and hold no lease any more need no row: they would read as unknown.
                con.execute(f"DELETE FROM {self.schema}.owners w WHERE w.owner IN "
                            f"(SELECT d.owner FROM {self.schema}.dead_owners d) AND NOT EXISTS "
                            f"(SELECT 1 FROM {self.schema}.leases l WHERE l.owner = w.owner)")
                return True
            except psycopg.Error as exc:
                _log.warning("PostgreSQL store %s: cannot show owner %s alive (%s); its leases are freed by "
                             "expiry only", self.url, owner, self._scrub(str(exc)))
                return False

    def _show_alive(self, con: psycopg.Connection[Any], owner: str) -> int | None:
        """Store ``owner``'s row (kept if there is one) and take its advisory lock in session ``con``;
        the lock's key, or ``None`` when another session holds that lock."""
        # One statement, so one transaction: the row becomes visible to others only once its lock
        # is held. Stored first and locked by a second statement, the row read as a dead owner's in
        # between, and another owner starting then deleted it (the sweep in hold_owner): this owner
        # was unknown from then on, and its leases were freed only by expiry.
        key, locked = con.execute(  # type: ignore[misc]  # one row: the insert's or the update's
            f"WITH shown AS (INSERT INTO {self.schema}.owners (owner, lock_key) "
            f"VALUES (%s, nextval('{self.schema}.owner_keys')) "
            "ON CONFLICT (owner) DO UPDATE SET since = now() RETURNING lock_key) "
            "SELECT lock_key, pg_try_advisory_lock(%s, lock_key) FROM shown",
            (owner, self._lock_space)).fetchone()
        return int(key) if locked else None

    def release_owner(self, owner: str) -> None:
        """``owner`` stops running anything: its lock is dropped, so its leases may be taken at once."""
        with self._owners_lock:
            key = self._held.pop(owner, None)
            if key is None or self._liveness is None:
                return
            try:
                self._liveness.execute("SELECT pg_advisory_unlock(%s, %s)", (self._lock_space, key))
            except psycopg.Error:
                pass  # the session is gone, and the lock with it

    @_reading
    def owner_alive(self, owner: str) -> bool | None:
        """``True`` while ``owner``'s session holds its lock, ``False`` once it ended, ``None`` for an
        owner never shown alive here (another machine's that cannot be seen, an older vow)."""
        if owner in self._held:
            return True
        with self._connection() as con:
            row = con.execute(f"SELECT w.owner IN (SELECT d.owner FROM {self.schema}.dead_owners d) "
                              f"FROM {self.schema}.owners w WHERE w.owner = %s", (owner,)).fetchone()
        return None if row is None else not row[0]

    def _liveness_connection(self) -> psycopg.Connection[Any]:
        """The session holding this process's owner locks; if it broke, a new one, with every owner
        held here shown alive again in it."""
        con = self._liveness
        if con is not None and not _session_ended(con):
            return con
        if con is not None:
            _log.warning("PostgreSQL store %s: the session showing this process alive ended; reconnecting",
                         self.url)
            self._liveness = None
            con.close()
        con = self._connect(long_idle=True)
        try:
            # The rows too, not only the locks: while the session was gone each owner read dead, and
            # an owner starting meanwhile deleted the rows of those holding no lease (hold_owner's
            # sweep). Locked again without its row, an owner is unknown to every worker, and when it
            # dies its leases wait for expiry instead of being taken at once.
            for owner in list(self._held):
                key = self._show_alive(con, owner)
                if key is None:
                    _log.warning("PostgreSQL store %s: owner %s is held by another session now; its leases "
                                 "are freed by expiry only", self.url, owner)
                    del self._held[owner]
                else:
                    self._held[owner] = key  # a new key when its row had been deleted
        except BaseException:
            con.close()
            raise
        self._liveness = con
        return con

    def check_owners(self) -> None:
        """Make sure every owner held here still shows alive, at one round trip: if the session
        showing them ended (a server restart ends every session), a new one shows them again.

        A claim makes sure too, but without a round trip (it sees a session that the server ended
        with a word, as a restart does); the lease keeper calls this every renewal interval
        (:class:`~vow.stores.base.CheckedOwnersStore`), so an idle owner is shown again within that
        interval whatever ended its session. :meth:`renew` does not: call this beside it."""
        self._keep_owners_shown(ask_server=True)

    def _keep_owners_shown(self, *, ask_server: bool) -> None:
        """Show the owners held here alive again if their session ended. ``ask_server``: find out by a
        round trip; otherwise from what the connection has received (see :func:`_session_ended`)."""
        with self._owners_lock:
            if not self._held or self._closed:
                return
            try:
                con = self._liveness_connection()
                if ask_server:
                    con.execute("SELECT 1")
                return
            except psycopg.Error:
                pass  # the session ended under the question: once more, with a new one
            try:
                self._liveness_connection()
            except psycopg.Error as exc:
                _log.warning("PostgreSQL store %s: cannot show this process alive (%s)", self.url,
                             self._scrub(str(exc)))

    # -- leases

    @_reading
    def claimable(self, *, limit: int = 100, now: float | None = None) -> list[PromiseRecord]:
        """Pending, unparked root workflows whose lease is free, expired (server clock) or a dead owner's."""
        if limit <= 0:
            return []
        s = self.schema
        columns = ", ".join("p." + c for c in _COLUMNS.split(", "))
        sql = (f"SELECT {columns} FROM {s}.promises p LEFT JOIN {s}.leases l ON l.root = p.id "
               "WHERE p.open_root "
               "AND (l.root IS NULL OR (l.parked IS NULL AND (l.owner = '' "
               "OR (l.expires_at <= coalesce(%b::float8, extract(epoch FROM clock_timestamp())::float8) "
               f"AND l.owner NOT IN (SELECT a.owner FROM {s}.live_owners a)) "
               f"OR l.owner IN (SELECT d.owner FROM {s}.dead_owners d)))) "
               "ORDER BY p.created_at, p.seq LIMIT %b")
        with self._connection() as con:
            rows = con.execute(sql, (now, limit)).fetchall()
        return [_record(row) for row in rows]

    def claim(self, root: str, owner: str, ttl: float, *, now: float | None = None,
              max_recoveries: int | None = None) -> Lease | None:
        """Take (or renew) the lease on ``root`` for ``ttl`` seconds; ``None`` if held by another owner or parked."""
        return self._claim([root], owner, ttl, now, max_recoveries, skip_locked=False).get(root)

    def claim_many(self, roots: Sequence[str], owner: str, ttl: float, *, now: float | None = None,
                   max_recoveries: int | None = None) -> dict[str, Lease]:
        """Claim the leases on ``roots`` in one transaction (rows being changed right now are skipped)."""
        return self._claim(roots, owner, ttl, now, max_recoveries, skip_locked=True)

    def _claim(self, roots: Sequence[str], owner: str, ttl: float, now: float | None, max_recoveries: int | None,
               *, skip_locked: bool) -> dict[str, Lease]:
        if not owner:
            raise ValueError("a lease owner must not be empty")
        refuse_unstorable(roots, LEASE_ROOT)
        roots = sorted(set(roots))
        if not roots:
            return {}
        # Leases taken while this process's owners read dead (their session ended: a server restart)
        # would be taken over at once by any worker. No round trip here unless the session ended.
        self._keep_owners_shown(ask_server=False)
        rows = self._write(lambda con: con.execute(
            self._sql_claim, (roots, owner, float(ttl), now, skip_locked, max_recoveries)).fetchall(), idempotent=True)
        taken = {}
        parking = []
        for root, holder, token, expires_at, recoveries, parked, status in rows:
            if status == "taken":
                taken[root] = Lease(root, holder, token, expires_at, recoveries, parked)
            elif status == "park":
                parking.append((root, holder, token, expires_at, recoveries))
        if parking:
            self._park(parking)
        return taken

    def _park(self, leases: list[tuple[str, str, int, float, int]]) -> None:
        """Park roots whose takeover would exceed ``max_recoveries`` (each only if unchanged since the claim
        read it)."""
        sql = (f"UPDATE {self.schema}.leases l SET owner = '', expires_at = 0, recoveries = x.rec, parked = x.reason "
               "FROM unnest(%b::text[], %b::text[], %b::int8[], %b::float8[], %b::int4[], %b::text[]) "
               "AS x(root, owner, token, expires_at, rec, reason) "
               "WHERE l.root = x.root AND l.owner = x.owner AND l.token = x.token AND l.expires_at = x.expires_at "
               "AND l.parked IS NULL")
        params = tuple(list(column) for column in zip(*leases)) + (
            [parked_reason(root, recoveries) for root, *_, recoveries in leases],)
        self._write(lambda con: con.execute(sql, params), idempotent=True)

    def renew(self, leases: Sequence[Lease], ttl: float, *, now: float | None = None) -> list[Lease]:
        """Extend the leases still held (same owner and token); the ones lost are left out."""
        leases = [lease for lease in leases if storable(lease.root)]  # one that is not was never held
        if not leases:
            return []
        sql = (f"WITH t AS (SELECT coalesce(%b::float8, extract(epoch FROM clock_timestamp())::float8) AS now) "
               f"UPDATE {self.schema}.leases l SET expires_at = t.now + %b::float8 "
               "FROM t, unnest(%b::text[], %b::text[], %b::int8[]) AS x(root, owner, token) "
               "WHERE l.root = x.root AND l.owner = x.owner AND l.token = x.token AND l.owner <> '' "
               "RETURNING l.root, l.owner, l.token, l.expires_at, l.recoveries, l.parked")
        params = (now, float(ttl), [x.root for x in leases], [x.owner for x in leases], [x.token for x in leases])
        rows = self._write(lambda con: con.execute(sql, params).fetchall(), idempotent=True)
        kept = {row[0]: Lease(*row) for row in rows}
        return [kept[x.root] for x in leases if x.root in kept and kept[x.root].token == x.token]

    def release(self, lease: Lease) -> None:
        """Give up ``lease`` if still held; its token is kept (tokens only grow) and its recoveries reset."""
        self.release_many([lease])

    def release_many(self, leases: Sequence[Lease]) -> None:
        """Release ``leases`` in one statement (each only if still held)."""
        leases = [lease for lease in leases if storable(lease.root)]  # one that is not was never held
        if not leases:
            return
        sql = (f"UPDATE {self.schema}.leases l SET owner = '', expires_at = 0, recoveries = 0 "
               "FROM unnest(%b::text[], %b::text[], %b::int8[]) AS x(root, owner, token) "
               "WHERE l.root = x.root AND l.owner = x.owner AND l.token = x.token AND l.owner <> ''")
        params = ([x.root for x in leases], [x.owner for x in leases], [x.token for x in leases])
        self._write(lambda con: con.execute(sql, params), idempotent=True)

    @_reading
    def lease(self, root: str) -> Lease | None:
        """The current lease row for ``root`` (held or not), or ``None``."""
        if not storable(root):
            return None
        with self._connection() as con:
            row = con.execute(f"SELECT root, owner, token, expires_at, recoveries, parked FROM {self.schema}.leases "
                              "WHERE root = %s", (root,)).fetchone()
        return None if row is None else Lease(*row)

    @_reading
    def lease_free(self, root: str) -> bool:
        """Whether ``root``'s lease may be claimed now: free, expired by the server's clock, or a dead owner's;
        never parked."""
        if not storable(root):  # never stored, and a claim of it is refused
            return False
        s = self.schema
        with self._connection() as con:
            row = con.execute(
                f"SELECT l.parked IS NULL AND (l.owner = '' OR (l.expires_at <= extract(epoch FROM clock_timestamp()) "
                f"AND l.owner NOT IN (SELECT a.owner FROM {s}.live_owners a)) "
                f"OR l.owner IN (SELECT d.owner FROM {s}.dead_owners d)) FROM {s}.leases l WHERE l.root = %s",
                (root,)).fetchone()
        return True if row is None else bool(row[0])

    @_reading
    def parked_leases(self) -> list[Lease]:
        """Every parked lease, ordered by root: through the index of them (``leases_parked``)."""
        with self._connection() as con:
            rows = con.execute(f"SELECT root, owner, token, expires_at, recoveries, parked FROM {self.schema}.leases "
                               "WHERE parked IS NOT NULL ORDER BY root").fetchall()
        return [Lease(*row) for row in rows]

    def unpark(self, root: str) -> bool:
        """Make a parked root claimable again, its recovery count reset; whether it was parked."""
        if not storable(root):
            return False
        sql = (f"UPDATE {self.schema}.leases SET parked = NULL, recoveries = 0, owner = '', expires_at = 0 "
               "WHERE root = %s AND parked IS NOT NULL")
        return bool(self._write(lambda con: con.execute(sql, (root,)).rowcount))

    # -- retention

    def delete_runs(self, roots: Sequence[str], *, settled_before: float) -> dict[str, int]:
        """Delete each run whose root promise settled before ``settled_before``: its whole tree and its
        lease, in one statement (so one transaction). Returns the records deleted per run deleted."""
        unique = [root for root in dict.fromkeys(roots) if storable(root)]
        if not unique:
            return {}
        s = self.schema
        # A settled root never becomes pending again: a run chosen here is finished for good.
        sql = (f"WITH eligible AS (SELECT id FROM {s}.promises WHERE id = ANY(%b::text[]) AND parent IS NULL "
               "AND state <> 'pending' AND settled_at < %b::float8), "
               f"gone AS (DELETE FROM {s}.promises p USING eligible e WHERE p.root = e.id RETURNING p.root), "
               f"unleased AS (DELETE FROM {s}.leases l USING eligible e WHERE l.root = e.id) "
               "SELECT root, count(*) FROM gone GROUP BY root")
        rows = self._write(lambda con: con.execute(sql, (unique, float(settled_before))).fetchall(), idempotent=True)
        return {root: int(n) for root, n in rows}

    # -- schedules

    @_reading
    def schedules(self) -> list[ScheduleRecord]:
        """Every stored schedule, ordered by name."""
        with self._connection() as con:
            rows = con.execute(f"SELECT name, definition, paused, cursor, updated_at FROM {self.schema}.schedules "
                               "ORDER BY name").fetchall()
        return [ScheduleRecord(*row) for row in rows]

    def put_schedule(self, schedule: ScheduleRecord) -> None:
        """Create schedule ``schedule.name`` or replace every field of it; ``updated_at`` is the server's clock."""
        sql = (f"INSERT INTO {self.schema}.schedules (name, definition, paused, cursor, updated_at) "
               "VALUES (%s, %s, %s, %s, extract(epoch FROM clock_timestamp())::float8) "
               "ON CONFLICT (name) DO UPDATE SET definition = EXCLUDED.definition, paused = EXCLUDED.paused, "
               "cursor = EXCLUDED.cursor, updated_at = EXCLUDED.updated_at")
        params = (schedule.name, schedule.definition, schedule.paused, schedule.cursor)
        self._write(lambda con: con.execute(sql, params), idempotent=True)

    def advance_schedule(self, name: str, cursor: float) -> bool:
        """Move schedule ``name``'s cursor forward to ``cursor`` (never back); whether it moved."""
        sql = (f"UPDATE {self.schema}.schedules SET cursor = %s WHERE name = %s "
               "AND (cursor IS NULL OR cursor < %s)")
        return bool(self._write(lambda con: con.execute(sql, (float(cursor), name, float(cursor))).rowcount,
                                idempotent=True))

    def delete_schedule(self, name: str) -> bool:
        """Delete schedule ``name``; whether it existed."""
        sql = f"DELETE FROM {self.schema}.schedules WHERE name = %s"
        return bool(self._write(lambda con: con.execute(sql, (name,)).rowcount))

    # -- rate limits

    def take_token(self, bucket: str, per_second: float, burst: int, *, now: float | None = None) -> float:
        """Take a token from ``bucket`` (shared by every worker of the store), or say how long until
        there is one; one transaction with the bucket's row locked, on the server's clock."""
        refuse_unstorable([bucket], BUCKET)
        def take(con: psycopg.Connection[Any]) -> float:
            with con.transaction():
                at = now if now is not None else float(_one(con, _SERVER_NOW))
                con.execute(f"INSERT INTO {self.schema}.buckets (name, tokens, stamp) VALUES (%s, %s, %s) "
                            "ON CONFLICT (name) DO NOTHING", (bucket, float(burst), at))
                tokens, stamp = con.execute(f"SELECT tokens, stamp FROM {self.schema}.buckets WHERE name = %s "
                                            "FOR UPDATE", (bucket,)).fetchone()  # type: ignore[misc]
                wait, tokens, stamp = bucket_after_take(tokens, stamp, per_second, burst, at)
                con.execute(f"UPDATE {self.schema}.buckets SET tokens = %s, stamp = %s WHERE name = %s",
                            (tokens, stamp, bucket))
                return float(wait)

        return float(self._write(take))

    def hold_bucket(self, bucket: str, seconds: float, *, now: float | None = None) -> None:
        """Give no token from ``bucket`` for ``seconds`` from now (never shortening a longer hold)."""
        refuse_unstorable([bucket], BUCKET)
        def hold(con: psycopg.Connection[Any]) -> None:
            with con.transaction():
                at = now if now is not None else float(_one(con, _SERVER_NOW))
                con.execute(f"INSERT INTO {self.schema}.buckets (name, tokens, stamp) VALUES (%s, 0, %s) "
                            "ON CONFLICT (name) DO NOTHING", (bucket, at))
                tokens, stamp = con.execute(f"SELECT tokens, stamp FROM {self.schema}.buckets WHERE name = %s "
                                            "FOR UPDATE", (bucket,)).fetchone()  # type: ignore[misc]
                tokens, stamp = bucket_after_hold(tokens, stamp, seconds, at)
                con.execute(f"UPDATE {self.schema}.buckets SET tokens = %s, stamp = %s WHERE name = %s",
                            (tokens, stamp, bucket))

        self._write(hold)

    def close(self) -> None:
        """Close every connection (owners held here read as dead from now on); the store is unusable afterwards."""
        with self._pool_lock, self._owners_lock:
            self._closed = True
            pool, self._pool = self._pool, None
            liveness, self._liveness = self._liveness, None
            self._held = {}
            self._subscribers = {}
            listener = self._listener
        if pool is not None:
            pool.close()
        if liveness is not None:
            liveness.close()
        if listener is not None and listener is not threading.current_thread():
            listener.join(5)


def _session_ended(con: psycopg.Connection[Any]) -> bool:
    """Whether the server ended the idle session ``con``. psycopg learns it only at the next
    statement; but on a session where nothing is asked, anything the server sent is its goodbye (a
    shutdown's or a terminate's error, then the end of the stream): so a round trip is made only
    when something arrived, to be sure."""
    if con.closed or con.broken:
        return True
    arrived = select.poll()
    arrived.register(con.pgconn.socket, select.POLLIN)
    if not arrived.poll(0):
        return False
    try:
        con.execute("SELECT 1")
    except psycopg.Error:
        return True
    return False


def _check_pooled(con: psycopg.Connection[Any]) -> None:
    """Refuse a pooled connection whose session the server ended while it sat in the pool (a restart
    ends them all): psycopg would learn it only from the statement it is given next, which then
    fails, and a write that fails so cannot be tried again (it may have committed). Costs a
    zero-timeout poll, and a round trip only when the server sent something."""
    if _session_ended(con):
        raise psycopg.OperationalError("the server ended this idle session")


def _size(item: PromiseRecord | Settle) -> int:
    """At least the bytes of text ``item`` adds to a call of ``apply`` (its ASCII texts exactly, what
    vow's JSON is; 4 a character otherwise, UTF-8's most; ``isascii`` is O(1))."""
    texts = ((item.id, item.args, item.value, item.func, item.root, item.parent, item.idempotency_key)
             if isinstance(item, PromiseRecord) else (item.id, item.value))
    return 64 + sum(len(t) if t.isascii() else 4 * len(t) for t in texts if t)


def _parts(creates: list[PromiseRecord], settles: list[Settle],
           fences: dict[str, int]) -> list[tuple[list[PromiseRecord], list[Settle]]]:
    """A round split into parts of at most :data:`STATEMENT_BYTES` of text each (or one record):
    ``[(creates, settles)]`` for the usual round. Creates come before settles, as in one call (a
    create sees its parent as it was before the round); settles of fenced roots come last, so that
    a part before them finds every fenced root pending."""
    budget = STATEMENT_BYTES
    # At most 4 bytes a character: a usual round is far below the budget, and this is cheap to tell.
    chars = (sum(len(r.id) + len(r.args) + len(r.value or "") + len(r.func) + len(r.root) + len(r.parent or "")
                 + len(r.idempotency_key) for r in creates)
             + sum(len(s.id) + len(s.value or "") for s in settles))
    items: list[PromiseRecord | Settle] = [*creates, *settles]
    if 4 * chars + 64 * len(items) <= budget or sum(map(_size, items)) <= budget:
        return [(creates, settles)]
    items = [*creates, *(s for s in settles if s.id not in fences), *(s for s in settles if s.id in fences)]
    parts: list[tuple[list[PromiseRecord], list[Settle]]] = [([], [])]
    used = 0
    for item in items:
        size = _size(item)
        if used and used + size > budget:
            parts.append(([], []))
            used = 0
        used += size
        if isinstance(item, PromiseRecord):
            parts[-1][0].append(item)
        else:
            parts[-1][1].append(item)
    return parts


def _one(con: psycopg.Connection[Any], sql: str, params: Sequence[Any] = ()) -> Any:
    """The first value of the one row ``sql`` returns."""
    row = con.execute(sql, params).fetchone()
    if row is None:
        raise StoreError(f"no row from {sql.split()[0]} where one was expected")
    return row[0]


class _Conflict(Exception):
    """The server refused a fenced batch: ``detail`` names the ids past their deadline and those that won."""

    def __init__(self, detail: dict[str, list[str]]) -> None:
        super().__init__("conflict")
        self.detail = detail


# -- connections never cross a fork ------------------------------------------------------------
#
# A forked child must neither use its parent's connections nor end them: closing one, or just
# letting it be garbage-collected (libpq then says goodbye to the server), would end the
# parent's session. So the child points each inherited socket at /dev/null (its messages go
# nowhere, the parent's socket stays open) and keeps the objects forever.

_open_stores: weakref.WeakSet[PostgresStore] = weakref.WeakSet()
_connections: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
_inherited: list[Any] = []


def _detach_after_fork() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for con in list(_connections):
            try:
                fd = con.pgconn.socket
            except Exception:  # noqa: BLE001 - closed or never connected: nothing to detach
                continue
            os.dup2(devnull, fd)
            _inherited.append(con)
    finally:
        os.close(devnull)
    for store in list(_open_stores):
        store._forget_after_fork()


os.register_at_fork(after_in_child=_detach_after_fork)


def _pick(name: str, in_url: Any, given: Any, default: Any) -> Any:
    """An option given in the URL or as a keyword (not both, unless they agree), else its default."""
    if in_url is not None and given is not None and str(in_url) != str(given):
        raise ConfigError(f"postgresql store option {name}: given twice, as {in_url!r} in the URL and as {given!r}")
    return in_url if in_url is not None else given if given is not None else default


def open_postgres(options: PostgresOptions) -> PostgresStore:
    """A PostgreSQL store from its options (each may also be given in the URL's query)."""
    return PostgresStore(options.url, schema=options.schema, pool_size=options.pool_size,
                         synchronous_commit=options.synchronous_commit)
