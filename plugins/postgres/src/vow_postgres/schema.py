"""The tables and server-side functions of the PostgreSQL store, and their version.

Everything lives in one schema (``vow`` unless the URL says ``?schema=``):

* ``version``: the schema version this store was created with (:data:`SCHEMA_VERSION`); a
  newer one is refused and nothing is altered;
* ``promises``: one row per promise record; ``seq`` (an identity) orders records created at the
  same ``created_at``, as insertion order does in the other stores. Only what every query needs
  is indexed (id, root, the roots, the pending roots, the root workflows), and never the state: so a settle, the most
  frequent write, rewrites its row in place without touching an index (a HOT update);
* ``leases``: one row per root workflow ever claimed: owner, fencing token, expiry (epoch
  seconds on the server's clock), takeovers in a row (``recoveries``) and why it is parked (the
  parked ones indexed: :data:`ADDED_INDEXES`);
* ``owners``: every lease owner that showed it is alive, with the key of the advisory lock its
  process holds in a session of its own. The server drops that lock the moment the session
  ends, however the process died, so every worker on every machine can tell a dead owner (row,
  no lock) from a live one (row, lock) and from one it cannot judge (no row);
* ``schedules`` and ``buckets``: stored schedules, and the token buckets of shared rate limits;
* ``changes``: the feed of outside writes, numbered without gaps in commit order (writers take
  a transaction lock first), announced with ``NOTIFY`` on the channel :func:`channel` names.

The writes are PL/pgSQL functions so that one engine round is one statement, one round trip
and one transaction: ``apply`` checks the fences (locking the leases, so a takeover waits for
the commit in progress), inserts, settles (timing out what is past its deadline on the server's
clock), sets attempts and appends to the change feed, or raises a coded error that writes
nothing. A small batch (at most :data:`SMALL_BATCH` rows of each kind) runs on plans the session
made once, on the indexes; a larger one is planned for its size. ``claim`` takes leases with
``FOR UPDATE SKIP LOCKED``, so workers racing for the same roots never wait on each other.
"""

from __future__ import annotations

import functools
import hashlib
import re
import zlib

SCHEMA_VERSION = 1
"""The layout this vow-postgres creates and reads; a schema recorded with a newer one is refused."""

DEFAULT_SCHEMA = "vow"
FEED_WINDOW = 10_000
"""How many outside writes the change feed keeps (as the other stores do)."""
SMALL_BATCH = 32
"""The most rows of each kind (fences, creates, settles, attempts) ``apply`` runs on the plans it
keeps for the session; larger batches are planned for their size at each call."""
# \A and \Z, not ^ and $: "$" also matches before a final line break (?schema=vow%0A), which SQL reads as a space.
_NAME = re.compile(r"\A[a-z_][a-z0-9_]{0,62}\Z")

# SQLSTATEs of the errors the functions raise (class "VW" is not used by PostgreSQL).
LEASE_LOST = "VWL01"
NOT_FOUND = "VWN01"
CONFLICT = "VWC01"


def valid_schema_name(name: str) -> bool:
    """Whether ``name`` is a schema name used unquoted here (lower-case letters, digits, ``_``)."""
    return bool(_NAME.match(name))


def channel(schema: str) -> str:
    """The ``LISTEN``/``NOTIFY`` channel of the change feed of ``schema``."""
    return f"{schema}_changes"


def lock_space(schema: str) -> int:
    """The first key of the advisory locks of ``schema`` (owners' liveness, the feed's writers)."""
    return zlib.crc32(f"vow {schema}".encode()) & 0x7FFFFFFF


