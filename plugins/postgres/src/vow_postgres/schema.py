"""The tables and server-side functions of the PostgreSQL store, and their version.

Everything lives in one schema (``vow`` unless the URL says ``?schema=``):

* ``version``: one row, the schema version this store was created with
  (:data:`SCHEMA_VERSION`); a newer one is refused, nothing is altered;
* ``promises``: one row per promise record; ``seq`` (an identity) orders records created at the
  same ``created_at``, as insertion order does in the other stores;
* ``leases``: one row per root workflow ever claimed: owner, fencing token, expiry (epoch
  seconds on the server's clock), how often it was taken over (``recoveries``) and whether it
  was parked after too many takeovers;
* ``changes``: the feed of outside settles, in commit order (``seq``), which engines read after a
  ``NOTIFY`` on the channel :func:`channel` names.

The writes are PL/pgSQL functions so that one engine round is one statement, one round trip
and one transaction: ``apply`` checks the fences (locking the leases, so a takeover waits for
the commit in progress), inserts, settles and sets attempts, and raises a coded error that
writes nothing when a fence is lost or a settled id does not exist. ``claim`` takes leases with
``FOR UPDATE SKIP LOCKED``, so workers racing for the same roots never wait on each other.
"""

from __future__ import annotations

import re

SCHEMA_VERSION = 1
"""The layout this vow-postgres creates and reads; a schema recorded with a newer one is refused."""

DEFAULT_SCHEMA = "vow"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# SQLSTATEs of the errors the functions raise (class "VW" is not used by PostgreSQL).
LEASE_LOST = "VWL01"
NOT_FOUND = "VWN01"


def valid_schema_name(name: str) -> bool:
    """Whether ``name`` is a schema name used unquoted here (lower-case letters, digits, ``_``)."""
    return bool(_NAME.match(name))


def channel(schema: str) -> str:
    """The ``LISTEN``/``NOTIFY`` channel of the change feed of ``schema``."""
    return f"{schema}_changes"


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
    tags json NOT NULL
);
CREATE INDEX promises_root ON {s}.promises (root, created_at, seq);
CREATE INDEX promises_parent ON {s}.promises (parent, created_at, seq) WHERE parent IS NOT NULL;
CREATE INDEX promises_created ON {s}.promises (created_at, seq);
CREATE INDEX promises_pending_roots ON {s}.promises (created_at, seq)
    WHERE state = 'pending' AND parent IS NULL AND kind = 'workflow';

CREATE TABLE {s}.leases (
    root text NOT NULL PRIMARY KEY,
    owner text NOT NULL,
    token bigint NOT NULL,
    expires_at double precision NOT NULL,
    recoveries integer NOT NULL DEFAULT 0,
    parked boolean NOT NULL DEFAULT false
);
CREATE INDEX leases_owner ON {s}.leases (owner) WHERE owner <> '';

CREATE TABLE {s}.changes (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL,
    root text NOT NULL,
    state text NOT NULL,
    at double precision NOT NULL
);
"""

_RECORD_COLUMNS = """id text, state text, kind text, root text, func text, args text, value text, parent text,
    timeout double precision, idempotency_key text, attempt bigint, created_at double precision,
    settled_at double precision, tags text"""

_FUNCTIONS = """
CREATE FUNCTION {s}.apply(
    f_root text[], f_token bigint[],
    c_id text[], c_state text[], c_kind text[], c_root text[], c_func text[], c_args text[], c_value text[],
    c_parent text[], c_timeout double precision[], c_key text[], c_attempt bigint[],
    c_created double precision[], c_settled double precision[], c_tags text[],
    s_id text[], s_state text[], s_value text[], s_at double precision[],
    a_id text[], a_attempt bigint[]
) RETURNS TABLE (tag text, RECORD_COLUMNS)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    lost text[];
    inserted text[];
    missing text;
