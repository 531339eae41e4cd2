"""The ``postgresql`` store: promises and leases on a PostgreSQL server shared by many machines.

Every rule of :mod:`vow.stores.base` holds here as on SQLite; what changes is who judges time
and how writers meet:

* **One round trip per engine round.** :meth:`PostgresStore.apply` is one call of the
  server-side function ``apply`` (see :mod:`vow_postgres.schema`): one statement, so one
  transaction, with the fences checked and the lease rows locked in it. A batch either commits
  whole or raises and writes nothing.
* **The server's clock.** Lease expiry is judged by ``clock_timestamp()`` on the server, never by
  the clock of the machine asking (``now=`` overrides it, for tests). So a worker on another
  machine, whatever its clock says, loses a lease only when the server says it expired.
* **Claims do not queue.** A claim locks lease rows with ``FOR UPDATE SKIP LOCKED``: a row
  another worker is claiming or committing under right now is skipped, not waited for.
* **A dead owner on this machine** is recognised as on SQLite (its process is gone), and its
  lease is free at once; an owner on another machine is free only once its lease expired.

Connections come from a :class:`psycopg_pool.ConnectionPool` opened on first use (so a client
made before a ``fork`` opens its own connections in the child), in autocommit mode: each
statement is its own transaction, and the frequent ones are prepared on the server.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
import weakref
from typing import Any, Callable, Iterable, Sequence, TypeVar

import attrs
import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from vow.errors import ConfigError, LeaseLostError, PromiseNotFoundError, StoreError
from vow.records import Batch, BatchResult, Kind, Lease, PromiseRecord, State
from vow.stores.base import StoreOperations, new_owner_id, owner_is_dead

from vow_postgres import schema as _schema
from vow_postgres.conninfo import redact, scrub, secrets, split_url

_log = logging.getLogger("vow.postgres")

DEFAULT_POOL_SIZE = 10
"""Connections a store opens at most (the engine, readers, clients settling from outside)."""

_COLUMNS = ("id, state, kind, root, func, args, value, parent, timeout, idempotency_key, attempt, "
            "created_at, settled_at, tags::text")
_STATES = {s.value: s for s in State}
_KINDS = {k.value: k for k in Kind}
_PENDING = State.PENDING
_EMPTY_TAGS = "{}"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_parsed_tags: dict[str, dict[str, str]] = {}
_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)
_RETRIES = 8


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
    """Connections this store opens at most (default 10; also ``?pool_size=`` in the URL)."""


F = TypeVar("F", bound=Callable[..., Any])


def _reading(method: F) -> F:
    """Run a read; a connection that broke (a server restart) is replaced and the read tried once more."""

    @functools.wraps(method)
    def wrapper(self: PostgresStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except psycopg.OperationalError as exc:
            _log.info("PostgreSQL store %s: read failed (%s); trying once more", self.url, self._scrub(str(exc)))
        except psycopg.Error as exc:
            raise self._error(exc) from None
        try:
            return method(self, *args, **kwargs)
        except psycopg.Error as exc:
            raise self._error(exc) from None

    return wrapper  # type: ignore[return-value]


class PostgresStore(StoreOperations):
    """Promises and leases on a PostgreSQL server; safe for many threads, processes and machines."""

    def __init__(self, url: str = "postgresql://", *, schema: str | None = None,
                 pool_size: int | None = None) -> None:
        libpq_url, ours = split_url(url)
        hidden = secrets(url)
        try:
            psycopg.conninfo.conninfo_to_dict(libpq_url)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"postgresql store URL {redact(url)}: {scrub(str(exc), hidden)}") from None
        schema = _pick("schema", ours.get("schema"), schema, _schema.DEFAULT_SCHEMA)
        raw_size = _pick("pool_size", ours.get("pool_size"), pool_size, DEFAULT_POOL_SIZE)
        try:
            pool_size = int(raw_size)
        except (TypeError, ValueError):
            pool_size = None
        if not _schema.valid_schema_name(schema):
            raise ConfigError(f"postgresql store option schema: expected a lower-case name of letters, digits "
                              f"and _ (at most 63), got {schema!r}")
        if pool_size is None or pool_size < 2:
            raise ConfigError(f"postgresql store option pool_size: expected a whole number >= 2, got {raw_size!r}")
        url = libpq_url
        self._conninfo = url
        self._secrets = hidden
        self.schema = schema
        self.pool_size = pool_size
        shown = redact(url)
        extra = [f"schema={schema}"] if schema != _schema.DEFAULT_SCHEMA else []
        extra += [f"pool_size={pool_size}"] if pool_size != DEFAULT_POOL_SIZE else []
        if extra:
            shown += ("&" if "?" in shown else "?") + "&".join(extra)
        self.url = shown
        self._pool: ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._closed = False
        self._alive_local: set[str] = set()
        self._local_prefix = new_owner_id().split(":", 1)[0] + ":"
        s = schema
        self._sql_apply = (f"SELECT * FROM {s}.apply(%b::text[], %b::int8[], %b::text[], %b::text[], %b::text[], "
                           "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::float8[], %b::text[], "
                           "%b::int8[], %b::float8[], %b::float8[], %b::text[], %b::text[], %b::text[], %b::text[], "
                           "%b::float8[], %b::text[], %b::int8[])")
        self._sql_claim = f"SELECT * FROM {s}.claim(%b::text[], %b::text, %b::float8, %b::float8, %b::bool, %b::text[])"
        self._select = f"SELECT {_COLUMNS} FROM {s}.promises"
        self._setup()
        _open_stores.add(self)

    def __repr__(self) -> str:
        return f"<PostgresStore {self.url}>"

    # -- opening

    def _setup(self) -> None:
        """Check the schema's version (creating the schema on first use) on a connection of its own."""
        try:
            with self._connect() as con:
                version = self._read_version(con)
                if version is None:
                    self._create_schema(con)
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._conninfo, autocommit=True, fallback_application_name="vow")

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
        version = con.execute(f"SELECT max(version) FROM {self.schema}.version").fetchone()[0]
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
                    kwargs={"autocommit": True, "prepare_threshold": 1, "fallback_application_name": "vow"},
                    name=f"vow-{self.schema}")
            return self._pool

    def _connection(self) -> Any:
        try:
            return self._get_pool().connection()
        except PoolTimeout as exc:
            raise StoreError(f"PostgreSQL store {self.url}: no connection to the server within "
                             f"60 s ({self._scrub(str(exc))})") from None

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    def _error(self, exc: BaseException) -> StoreError:
        return StoreError(f"PostgreSQL store {self.url}: {self._scrub(str(exc).strip())}")

    def _fork_child(self) -> None:
        """In a forked child: forget the parent's connections without touching them (they are the parent's)."""
        if self._pool is not None:
            _inherited.append(self._pool)  # never garbage-collected here: closing would end the parent's sessions
        self._pool = None
        self._pool_lock = threading.Lock()

    # -- writes

    def apply(self, batch: Batch) -> BatchResult:
        """Apply ``batch`` in one transaction (one statement): fences, creates, settles, attempts; all or nothing."""
        if not batch and not batch.fences:
            return BatchResult()
        for s in batch.settles:
            if s.state is _PENDING:
                raise ValueError(f"cannot settle {s.id!r} as pending")
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
        settles = batch.settles
        fences = sorted(batch.fences.items())
        params = (
            [root for root, _ in fences], [token for _, token in fences],
            [r.id for r in creates], [r.state._value_ for r in creates], [r.kind._value_ for r in creates],
            [r.root for r in creates], [r.func for r in creates], [r.args for r in creates],
            [r.value for r in creates], [r.parent for r in creates], [r.timeout for r in creates],
            [r.idempotency_key for r in creates], [r.attempt for r in creates], [r.created_at for r in creates],
            [r.settled_at for r in creates], [_dumps(r.tags) if r.tags else _EMPTY_TAGS for r in creates],
            [s.id for s in settles], [s.state._value_ for s in settles], [s.value for s in settles],
            [s.settled_at for s in settles],
            list(batch.attempts), list(batch.attempts.values()),
        )
        rows = self._write(lambda con: con.execute(self._sql_apply, params).fetchall())
        existing: dict[str, PromiseRecord] = {}
        conflicts: dict[str, PromiseRecord] = {}
        for row in rows:
            (existing if row[0] == "existing" else conflicts)[row[1]] = _record(row[1:])
        for rid in duplicates:  # a second create of an id in one batch meets the first
            existing.setdefault(rid, firsts[rid])
        return BatchResult(existing, conflicts)

    def _write(self, work: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        """Run one write statement; a deadlock or serialization failure (nothing written) is tried again."""
        for attempt in range(_RETRIES):
            try:
                with self._connection() as con:
                    return work(con)
            except _RETRYABLE as exc:
                if attempt == _RETRIES - 1:
                    raise self._error(exc) from None
                time.sleep(0.001 * 2 ** attempt)
            except pg_errors.RaiseException as exc:  # only our functions raise; never retried
                raise self._raised(exc) from None
            except psycopg.Error as exc:
                coded = self._raised(exc)
                raise coded from None
        raise AssertionError("unreachable")

    def _raised(self, exc: psycopg.Error) -> Exception:
        """The vow error a coded exception of a server-side function stands for (else a StoreError)."""
        state = exc.sqlstate
        detail = exc.diag.message_detail or ""
        if state == _schema.LEASE_LOST:
            lost = json.loads(detail)
            error = LeaseLostError(f"lease lost on {', '.join(map(repr, lost))}: another worker took over, "
                                   "or the workflow was settled (canceled) from outside")
            error.roots = lost  # type: ignore[attr-defined]
            return error
        if state == _schema.NOT_FOUND:
            return PromiseNotFoundError(f"cannot settle {detail!r}: no promise with that id")
        return self._error(exc)

    # -- reads

    @_reading
    def get(self, id: str) -> PromiseRecord | None:
        """The record with ``id``, or ``None``."""
        with self._connection() as con:
            row = con.execute(self._select + " WHERE id = %s", (id,)).fetchone()
        return None if row is None else _record(row)

    @_reading
    def get_many(self, ids: Iterable[str]) -> dict[str, PromiseRecord]:
        """The records among ``ids`` that exist, by id (one statement: one snapshot)."""
        unique = list(dict.fromkeys(ids))
        if not unique:
            return {}
        with self._connection() as con:
            rows = con.execute(self._select + " WHERE id = ANY(%b::text[])", (unique,)).fetchall()
        return {row[0]: _record(row) for row in rows}

    @_reading
    def children(self, parent: str) -> list[PromiseRecord]:
        """Direct children of ``parent``, oldest first."""
        with self._connection() as con:
            rows = con.execute(self._select + " WHERE parent = %s ORDER BY created_at, seq", (parent,)).fetchall()
        return [_record(row) for row in rows]

    @_reading
    def tree(self, root: str) -> list[PromiseRecord]:
        """Every record whose root is ``root`` (the root included), oldest first."""
        with self._connection() as con:
            rows = con.execute(self._select + " WHERE root = %s ORDER BY created_at, seq", (root,)).fetchall()
        return [_record(row) for row in rows]

    @_reading
    def search(self, *, state: State | None = None, kind: Kind | None = None, root: str | None = None,
               roots_only: bool = False, tag: tuple[str, str] | None = None,
               limit: int = 1000) -> list[PromiseRecord]:
        """Records matching every given filter, newest first, at most ``limit``."""
        if limit <= 0:
            return []
        where: list[str] = []
        params: list[Any] = []
        if state is not None:
            where.append("state = %s")
            params.append(State(state).value)
        if kind is not None:
            where.append("kind = %s")
            params.append(Kind(kind).value)
        if root is not None:
            where.append("root = %s")
            params.append(root)
        if roots_only:
            where.append("parent IS NULL")
        if tag is not None:
            where.append("tags ->> %s = %s")
            params += [tag[0], tag[1]]
        sql = self._select + (" WHERE " + " AND ".join(where) if where else "")
        with self._connection() as con:
            rows = con.execute(sql + " ORDER BY created_at DESC, seq DESC LIMIT %s", (*params, limit)).fetchall()
        return [_record(row) for row in rows]

    # -- time and leases

    @_reading
    def now(self) -> float:
        """The server's clock, in epoch seconds: what lease expiry is judged by."""
        with self._connection() as con:
            return con.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()[0]

    @_reading
    def claimable(self, *, limit: int = 100, now: float | None = None) -> list[PromiseRecord]:
        """Pending root workflows whose lease is free, expired (server clock) or held by a dead local process."""
        if limit <= 0:
            return []
        columns = ", ".join("p." + c for c in _COLUMNS.split(", "))
        sql = (f"SELECT {columns}, l.owner FROM {self.schema}.promises p "
               f"LEFT JOIN {self.schema}.leases l ON l.root = p.id "
               "WHERE p.state = 'pending' AND p.parent IS NULL AND p.kind = 'workflow' "
               "AND (l.root IS NULL OR l.owner = '' "
               "OR l.expires_at <= coalesce(%b::float8, extract(epoch FROM clock_timestamp())::float8) "
               "OR (starts_with(l.owner, %b) AND l.owner <> ALL(%b::text[]))) "
               "ORDER BY p.created_at, p.seq LIMIT %b")
        # Leases of live processes on this machine are left out by the query once known alive; an owner
        # seen for the first time is checked here, and the query runs again if it hid too much.
        while True:
            alive = sorted(self._alive_local)
            with self._connection() as con:
                rows = con.execute(sql, (now, self._local_prefix, alive, limit)).fetchall()
            found = []
            hidden = False
            for row in rows:
                owner = row[14]
                if owner and owner.startswith(self._local_prefix) and owner not in alive:
                    if not owner_is_dead(owner):
                        self._alive_local.add(owner)
                        hidden = True
                        continue
                found.append(_record(row))
            if not hidden or len(rows) < limit:
                return found[:limit]

    def claim(self, root: str, owner: str, ttl: float, *, now: float | None = None) -> Lease | None:
        """Take (or renew) the lease on ``root`` for ``ttl`` seconds; ``None`` if another live owner holds it."""
        return self._claim([root], owner, ttl, now, skip_locked=False).get(root)

    def claim_many(self, roots: Sequence[str], owner: str, ttl: float, *,
                   now: float | None = None) -> dict[str, Lease]:
        """Claim the leases on ``roots`` in one transaction (rows being changed right now are skipped)."""
        return self._claim(roots, owner, ttl, now, skip_locked=True)

    def _claim(self, roots: Sequence[str], owner: str, ttl: float, now: float | None, *,
               skip_locked: bool) -> dict[str, Lease]:
        if not owner:
            raise ValueError("a lease owner must not be empty")
        roots = sorted(set(roots))
        if not roots:
            return {}
        taken: dict[str, Lease] = {}
        dead: list[str] = []
        while True:
            rows = self._write(lambda con: con.execute(
                self._sql_claim, (roots, owner, float(ttl), now, skip_locked, dead)).fetchall())
            held = []
            for root, holder, token, expires_at, was_taken in rows:
                if was_taken:
                    taken[root] = Lease(root, holder, token, expires_at)
                elif holder.startswith(self._local_prefix) and holder not in dead and owner_is_dead(holder):
                    held.append(root)
                    dead.append(holder)
            if not held:
                return taken
            roots = held  # held by processes of this machine that are gone: claim those again

    def renew(self, leases: Sequence[Lease], ttl: float, *, now: float | None = None) -> list[Lease]:
        """Extend the leases still held (same owner and token); the ones lost are left out."""
        if not leases:
            return []
        sql = (f"WITH t AS (SELECT coalesce(%b::float8, extract(epoch FROM clock_timestamp())::float8) AS now) "
               f"UPDATE {self.schema}.leases l SET expires_at = t.now + %b::float8 "
               "FROM t, unnest(%b::text[], %b::text[], %b::int8[]) AS x(root, owner, token) "
               "WHERE l.root = x.root AND l.owner = x.owner AND l.token = x.token "
               "RETURNING l.root, l.owner, l.token, l.expires_at")
        params = (now, float(ttl), [x.root for x in leases], [x.owner for x in leases], [x.token for x in leases])
        rows = self._write(lambda con: con.execute(sql, params).fetchall())
        kept = {row[0]: Lease(*row) for row in rows}
        return [kept[x.root] for x in leases if x.root in kept and kept[x.root].token == x.token]

    def release(self, lease: Lease) -> None:
        """Give up ``lease`` if still held; its token is kept so tokens only grow."""
        self.release_many([lease])

    def release_many(self, leases: Sequence[Lease]) -> None:
        """Release ``leases`` in one statement (each only if still held; tokens are kept)."""
        if not leases:
            return
        sql = (f"UPDATE {self.schema}.leases l SET owner = '', expires_at = 0 "
               "FROM unnest(%b::text[], %b::text[], %b::int8[]) AS x(root, owner, token) "
               "WHERE l.root = x.root AND l.owner = x.owner AND l.token = x.token")
        params = ([x.root for x in leases], [x.owner for x in leases], [x.token for x in leases])
        self._write(lambda con: con.execute(sql, params))

    @_reading
    def lease(self, root: str) -> Lease | None:
        """The current lease row for ``root`` (held or not), or ``None``."""
        with self._connection() as con:
            row = con.execute(f"SELECT root, owner, token, expires_at FROM {self.schema}.leases WHERE root = %s",
                              (root,)).fetchone()
        return None if row is None else Lease(*row)

    def close(self) -> None:
        """Close every connection; the store is unusable afterwards."""
        with self._pool_lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


# A connection must never cross a fork: a forked child leaves its parent's alone and opens its own.
_open_stores: "weakref.WeakSet[PostgresStore]" = weakref.WeakSet()
_inherited: list[Any] = []
os.register_at_fork(after_in_child=lambda: [store._fork_child() for store in list(_open_stores)])


def _pick(name: str, in_url: Any, given: Any, default: Any) -> Any:
    """An option given in the URL or as a keyword (not both, unless they agree), else its default."""
    if in_url is not None and given is not None and str(in_url) != str(given):
        raise ConfigError(f"postgresql store option {name}: given twice, as {in_url!r} in the URL and as {given!r}")
    return in_url if in_url is not None else given if given is not None else default


def open_postgres(options: PostgresOptions) -> PostgresStore:
    """A PostgreSQL store from its options (``schema=`` and ``pool_size=`` may also be in the URL)."""
    return PostgresStore(options.url, schema=options.schema, pool_size=options.pool_size)