_TABLES = """
CREATE SCHEMA IF NOT EXISTS {s};

CREATE TABLE {s}.version (
    version integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {s}.promises (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    id text NOT NULL PRIMARY KEY,
    state text NOT NULL,
    kind text NOT NULL,
    root text NOT NULL,
    func text NOT NULL,
    args text NOT NULL,
    value text,
    parent text,
    timeout double precision,
    idempotency_key text NOT NULL,
    attempt bigint NOT NULL,
    created_at double precision NOT NULL,
    settled_at double precision,
    tags json NOT NULL,
    -- A pending root workflow (what workers claim). Indexed instead of "state", which no index
    -- names: so settling a step changes no indexed value and is a HOT update (no index writes).
    open_root boolean GENERATED ALWAYS AS (state = 'pending' AND parent IS NULL AND kind = 'workflow') STORED
) WITH (fillfactor = 80);
CREATE INDEX promises_root ON {s}.promises (root, created_at, seq);
CREATE INDEX promises_roots ON {s}.promises (created_at, seq) WHERE parent IS NULL;
CREATE INDEX promises_open_roots ON {s}.promises (created_at, seq) WHERE open_root;
CREATE INDEX promises_runs ON {s}.promises (created_at, id COLLATE "C") WHERE parent IS NULL AND kind = 'workflow';

CREATE TABLE {s}.leases (
    root text NOT NULL PRIMARY KEY,
    owner text NOT NULL,
    token bigint NOT NULL,
    expires_at double precision NOT NULL,
    recoveries integer NOT NULL DEFAULT 0,
    parked text
);
CREATE INDEX leases_held ON {s}.leases (owner) WHERE owner <> '';
CREATE INDEX leases_parked ON {s}.leases (root) WHERE parked IS NOT NULL;

CREATE SEQUENCE {s}.owner_keys AS integer MINVALUE 1 MAXVALUE 2147483647 CYCLE;
CREATE TABLE {s}.owners (
    owner text NOT NULL PRIMARY KEY,
    lock_key integer NOT NULL UNIQUE,
    since timestamptz NOT NULL DEFAULT now()
);
CREATE VIEW {s}.dead_owners AS
    SELECT w.owner FROM {s}.owners w
     WHERE NOT EXISTS (
        SELECT 1 FROM pg_locks k
         WHERE k.locktype = 'advisory' AND k.granted AND k.objsubid = 2
           AND k.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
           AND k.classid = {ns}::oid AND k.objid = w.lock_key::oid);
CREATE VIEW {s}.live_owners AS
    SELECT w.owner FROM {s}.owners w WHERE w.owner NOT IN (SELECT d.owner FROM {s}.dead_owners d);

CREATE TABLE {s}.schedules (
    name text NOT NULL PRIMARY KEY,
    definition text NOT NULL,
    paused boolean NOT NULL,
    cursor double precision,
    updated_at double precision NOT NULL
);

CREATE TABLE {s}.buckets (
    name text NOT NULL PRIMARY KEY,
    tokens double precision NOT NULL,
    stamp double precision NOT NULL
);

CREATE TABLE {s}.changes (
    seq bigint NOT NULL PRIMARY KEY,
    root text NOT NULL,
    id text NOT NULL
);
"""

_RECORD_COLUMNS = """id text, state text, kind text, root text, func text, args text, value text, parent text,
    timeout double precision, idempotency_key text, attempt bigint, created_at double precision,
    settled_at double precision, tags text"""
_P_COLUMNS = ("p.id, p.state, p.kind, p.root, p.func, p.args, p.value, p.parent, p.timeout, p.idempotency_key, "
              "p.attempt, p.created_at, p.settled_at, p.tags::text")

# A resolve or reject of a pending promise (not a sleep) after its deadline times it out instead.
_LATE = "(x.st IN ('resolved', 'rejected') AND p.kind <> 'sleep' AND p.timeout <= t)"