BEGIN
    IF cardinality(f_root) > 0 THEN
        -- Lock the fenced leases and their roots (in one order, so two writers cannot deadlock):
        -- a takeover, or a cancel from outside, waits until this transaction is over.
        PERFORM 1 FROM {s}.leases l WHERE l.root = ANY(f_root) ORDER BY l.root FOR NO KEY UPDATE;
        PERFORM 1 FROM {s}.promises p WHERE p.id = ANY(f_root) ORDER BY p.id FOR NO KEY UPDATE;
        SELECT array_agg(f.r ORDER BY f.r) INTO lost
          FROM unnest(f_root, f_token) AS f(r, t)
          LEFT JOIN {s}.leases l ON l.root = f.r
          LEFT JOIN {s}.promises p ON p.id = f.r
         WHERE l.root IS NULL OR l.token <> f.t OR p.state <> 'pending';
        IF lost IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'VWL01', MESSAGE = 'lease lost', DETAIL = array_to_json(lost)::text;
        END IF;
    END IF;

    IF cardinality(c_id) > 0 THEN
        -- The ids are unique here (the client keeps the first of each); unnest keeps their order,
        -- so seq follows the batch order.
        WITH ins AS (
            INSERT INTO {s}.promises AS p (id, state, kind, root, func, args, value, parent, timeout,
                                            idempotency_key, attempt, created_at, settled_at, tags)
            SELECT x.*
              FROM unnest(c_id, c_state, c_kind, c_root, c_func, c_args, c_value, c_parent, c_timeout, c_key,
                          c_attempt, c_created, c_settled, c_tags::json[]) AS x
            ON CONFLICT (id) DO NOTHING
            RETURNING p.id
        )
        SELECT array_agg(ins.id) INTO inserted FROM ins;
        IF coalesce(cardinality(inserted), 0) < cardinality(c_id) THEN
            -- Creates of ids that existed: their records as stored before this batch's settles.
            RETURN QUERY
                SELECT 'existing', p.id, p.state, p.kind, p.root, p.func, p.args, p.value, p.parent, p.timeout,
                       p.idempotency_key, p.attempt, p.created_at, p.settled_at, p.tags::text
                  FROM {s}.promises p
                 WHERE p.id IN (SELECT unnest(c_id) EXCEPT SELECT unnest(inserted));
        END IF;
    END IF;

    IF cardinality(s_id) > 0 THEN
        -- The first settle of each id applies; every settle is then compared with what is stored.
        UPDATE {s}.promises p SET state = x.st, value = x.v, settled_at = x.at
          FROM (SELECT DISTINCT ON (y.id) y.id, y.st, y.v, y.at
                  FROM unnest(s_id, s_state, s_value, s_at) WITH ORDINALITY AS y(id, st, v, at, n)
                 ORDER BY y.id, y.n) AS x
         WHERE p.id = x.id AND p.state = 'pending';
        SELECT y.id INTO missing
          FROM unnest(s_id) AS y(id) LEFT JOIN {s}.promises p ON p.id = y.id
         WHERE p.id IS NULL LIMIT 1;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'VWN01', MESSAGE = 'no such promise', DETAIL = missing;
        END IF;
        RETURN QUERY
            SELECT DISTINCT ON (p.id) 'conflict', p.id, p.state, p.kind, p.root, p.func, p.args, p.value,
                   p.parent, p.timeout, p.idempotency_key, p.attempt, p.created_at, p.settled_at, p.tags::text
              FROM unnest(s_id, s_state, s_value) AS y(id, st, v) JOIN {s}.promises p ON p.id = y.id
             WHERE NOT (p.state = y.st AND p.value IS NOT DISTINCT FROM y.v)
             ORDER BY p.id;
    END IF;

    IF cardinality(a_id) > 0 THEN
        UPDATE {s}.promises p SET attempt = y.n
          FROM unnest(a_id, a_attempt) AS y(id, n)
         WHERE p.id = y.id AND p.state = 'pending';
    END IF;
END
$$;

CREATE FUNCTION {s}.claim(
    roots text[], who text, ttl double precision, at double precision, skip_locked boolean, dead text[]
) RETURNS TABLE (root text, owner text, token bigint, expires_at double precision, taken boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
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
    RETURN QUERY SELECT r, who, 1::bigint, t + ttl, true FROM unnest(fresh) AS r;
    -- The others: free, expired, ours, or a dead owner's (judged by the client) are taken.
    -- Rows another transaction is changing right now are skipped (a claim in a race) or waited for.
    IF skip_locked THEN
        RETURN QUERY
        WITH cur AS (
            SELECT l.root, l.owner, l.token, l.expires_at FROM {s}.leases l
             WHERE l.root = ANY(roots) AND l.root <> ALL(coalesce(fresh, '{{}}'))
             ORDER BY l.root FOR UPDATE SKIP LOCKED
        ), upd AS (
            UPDATE {s}.leases l
               SET owner = who, token = CASE WHEN c.owner = who THEN c.token ELSE c.token + 1 END,
                   expires_at = t + ttl
              FROM cur c
             WHERE l.root = c.root AND (c.owner = '' OR c.owner = who OR c.expires_at <= t OR c.owner = ANY(dead))
            RETURNING l.root, l.owner, l.token, l.expires_at
        )
        SELECT u.root, u.owner, u.token, u.expires_at, true FROM upd u
        UNION ALL
        SELECT c.root, c.owner, c.token, c.expires_at, false FROM cur c
         WHERE NOT (c.owner = '' OR c.owner = who OR c.expires_at <= t OR c.owner = ANY(dead));
    ELSE
        RETURN QUERY
        WITH cur AS (
            SELECT l.root, l.owner, l.token, l.expires_at FROM {s}.leases l
             WHERE l.root = ANY(roots) AND l.root <> ALL(coalesce(fresh, '{{}}'))
             ORDER BY l.root FOR UPDATE
        ), upd AS (
            UPDATE {s}.leases l
               SET owner = who, token = CASE WHEN c.owner = who THEN c.token ELSE c.token + 1 END,
                   expires_at = t + ttl
              FROM cur c
             WHERE l.root = c.root AND (c.owner = '' OR c.owner = who OR c.expires_at <= t OR c.owner = ANY(dead))
            RETURNING l.root, l.owner, l.token, l.expires_at
        )
        SELECT u.root, u.owner, u.token, u.expires_at, true FROM upd u
        UNION ALL
        SELECT c.root, c.owner, c.token, c.expires_at, false FROM cur c
         WHERE NOT (c.owner = '' OR c.owner = who OR c.expires_at <= t OR c.owner = ANY(dead));
    END IF;
END
$$;
""".replace("RECORD_COLUMNS", _RECORD_COLUMNS)


def create_statements(schema: str) -> list[str]:
    """The statements that create a fresh store in ``schema`` (run in one transaction)."""
    tables = [s.strip() for s in _TABLES.format(s=schema).split(";") if s.strip()]
    functions = ["CREATE FUNCTION " + f.strip() for f in _FUNCTIONS.format(s=schema).split("CREATE FUNCTION ")
                 if f.strip()]
    return [*tables, *functions,
            f"INSERT INTO {schema}.version (version) VALUES ({SCHEMA_VERSION})"]