_FUNCTIONS = """
CREATE FUNCTION {s}.json_text(t text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    -- The JSON string Python's json.dumps writes (ensure_ascii): so the store's texts match vow's.
    SELECT '"' || coalesce(string_agg(CASE
            WHEN c = '"' THEN '\\"' WHEN c = '\\' THEN '\\\\'
            WHEN c = E'\\n' THEN '\\n' WHEN c = E'\\r' THEN '\\r' WHEN c = E'\\t' THEN '\\t'
            WHEN c = E'\\b' THEN '\\b' WHEN c = E'\\f' THEN '\\f'
            WHEN ascii(c) BETWEEN 32 AND 126 THEN c
            WHEN ascii(c) < 65536 THEN '\\u' || lpad(to_hex(ascii(c)), 4, '0')
            ELSE '\\u' || to_hex(55296 + ((ascii(c) - 65536) >> 10))
              || '\\u' || to_hex(56320 + ((ascii(c) - 65536) & 1023))
        END, '' ORDER BY n), '') || '"'
      FROM regexp_split_to_table(t, '') WITH ORDINALITY AS x(c, n)
$$;

CREATE FUNCTION {s}.timeout_text(func text, kind text, id text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    -- vow.stores.base.timeout_error_text, byte for byte.
    SELECT '{{"message":' || {s}.json_text(coalesce(nullif(func, ''), kind) || ' (' || id || ') timed out')
        || ',"type":"vow.errors.PromiseTimeoutError"}}'
$$;

CREATE FUNCTION {s}.apply(
    f_root text[], f_token bigint[],
    c_id text[], c_state text[], c_kind text[], c_root text[], c_func text[], c_args text[], c_value text[],
    c_parent text[], c_timeout double precision[], c_key text[], c_attempt bigint[],
    c_created double precision[], c_settled double precision[], c_tags text[],
    s_id text[], s_state text[], s_value text[], s_at double precision[],
    a_id text[], a_attempt bigint[], outside boolean
) RETURNS TABLE (tag text, RECORD_COLUMNS)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
-- Few statements on the usual path (an engine's round: fence, creates, settles): each one
-- costs a round of the executor, so checks ride along with the writes they concern.
DECLARE
    t double precision := extract(epoch FROM clock_timestamp())::double precision;
    fenced boolean := cardinality(f_root) > 0;
    lost text[];
    inserted text[];
    applied text[];
    late text[];
    conflicted text[];
    won text[];
    missing text;
    last bigint;
    added bigint;
BEGIN
    -- How the statements below are planned, for this transaction only (the call is one). A small
    -- batch (an engine's usual round) reuses the session's one plan of each statement, made on
    -- the indexes: planning them anew costs more than running them, and a plan made while the
    -- table looked small (fresh, never analyzed) would otherwise scan all of it on every call.
    -- A large batch (a wide fan-out) is planned for its size, as that plan assumes few rows.
    -- (No JIT: never worth it here, and a path priced as disabled could look costly enough.)
    IF greatest(cardinality(f_root), cardinality(c_id), cardinality(s_id), cardinality(a_id)) <= SMALL_BATCH THEN
        PERFORM set_config('plan_cache_mode', 'force_generic_plan', true), set_config('enable_seqscan', 'off', true),
                set_config('jit', 'off', true);
    ELSE
        PERFORM set_config('plan_cache_mode', 'force_custom_plan', true);
    END IF;
    IF fenced THEN
        -- Lock the fenced leases (in one order, so two writers cannot deadlock): a takeover, or a
        -- settle of the root from outside (which locks the lease too), waits for this transaction.
        SELECT array_agg(f.r ORDER BY f.r) INTO lost
          FROM unnest(f_root, f_token) AS f(r, tk)
          LEFT JOIN (SELECT l.root, l.token FROM {s}.leases l WHERE l.root = ANY(f_root)
                      ORDER BY l.root FOR NO KEY UPDATE) AS l ON l.root = f.r
          LEFT JOIN {s}.promises p ON p.id = f.r
         WHERE l.root IS NULL OR l.token <> f.tk OR p.state <> 'pending';
        IF lost IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'VWL01', MESSAGE = 'lease lost', DETAIL = array_to_json(lost)::text;
        END IF;
    ELSIF cardinality(s_id) > 0 THEN
        -- A settle from outside of a root (vow cancel) waits for the commit its engine is making.
        PERFORM 1 FROM {s}.leases l WHERE l.root = ANY(s_id) ORDER BY l.root FOR NO KEY UPDATE;
    END IF;

    IF cardinality(c_id) > 0 THEN
        -- The ids are unique here (the client keeps the first of each); unnest keeps their order,
        -- so seq follows the batch order. A fenced batch also learns which parents outside its
        -- fences of the records it creates were settled before it (a child workflow canceled
        -- from outside).
        WITH ins AS (
            INSERT INTO {s}.promises AS p (id, state, kind, root, func, args, value, parent, timeout,
                                            idempotency_key, attempt, created_at, settled_at, tags)
            SELECT x.*
              FROM unnest(c_id, c_state, c_kind, c_root, c_func, c_args, c_value, c_parent, c_timeout, c_key,
                          c_attempt, c_created, c_settled, c_tags::json[])
                   AS x(id, st, kd, rt, fn, ar, vl, pa, tm, ky, at, ca, sa, tg)
             -- Not ON CONFLICT: its speculative insertion costs a WAL record per row. A create
             -- racing another for the same id fails with unique_violation instead, and the
             -- client runs the batch again (nothing of it was written), which then finds the id.
             WHERE NOT EXISTS (SELECT 1 FROM {s}.promises q WHERE q.id = x.id)
            RETURNING p.id, p.parent
        )
        -- Only what this batch really creates can be under a settled parent: a create of an id
        -- that exists (a replay after a workflow retry) creates nothing. The parents are read as
        -- they were before this statement (rows it inserts are not visible to it: they are new).
        SELECT (SELECT array_agg(ins.id) FROM ins),
               CASE WHEN fenced THEN (
                   SELECT array_agg(DISTINCT p.id) FROM {s}.promises p
                    WHERE p.id IN (SELECT ins.parent FROM ins EXCEPT SELECT unnest(f_root)) AND p.state <> 'pending')
               END
          INTO inserted, won;
        IF coalesce(cardinality(inserted), 0) < cardinality(c_id) THEN
            -- Creates of ids that existed: their records as stored before this batch's settles.
            RETURN QUERY SELECT 'existing', P_COLUMNS FROM {s}.promises p
                          WHERE p.id IN (SELECT unnest(c_id) EXCEPT SELECT unnest(inserted));
        END IF;
    END IF;

    IF cardinality(s_id) > 0 THEN
        -- The first settle of each id applies; every settle is then compared with what is stored
        -- after it (the updated row, else the row as it was), and an unknown id is an error.
        WITH x AS (
            SELECT DISTINCT ON (y.id) y.id, y.st, y.v, y.at
              FROM unnest(s_id, s_state, s_value, s_at) WITH ORDINALITY AS y(id, st, v, at, n)
             ORDER BY y.id, y.n
        ), upd AS (
            UPDATE {s}.promises p
               SET state = CASE WHEN LATE THEN 'timedout' ELSE x.st END,
                   value = CASE WHEN LATE THEN {s}.timeout_text(p.func, p.kind, p.id) ELSE x.v END,
                   settled_at = x.at
              FROM x
             WHERE p.id = x.id AND p.state = 'pending'
            RETURNING p.id, p.state, p.value, (p.state = 'timedout' AND x.st <> 'timedout') AS was_late
        ), j AS (
            SELECT y.id, p.id IS NULL AS unknown,
                   NOT (coalesce(u.state, p.state) = y.st
                        AND (CASE WHEN u.id IS NULL THEN p.value ELSE u.value END) IS NOT DISTINCT FROM y.v) AS differs
              FROM unnest(s_id, s_state, s_value) AS y(id, st, v)
              LEFT JOIN upd u ON u.id = y.id
              LEFT JOIN {s}.promises p ON p.id = y.id
        )
        SELECT (SELECT array_agg(upd.id) FROM upd), (SELECT array_agg(upd.id) FROM upd WHERE upd.was_late),
               (SELECT min(j.id) FROM j WHERE j.unknown),
               (SELECT array_agg(DISTINCT j.id) FROM j WHERE NOT j.unknown AND j.differs)
          INTO applied, late, missing, conflicted;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'VWN01', MESSAGE = 'no such promise', DETAIL = missing;
        END IF;
        IF NOT fenced AND conflicted IS NOT NULL THEN
            RETURN QUERY SELECT 'conflict', P_COLUMNS FROM {s}.promises p WHERE p.id = ANY(conflicted);
        END IF;
    END IF;

    IF fenced AND (conflicted IS NOT NULL OR won IS NOT NULL) THEN
        -- An engine's round is all or nothing: write none of it (not even the timeouts).
        RAISE EXCEPTION USING ERRCODE = 'VWC01', MESSAGE = 'conflict',
            DETAIL = json_build_object('late', coalesce(late, '{{}}'), 'won',
                ARRAY(SELECT unnest(conflicted) EXCEPT SELECT unnest(late) UNION SELECT unnest(won)))::text;
    END IF;

    IF cardinality(a_id) > 0 THEN
        UPDATE {s}.promises p SET attempt = y.n
          FROM unnest(a_id, a_attempt) AS y(id, n)
         WHERE p.id = y.id AND p.state = 'pending';
    END IF;

    IF outside AND (inserted IS NOT NULL OR applied IS NOT NULL) THEN
        -- The change feed: what this write created or settled, numbered in commit order without
        -- gaps (the lock makes outside writers commit one after another).
        PERFORM pg_advisory_xact_lock({ns}, 0);
        SELECT coalesce(max(c.seq), 0) INTO last FROM {s}.changes c;
        WITH e AS (
            SELECT DISTINCT ON (z.id) z.id, z.n FROM (
                SELECT q.i AS id, q.n FROM unnest(c_id) WITH ORDINALITY AS q(i, n) WHERE q.i = ANY(inserted)
                UNION ALL
                SELECT q.i, 1000000000 + q.n FROM unnest(s_id) WITH ORDINALITY AS q(i, n)
                 WHERE q.i = ANY(applied) AND q.i <> ALL(coalesce(conflicted, '{{}}'))
            ) AS z ORDER BY z.id, z.n
        ), ins AS (
            INSERT INTO {s}.changes (seq, root, id)
            SELECT last + row_number() OVER (ORDER BY e.n), p.root, e.id
              FROM e JOIN {s}.promises p ON p.id = e.id
            RETURNING 1
        )
        SELECT count(*) INTO added FROM ins;
        IF added > 0 THEN
            DELETE FROM {s}.changes c WHERE c.seq <= last + added - FEED_WINDOW;
            PERFORM pg_notify('{channel}', (last + added)::text);
        END IF;
    END IF;
END
$$;

CREATE FUNCTION {s}.claim(
    roots text[], who text, ttl double precision, at double precision, skip_locked boolean, max_rec integer
) RETURNS TABLE (root text, owner text, token bigint, expires_at double precision, recoveries integer,
                 parked text, status text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
-- status: 'taken'; 'held' (another live owner, or parked); 'park' (taking it would exceed max_rec:
-- left as it is, the client parks it with the reason vow writes).
DECLARE
    t double precision := coalesce(at, extract(epoch FROM clock_timestamp())::double precision);
    fresh text[];
BEGIN
    -- Roots never claimed before get a lease row with token 1.
    WITH ins AS (
        INSERT INTO {s}.leases AS l (root, owner, token, expires_at)
        SELECT r, who, 1, t + ttl FROM unnest(roots) AS r ORDER BY r
        ON CONFLICT (root) DO NOTHING
        RETURNING l.root
    )
    SELECT array_agg(ins.root) INTO fresh FROM ins;
    RETURN QUERY SELECT r, who, 1::bigint, t + ttl, 0, NULL::text, 'taken' FROM unnest(fresh) AS r;
    -- The others: free, expired, ours, or a dead owner's are taken; a row another transaction is
    -- changing right now is skipped (a claim in a race) or waited for.
    IF skip_locked THEN
        RETURN QUERY CLAIM_EXISTING(FOR UPDATE OF l SKIP LOCKED);
    ELSE
        RETURN QUERY CLAIM_EXISTING(FOR UPDATE OF l);
    END IF;
END
$$;
"""

_CLAIM_EXISTING = """
        WITH cur AS (
            SELECT l.root, l.owner, l.token, l.expires_at, l.recoveries, l.parked,
                   l.owner IN (SELECT d.owner FROM {s}.dead_owners d) AS dead,
                   l.owner IN (SELECT a.owner FROM {s}.live_owners a) AS live
              FROM {s}.leases l
             WHERE l.root = ANY(roots) AND l.root <> ALL(coalesce(fresh, '{{}}'))
             ORDER BY l.root LOCKING
        ), d AS (
            -- An expired lease is free only when its owner is not known to live (a live owner's
            -- lease is never taken, whatever the clocks say).
            SELECT c.*, (c.parked IS NULL AND (c.owner = '' OR c.owner = who OR c.dead
                                               OR (c.expires_at <= t AND NOT c.live))) AS free,
                   CASE WHEN c.owner <> '' AND c.owner <> who THEN c.recoveries + 1 ELSE c.recoveries END AS rec
              FROM cur c
        ), upd AS (
            UPDATE {s}.leases l
               SET owner = who, token = CASE WHEN d.owner = who THEN d.token ELSE d.token + 1 END,
                   expires_at = t + ttl, recoveries = d.rec
              FROM d
             WHERE l.root = d.root AND d.free AND (max_rec IS NULL OR d.owner = who OR d.rec <= max_rec)
            RETURNING l.root, l.owner, l.token, l.expires_at, l.recoveries, l.parked
        )
        SELECT u.root, u.owner, u.token, u.expires_at, u.recoveries, u.parked, 'taken' FROM upd u
        UNION ALL
        SELECT d.root, d.owner, d.token, d.expires_at, d.rec, d.parked, 'park' FROM d
         WHERE d.free AND max_rec IS NOT NULL AND d.owner <> who AND d.rec > max_rec
        UNION ALL
        SELECT d.root, d.owner, d.token, d.expires_at, d.recoveries, d.parked, 'held' FROM d WHERE NOT d.free"""


ADDED_INDEXES = {
    # The parked leases (PostgresStore.parked_leases, for `vow ls --state parked`): a few among every
    # root ever claimed. Claims and renewals change neither column, so they stay HOT updates.
    "leases_parked": ("CREATE INDEX CONCURRENTLY IF NOT EXISTS leases_parked ON {s}.leases (root) "
                      "WHERE parked IS NOT NULL"),
    # The runs, newest first (PostgresStore.runs, for `vow ls` and the web console), in the order of
    # its keyset cursor: (created_at, id), the id compared as Python compares it (code points, the
    # "C" collation) whatever the database's collation. Made once per run and never changed (no
    # column a settle writes), so settles stay HOT updates.
    "promises_runs": ('CREATE INDEX CONCURRENTLY IF NOT EXISTS promises_runs ON {s}.promises (created_at, '
                      "id COLLATE \"C\") WHERE parent IS NULL AND kind = 'workflow'"),
}
"""Indexes added to a schema version after it was made (a fresh schema has them, see ``_TABLES``): a
schema made by an earlier vow-postgres of the same version may lack them, and every query answers the
same without them, only slower. A store that may make them does so as it opens the schema, CONCURRENTLY:
a plain CREATE INDEX would hold every write to the table (every worker's rounds) for as long as it
builds, a minute and more on a large store."""


def added_index_statements(schema: str) -> dict[str, str]:
    """:data:`ADDED_INDEXES` of ``schema``: index name -> the statement that makes it if missing."""
    return {name: statement.format(s=schema) for name, statement in ADDED_INDEXES.items()}


def create_statements(schema: str) -> list[str]:
    """The statements that create a fresh store in ``schema`` (run in one transaction)."""
    tables = [s.strip() for s in _TABLES.format(s=schema, ns=lock_space(schema)).split(";") if s.strip()]
    return [*tables, *function_statements(schema), f"INSERT INTO {schema}.version (version) VALUES ({SCHEMA_VERSION})"]


def function_statements(schema: str) -> list[str]:
    """The statements that (re)make the server-side functions of ``schema`` as this vow-postgres
    writes them, and mark the schema with :func:`functions_mark` (run in one transaction)."""
    statements = ["CREATE OR REPLACE FUNCTION " + f.strip() for f in _functions_text(schema).split("CREATE FUNCTION ")
                  if f.strip()]
    return [*statements, f"COMMENT ON SCHEMA {schema} IS '{functions_mark(schema)}'"]


def functions_mark(schema: str) -> str:
    """What the schema's comment says once its functions are this vow-postgres's own: a store that
    opens a schema marked otherwise (made by another release of the same schema version, whose
    functions may do the same work differently) makes them again."""
    return f"vow-postgres functions {hashlib.sha256(_functions_text(schema).encode()).hexdigest()[:16]}"


@functools.cache  # read at every store's opening (functions_mark), the same for a schema
def _functions_text(schema: str) -> str:
    ns = lock_space(schema)
    functions_text = (_FUNCTIONS.replace("RECORD_COLUMNS", _RECORD_COLUMNS).replace("P_COLUMNS", _P_COLUMNS)
                      .replace("LATE", _LATE).replace("FEED_WINDOW", str(FEED_WINDOW))
                      .replace("SMALL_BATCH", str(SMALL_BATCH)))
    for lock in ("FOR UPDATE OF l SKIP LOCKED", "FOR UPDATE OF l"):
        functions_text = functions_text.replace(f"CLAIM_EXISTING({lock})",
                                                _CLAIM_EXISTING.replace("LOCKING", lock).strip())
    return functions_text.format(s=schema, ns=ns, channel=channel(schema))
