"""What the PostgreSQL store adds to the contract: URLs, libpq settings, secrets, schema versions,
the server's clock, and connections that never cross a fork."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from urllib.parse import quote

import psycopg
import pytest
from vow_postgres import PostgresStore
from vow_postgres.schema import SCHEMA_VERSION, functions_mark

from tests.support import kill, read_line, spawn
from vow import Vow
from vow.errors import ConfigError, StoreError
from vow.records import Batch, Kind, PromiseRecord, Settle, State
from vow.stores import open_store
from vow.stores.owners import new_owner_id
from vow.testing import wait_until
from vow.testing_postgres import PostgresServer

PASSWORD = "s3cr:t/p@ss?w0rd%"  # every character that needs quoting in a URL


def _with_user(url: str, userinfo: str, query: str = "") -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{userinfo}@{rest.split('@', 1)[1]}{query}"


def _tables(url: str, schema: str = "vow") -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as con:
        return con.execute("SELECT tablename, (xpath('/row/c/text()', query_to_xml(format("
                           "'SELECT count(*) AS c FROM %%I.%%I', schemaname, tablename), false, true, '')))[1]::text "
                           "FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,)).fetchall()


@pytest.fixture(scope="module")
def password_role(postgres_server: PostgresServer) -> str:
    """A role that must give PASSWORD (SCRAM); only on a server the tests started."""
    if postgres_server.data_dir is None:
        pytest.skip("needs a server started by the tests (to require a password)")
    postgres_server.require_password("vow_secret", PASSWORD)
    return "vow_secret"


# -- choosing the store -------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgresql_url_chooses_this_store(postgres_url: str, scheme: str) -> None:
    url = scheme + "://" + postgres_url.split("://", 1)[1]
    store = open_store(url + "?schema=elsewhere&pool_size=3")
    try:
        assert isinstance(store, PostgresStore)
        assert (store.schema, store.pool_size) == ("elsewhere", 3)
        assert store.url == url + "?schema=elsewhere&pool_size=3"
    finally:
        store.close()
    with Vow(url) as client:
        assert isinstance(client.store, PostgresStore) and client.store.schema == "vow"

        def double(ctx, x):
            return x * 2

        def flow(ctx, x):
            return (yield ctx.run(double, x))

        assert client.run("flow/1", flow, 21) == 42
        assert client.get("flow/1").state is State.RESOLVED


def test_bad_options_are_one_clear_error(postgres_url: str) -> None:
    with pytest.raises(ConfigError, match=r"invalid URI query parameter: \"sslmdoe\""):
        open_store(postgres_url + "?sslmdoe=require")
    with pytest.raises(ConfigError, match=r"option schema: expected a lower-case name .* got 'Bad-Name'"):
        open_store(postgres_url + "?schema=Bad-Name")
    with pytest.raises(ConfigError, match=r"option pool_size: expected a whole number >= 2, got 'many'"):
        open_store(postgres_url + "?pool_size=many")
    with pytest.raises(ConfigError, match=r"option schema: given twice"):
        PostgresStore(postgres_url + "?schema=a", schema="b")


def test_a_schema_name_ending_in_a_line_break_is_refused_before_anything_is_made(postgres_url: str) -> None:
    """``?schema=vow_nl%0A`` is "vow_nl\\n". The name check's ``$`` matched before the line break, so the store
    opened: SQL read the break as a space and made schema vow_nl, the store took its advisory locks in
    another key space than the other stores of that schema, and its change feed's LISTEN failed with a
    syntax error, retried every second."""
    with pytest.raises(ConfigError, match=r"option schema: expected a lower-case name .* got 'vow_nl\\n'"):
        open_store(postgres_url + "?schema=vow_nl%0A")
    with psycopg.connect(postgres_url, autocommit=True) as con:
        assert con.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'vow_nl%'").fetchall() == []


# -- libpq settings and secrets -----------------------------------------------------------------

def test_libpq_settings_in_the_url_and_the_environment_apply(postgres_url: str, monkeypatch) -> None:
    with pytest.raises(StoreError, match="server does not support SSL, but SSL was required"):
        open_store(postgres_url + "?sslmode=require")
    store = open_store(postgres_url + "?sslmode=disable&application_name=billing")
    try:
        with psycopg.connect(postgres_url, autocommit=True) as con:
            store.get("warm-up")  # opens the store's pool
            names = [r[0] for r in con.execute("SELECT application_name FROM pg_stat_activity "
                                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")]
        assert set(names) == {"billing"}
    finally:
        store.close()

    host, port_db = postgres_url.split("@", 1)[1].split(":", 1)
    port, database = port_db.split("/", 1)
    user = postgres_url.split("://", 1)[1].split("@", 1)[0]
    for name, value in {"PGHOST": host, "PGPORT": port, "PGDATABASE": database, "PGUSER": user}.items():
        monkeypatch.setenv(name, value)
    store = open_store("postgresql://")  # everything from the environment, as psql would
    try:
        store.apply(Batch(creates=[PromiseRecord("env", State.PENDING, Kind.WORKFLOW, "env")]))
        other = PostgresStore(postgres_url)
        assert other.get("env") is not None
        other.close()
        assert store.url == "postgresql://"
    finally:
        store.close()
    monkeypatch.setenv("PGSSLMODE", "require")
    with pytest.raises(StoreError, match="SSL was required"):
        open_store("postgresql://")


def test_a_password_never_shows(postgres_url: str, password_role: str, monkeypatch, caplog) -> None:
    caplog.set_level("DEBUG")
    quoted = quote(PASSWORD, safe="")
    good = _with_user(postgres_url, f"{password_role}:{quoted}")
    store = open_store(good + "&sslmode=disable" if "?" in good else good + "?sslmode=disable")
    try:
        store.apply(Batch(creates=[PromiseRecord("secret", State.PENDING, Kind.WORKFLOW, "secret")]))
        assert store.url == _with_user(postgres_url, password_role, "?sslmode=disable")
        assert PASSWORD not in repr(store) and quoted not in repr(store)
    finally:
        store.close()

    wrong = _with_user(postgres_url, f"{password_role}:{quote('not-' + PASSWORD, safe='')}")
    with pytest.raises(StoreError) as caught:
        open_store(wrong)
    message = str(caught.value)
    assert "password authentication failed" in message
    assert _with_user(postgres_url, password_role) in message

    monkeypatch.setenv("PGPASSWORD", PASSWORD)  # the environment's password works...
    store = open_store(_with_user(postgres_url, password_role))
    try:
        assert store.get("secret") is not None
    finally:
        store.close()
    monkeypatch.setenv("PGPASSWORD", "z" + PASSWORD)  # ...and a wrong one is not shown either
    with pytest.raises(StoreError, match="password authentication failed") as caught:
        open_store(_with_user(postgres_url, password_role))
    shown = message + str(caught.value) + caplog.text
    for secret in (PASSWORD, quoted, "not-" + PASSWORD, "z" + PASSWORD):
        assert secret not in shown


def test_the_command_line_never_prints_a_password(postgres_url: str, password_role: str, tmp_path) -> None:
    quoted = quote(PASSWORD, safe="")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    good = _with_user(postgres_url, f"{password_role}:{quoted}")
    wrong = _with_user(postgres_url, f"{password_role}:{quote('x' + PASSWORD, safe='')}")
    runs = [
        subprocess.run([sys.executable, "-m", "vow", "ls", "--store", good], capture_output=True, text=True,
                       env=env, timeout=120, cwd=tmp_path),
        subprocess.run([sys.executable, "-m", "vow", "ls", "--store", wrong], capture_output=True, text=True,
                       env=env, timeout=120, cwd=tmp_path),
        subprocess.run([sys.executable, "-m", "vow", "resolve", "nope", "1"], capture_output=True, text=True,
                       env={**env, "VOW_STORE": good}, timeout=120, cwd=tmp_path),
        subprocess.run([sys.executable, "-m", "vow", "ls", "--store", _with_user(postgres_url, password_role)],
                       capture_output=True, text=True, env={**env, "PGPASSWORD": "y" + PASSWORD}, timeout=120,
                       cwd=tmp_path),
    ]
    assert runs[0].returncode == 0 and runs[0].stdout.startswith("no runs in postgresql://vow_secret@")
    assert runs[1].returncode != 0 and "password authentication failed" in runs[1].stderr
    assert runs[2].returncode == 2 and "no promise with id 'nope'" in runs[2].stderr
    assert runs[3].returncode != 0 and "password authentication failed" in runs[3].stderr
    for done in runs:
        for secret in (PASSWORD, quoted, "x" + PASSWORD, "y" + PASSWORD):
            assert secret not in done.stdout + done.stderr, done.stdout + done.stderr


def test_a_plus_in_the_urls_query_is_a_plus_as_libpq_reads_it(postgres_server: PostgresServer,
                                                              postgres_url: str) -> None:
    """libpq decodes a URL's query by ``%XX`` only: ``?password=one+two`` is the password ``one+two``
    and ``application_name=billing+eu`` the name ``billing+eu``, for psql as for vow. (Decoded as an
    HTML form's query, each ``+`` became a space: the password was refused.)"""
    if postgres_server.data_dir is None:
        pytest.skip("needs a server started by the tests (to require a password)")
    password = "one+two+three"
    postgres_server.require_password("vow_plus", password)
    url = _with_user(postgres_url, "vow_plus", f"?password={password}&application_name=billing+eu")
    assert psycopg.conninfo.conninfo_to_dict(url)["password"] == password  # as libpq reads it
    store = open_store(url)
    try:
        store.apply(Batch(creates=[PromiseRecord("plus", State.PENDING, Kind.WORKFLOW, "plus")]))
        assert store.get("plus") is not None
        with psycopg.connect(postgres_url, autocommit=True) as con:
            names = {r[0] for r in con.execute("SELECT application_name FROM pg_stat_activity WHERE usename = "
                                               "'vow_plus' AND datname = current_database()")}
        assert names == {"billing+eu"}
        assert password not in store.url and store.url.endswith("?application_name=billing+eu")
    finally:
        store.close()


def test_a_synchronous_commit_asked_of_libpq_is_kept(postgres_url: str, monkeypatch) -> None:
    """``options=-c synchronous_commit=on`` in the URL (or ``PGOPTIONS``) asks for durable commits:
    the store keeps it rather than turning it off with its own default; vow's option given as well,
    and different, is refused. (It was silently overridden: every commit was asynchronous.)"""
    def setting(store: PostgresStore) -> str:
        with store._connection() as con:
            return str(con.execute("SHOW synchronous_commit").fetchone()[0])

    asked = postgres_url + "?options=-c%20synchronous_commit%3Don"
    store = open_store(asked)
    try:
        assert setting(store) == "on"
    finally:
        store.close()
    with pytest.raises(ConfigError, match=r"option synchronous_commit: .*'off'.* libpq .*'on'"):
        open_store(asked + "&synchronous_commit=off")
    store = open_store(asked + "&synchronous_commit=on")  # the same, said twice: fine
    store.close()
    monkeypatch.setenv("PGOPTIONS", "-c synchronous_commit=remote_apply")
    store = open_store(postgres_url)
    try:
        assert setting(store) == "remote_apply"
    finally:
        store.close()
    monkeypatch.delenv("PGOPTIONS")
    store = open_store(postgres_url)  # nothing asked: the store's default
    try:
        assert setting(store) == "off"
    finally:
        store.close()


def test_a_servers_idle_session_timeout_ends_no_owner(postgres_server: PostgresServer, postgres_url: str) -> None:
    """A server (or a database, a role) with ``idle_session_timeout`` ends sessions that sit idle, as
    managed servers do. The session showing a worker alive sits idle by design: ended, the worker
    read dead, and another worker took over its leases while it still ran them. Its sessions of
    its own (owners, change feed) are now exempt."""
    database = postgres_url.rsplit("/", 1)[1]
    postgres_server.sql(f'ALTER DATABASE "{database}" SET idle_session_timeout = \'300ms\'')
    holder = PostgresStore(postgres_url + "?application_name=vow-holder")
    other = PostgresStore(postgres_url)
    try:
        owner = new_owner_id()
        assert holder.hold_owner(owner)
        holder.apply(Batch(creates=[PromiseRecord("wf", State.PENDING, Kind.WORKFLOW, "wf")]))
        assert holder.claim("wf", owner, 3600) is not None
        holder.subscribe(lambda: None)
        with psycopg.connect(postgres_url, autocommit=True) as watch:
            def sessions() -> set[int]:
                return {r[0] for r in watch.execute("SELECT pid FROM pg_stat_activity WHERE application_name = "
                                                    "'vow-holder' AND datname = current_database() AND state = "
                                                    "'idle' AND query ~ '^(LISTEN|DELETE FROM vow.owners)'")}
            own = wait_until(lambda: len(sessions()) == 2 and sessions(), timeout=60,
                             message="the holder's owner and listening sessions are open")
            # A session opened now, idle from now on: once the server has ended it, the holder's
            # sessions (idle since before it opened) would have been ended too.
            probe = psycopg.connect(postgres_url, autocommit=True, application_name="vow-probe")
            wait_until(lambda: not watch.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = "
                                                 "'vow-probe'").fetchall(), timeout=60,
                       message="the server ended the idle probe")
            probe.close()
            assert other.owner_alive(owner) is True
            assert other.lease_free("wf") is False
            assert other.claim("wf", new_owner_id(), 60) is None
            assert sessions() == own
    finally:
        holder.close()
        other.close()


def test_a_read_after_every_pooled_session_was_ended_at_once_succeeds(postgres_url: str, monkeypatch) -> None:
    """An administrator, a failover or a pooler ends every session of a store at once. A pooled
    session is checked before use, but the server's goodbye may not have arrived yet when it is:
    here no check sees it (as in that moment). A read then meets one ended session after another
    and must go on to a fresh one; it gave up after the second (StoreError: terminating connection
    due to administrator command) though the server was up."""
    monkeypatch.setattr("vow_postgres.store._check_pooled", lambda con: None)
    store = PostgresStore(postgres_url + "?application_name=vow-ended")
    try:
        store.apply(Batch(creates=[PromiseRecord("wf", State.PENDING, Kind.WORKFLOW, "wf")]))
        pool = store._get_pool()
        with pool.connection(), pool.connection(), pool.connection(), pool.connection():
            pass  # four sessions in the pool
        with psycopg.connect(postgres_url, autocommit=True) as con:
            ended = con.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
                                "'vow-ended' AND datname = current_database()").fetchall()
            assert len(ended) >= 4
            wait_until(lambda: not con.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = "
                                               "'vow-ended'").fetchall(), timeout=60, message="the sessions ended")
        record = store.get("wf")
        assert record is not None and record.state is State.PENDING
    finally:
        store.close()


# -- the schema ---------------------------------------------------------------------------------

def test_the_schema_is_made_once_by_one_of_many_processes_opening_it_together(postgres_url: str) -> None:
    code = ("import sys; from vow_postgres import PostgresStore; s = PostgresStore(sys.argv[1]); "
            "print(s.get('x')); s.close()")
    procs = [subprocess.Popen([sys.executable, "-c", code, postgres_url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "None", err
    with psycopg.connect(postgres_url, autocommit=True) as con:
        assert con.execute("SELECT version FROM vow.version").fetchall() == [(SCHEMA_VERSION,)]


def test_a_schema_of_a_newer_version_is_refused_and_left_as_it_is(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("UPDATE vow.version SET version = %s", (SCHEMA_VERSION + 1,))
    before = _tables(postgres_url)
    with pytest.raises(StoreError, match=rf"written by a newer vow-postgres \(schema version {SCHEMA_VERSION + 1}; "
                                         rf"this one supports up to {SCHEMA_VERSION}\); upgrade vow-postgres"):
        open_store(postgres_url)
    assert _tables(postgres_url) == before


def test_a_schema_that_is_not_a_vow_store_is_refused(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("CREATE SCHEMA billing; CREATE TABLE billing.invoices (id int)")
    with pytest.raises(StoreError, match=r"schema 'billing' holds tables invoices and no vow version; it is not "
                                         r"a vow store"):
        open_store(postgres_url + "?schema=billing")
    assert _tables(postgres_url, "billing") == [("invoices", "0")]
    store = open_store(postgres_url + "?schema=vow_billing")  # another schema in the same database is fine
    store.close()


def _apply_definition(con: psycopg.Connection) -> tuple[str, str]:
    """``vow.apply``'s definition as the server prints it, and its row version in the catalog."""
    row = con.execute("SELECT pg_get_functiondef(p.oid), p.xmin::text FROM pg_proc p "
                      "WHERE p.oid = 'vow.apply'::regproc").fetchone()
    assert row is not None
    return row[0], row[1]


def test_a_schema_whose_functions_another_release_made_gets_this_releases(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as con:
        ours, _ = _apply_definition(con)
        # What another release of the same schema version left: apply written otherwise, the schema marked so.
        con.execute(ours.replace("BEGIN", "BEGIN\n    PERFORM 1;", 1))
        con.execute("COMMENT ON SCHEMA vow IS 'vow-postgres functions 0123456789abcdef'")
        assert _apply_definition(con)[0] != ours
    store = PostgresStore(postgres_url)
    try:
        with psycopg.connect(postgres_url, autocommit=True) as con:
            assert _apply_definition(con)[0] == ours
            assert con.execute("SELECT obj_description('vow'::regnamespace, 'pg_namespace')").fetchone() == (
                functions_mark("vow"),)
        record = PromiseRecord("r", State.PENDING, Kind.WORKFLOW, "r", "wf", "[]", None, None, None, "r", 1, 1.0,
                               None, {})
        store.apply(Batch(creates=[record]))
        assert store.get("r") == record
    finally:
        store.close()


def test_a_schema_whose_functions_are_this_releases_is_not_written_when_opened(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as con:
        before = _apply_definition(con)
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as con:
        assert _apply_definition(con) == before  # the same row version: not made again


# -- time -----------------------------------------------------------------------------------------

def test_leases_are_judged_by_the_servers_clock_not_the_clients(pg_store: PostgresStore, monkeypatch) -> None:
    pg_store.apply(Batch(creates=[PromiseRecord("wf", State.PENDING, Kind.WORKFLOW, "wf")]))
    server_now = pg_store.now()
    assert abs(server_now - time.time()) < 60  # the same machine here: the clocks roughly agree
    remote = pg_store.claim("wf", "elsewhere:1:1:remote", 30)
    assert server_now + 30 <= remote.expires_at < pg_store.now() + 30 + 1e-6
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)  # this machine's clock jumps an hour ahead
    assert pg_store.claimable() == [], "a lease the server holds valid looked expired to a client"
    assert pg_store.claim("wf", "here:2:2:local", 30) is None
    assert pg_store.renew([remote], 30)[0].expires_at < real() + 120
    monkeypatch.undo()
    assert [r.id for r in pg_store.claimable(now=remote.expires_at + 1)] == ["wf"]


# -- processes ------------------------------------------------------------------------------------

def test_a_forked_child_opens_its_own_connections_and_leaves_the_parents_alone(pg_store: PostgresStore) -> None:
    pg_store.apply(Batch(creates=[PromiseRecord("before", State.PENDING, Kind.WORKFLOW, "before")]))
    pid = os.fork()
    if pid == 0:  # the child: use the store, drop it, exit without cleanup
        try:
            pg_store.apply(Batch(creates=[PromiseRecord("child", State.PENDING, Kind.WORKFLOW, "child")]))
            code = 0 if pg_store.get("before") is not None else 3
        except BaseException:  # noqa: BLE001 - any failure is the exit code
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert pg_store.get("child") is not None  # the parent's pooled connection still works after the child
    pg_store.apply(Batch(creates=[PromiseRecord("after", State.PENDING, Kind.WORKFLOW, "after")]))


def test_many_threads_share_a_small_pool(postgres_url: str) -> None:
    store = PostgresStore(postgres_url + "?pool_size=2")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(30):
                store.apply(Batch(creates=[PromiseRecord(f"t{n}.{i}", State.PENDING, Kind.STEP, f"t{n}",
                                                         parent=f"t{n}")]))
                store.tree(f"t{n}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert errors == []
        assert sum(len(store.tree(f"t{n}")) for n in range(8)) == 240
    finally:
        store.close()


# -- owners and the change feed ------------------------------------------------------------------

def test_an_owner_killed_on_any_machine_reads_dead_at_once(postgres_url: str, pg_store: PostgresStore) -> None:
    code = ("import sys, time; from vow_postgres import PostgresStore; from vow.stores.base import new_owner_id\n"
            "s = PostgresStore(sys.argv[1]); o = new_owner_id(); assert s.hold_owner(o)\n"
            "print(o, flush=True); time.sleep(3600)")
    child = subprocess.Popen([sys.executable, "-c", code, postgres_url], stdout=subprocess.PIPE, text=True)
    try:
        owner = child.stdout.readline().strip()
        assert owner and pg_store.owner_alive(owner) is True
        child.kill()
        child.communicate(timeout=60)
        wait_until(lambda: pg_store.owner_alive(owner) is False, timeout=60, message="the server saw the session end")
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=60)
    assert pg_store.owner_alive("another-host:1:0123456789abcdef") is None, "an owner never seen here is unknown"
    mine = "here:1:00000000000000aa"
    assert pg_store.hold_owner(mine) and pg_store.owner_alive(mine) is True
    pg_store.release_owner(mine)
    assert pg_store.owner_alive(mine) is False


def test_a_broken_liveness_session_is_taken_up_again(postgres_url: str, pg_store: PostgresStore) -> None:
    owner = "here:2:00000000000000bb"
    assert pg_store.hold_owner(owner)
    lease = pg_store.claim("wf", owner, 30)
    with psycopg.connect(postgres_url, autocommit=True) as con:  # as a server restart would
        con.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    other = PostgresStore(postgres_url)
    try:
        wait_until(lambda: other.owner_alive(owner) is False, timeout=60, message="the owner reads dead")
        pg_store.check_owners()  # as the lease keeper does every renewal interval
        assert pg_store.renew([lease], 30)
        assert other.owner_alive(owner) is True
        assert other.claim("wf", "another:3:00000000000000cc", 30) is None
    finally:
        other.close()


# The child stops right after the statement that stores its owner row, until it reads a line.
_STOPS_AFTER_STORING_ITS_OWNER = """
import sys
import psycopg
from vow_postgres import PostgresStore
from vow.stores.owners import new_owner_id

execute = psycopg.Connection.execute

def execute_then_stop(con, query, *args, **kwargs):
    cursor = execute(con, query, *args, **kwargs)
    if "INSERT INTO vow.owners" in str(query):
        print("row stored", flush=True)
        sys.stdin.readline()
    return cursor

psycopg.Connection.execute = execute_then_stop
store = PostgresStore(sys.argv[1])
owner = new_owner_id()
print(owner, flush=True)
assert store.hold_owner(owner) and store.claim("wf", owner, 3600)
print("claimed", flush=True)
sys.stdin.readline()
"""


def test_an_owner_shown_alive_while_another_starts_reads_dead_at_once_when_killed(postgres_url: str,
                                                                                  pg_store: PostgresStore) -> None:
    """Every owner that shows itself alive deletes the rows of dead owners holding no lease. One
    starting at the same moment must not be among them: its row, once others can read it, is
    already locked. (When the lock was taken by a second statement, a sweep between the two read
    the row as a dead owner's and deleted it; its owner was unknown from then on, and when it was
    killed its leases waited to expire.)"""
    pg_store.apply(Batch(creates=[PromiseRecord("wf", State.PENDING, Kind.WORKFLOW, "wf")]))
    child = spawn("-c", _STOPS_AFTER_STORING_ITS_OWNER, postgres_url, stdin=True, env={"PGAPPNAME": "vow-killed"})
    try:
        owner = read_line(child).strip()
        assert read_line(child) == "row stored\n"
        assert pg_store.hold_owner(new_owner_id())  # another owner starts, and sweeps
        child.stdin.write("\n")
        child.stdin.flush()
        assert read_line(child) == "claimed\n"
    finally:
        kill(child)
    with psycopg.connect(postgres_url, autocommit=True) as con:
        wait_until(lambda: not con.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = 'vow-killed' "
                                           "AND datname = current_database()").fetchall(),
                   timeout=60, message="the server ended the killed owner's sessions")
    assert pg_store.owner_alive(owner) is False, "the killed owner reads as unknown: the sweep deleted its row"
    assert pg_store.claim("wf", new_owner_id(), 30), "the killed owner's lease (an hour long) was not taken at once"


def test_an_outside_write_wakes_a_subscriber_on_another_connection(postgres_url: str,
                                                                   pg_store: PostgresStore) -> None:
    woken = threading.Event()
    unsubscribe = pg_store.subscribe(woken.set)
    start = pg_store.changes(None).seq
    writer = PostgresStore(postgres_url)
    try:
        wait_until(lambda: pg_store._listening is not None, message="the listener is connected")
        writer.apply(Batch(creates=[PromiseRecord("wf", State.PENDING, Kind.WORKFLOW, "wf")]))
        assert not woken.wait(0.2), "an engine's own write is not announced"
        writer.create(PromiseRecord("submitted", State.PENDING, Kind.WORKFLOW, "submitted"), outside=True)
        assert woken.wait(60), "no NOTIFY arrived"
        assert pg_store.changes(start).entries == [("submitted", "submitted")]
        woken.clear()
        unsubscribe()
        writer.create(PromiseRecord("later", State.PENDING, Kind.WORKFLOW, "later"), outside=True)
        assert pg_store.changes(start).entries == [("submitted", "submitted"), ("later", "later")]
    finally:
        writer.close()


def test_the_listener_reconnects_and_says_it_may_have_missed_something(postgres_url: str,
                                                                       pg_store: PostgresStore) -> None:
    calls = []
    pg_store.subscribe(lambda: calls.append(1))
    wait_until(lambda: pg_store._listening is not None, message="the listener is connected")
    first = pg_store._listening
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("SELECT pg_terminate_backend(%s)", (first.info.backend_pid,))
    wait_until(lambda: calls, timeout=60, message="a call after the reconnection")
    assert pg_store._listening is not first


def test_a_fenced_replay_of_records_under_a_settled_child_workflow_is_no_conflict(pg_store: PostgresStore) -> None:
    """A child workflow retried from the top creates its (settled) children again: create-or-get,
    which creates nothing, so no record is created under a settled parent (regression: this was
    a ConflictError, and the engine's replay then started a leaf twice)."""
    lease = pg_store.claim("wf", "here:1:00000000000000dd", 30)
    child = PromiseRecord("wf.1.1", State.PENDING, Kind.WORKFLOW, "wf", parent="wf.1")
    leaf = PromiseRecord("wf.1.1.1", State.PENDING, Kind.STEP, "wf", parent="wf.1.1")
    pg_store.apply(Batch(creates=[PromiseRecord("wf", State.PENDING, Kind.WORKFLOW, "wf"),
                                  PromiseRecord("wf.1", State.PENDING, Kind.WORKFLOW, "wf", parent="wf"), child, leaf],
                         fences={"wf": lease.token}))
    finished = [Settle("wf.1.1.1", State.RESOLVED, "1", 1.0), Settle("wf.1.1", State.RESOLVED, "1", 1.0)]
    pg_store.apply(Batch(settles=finished, fences={"wf": lease.token}))
    result = pg_store.apply(Batch(creates=[child, leaf], fences={"wf": lease.token}))
    assert set(result.existing) == {"wf.1.1", "wf.1.1.1"} and result.conflicts == {}


@pytest.mark.parametrize("where", ["role", "database"])
def test_a_dbas_statement_timeout_cancels_no_commit_that_waits(postgres_server: PostgresServer, postgres_url: str,
                                                                where: str) -> None:
    """A ``statement_timeout`` (or ``lock_timeout``) an administrator set on the role or the database
    canceled a round's commit that waited longer for a lease another session held (a claim, a
    ``vow cancel``): the run failed and its leaves, whose results the commit carried, ran again on
    resume. The store's sessions run without them; one given in the URL is kept."""
    database = postgres_url.rsplit("/", 1)[1]
    role = postgres_url.split("://", 1)[1].split("@", 1)[0]
    target = f'ROLE "{role}" IN DATABASE "{database}"' if where == "role" else f'DATABASE "{database}"'
    postgres_server.sql(f"ALTER {target} SET statement_timeout = '200ms'")
    postgres_server.sql(f"ALTER {target} SET lock_timeout = '200ms'")
    store = PostgresStore(postgres_url)
    try:
        store.apply(Batch(creates=[PromiseRecord("st", State.PENDING, Kind.WORKFLOW, "st"),
                                   PromiseRecord("st.1", State.PENDING, Kind.STEP, "st", parent="st")]))
        token = store.claim("st", "here:1:00000000000000ab", 60).token
        with psycopg.connect(postgres_url, autocommit=False, application_name="vow-locker") as locker:
            locker.execute("SELECT 1 FROM vow.leases WHERE root = 'st' FOR UPDATE")
            outcome: list[object] = []

            def commit() -> None:
                try:
                    store.apply(Batch(settles=[Settle("st.1", State.RESOLVED, "7", 1.0)], fences={"st": token}))
                    outcome.append("stored")
                except Exception as exc:  # noqa: BLE001 - the test reports it
                    outcome.append(exc)

            thread = threading.Thread(target=commit)
            thread.start()
            with psycopg.connect(postgres_url, autocommit=True) as watcher:
                # The commit waits on the lock for twice the timeout and more, still waiting (or it ended).
                wait_until(lambda: outcome or watcher.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
                    "AND query LIKE '%apply(%' AND clock_timestamp() - query_start > interval '400ms'").fetchone(),
                    timeout=60, message="the commit waited past the timeout")
            locker.rollback()
            thread.join(60)
        assert outcome == ["stored"]
        assert store.get("st.1").value == "7"
    finally:
        store.close()
    with psycopg.connect(postgres_url + "?options=-c%20statement_timeout%3D1234", autocommit=True) as con:
        own = PostgresStore(postgres_url + "?options=-c%20statement_timeout%3D1234")
        try:
            with own._connection() as pooled:
                assert pooled.execute("SHOW statement_timeout").fetchone() == ("1234ms",)
        finally:
            own.close()
        assert con.execute("SHOW statement_timeout").fetchone() == ("1234ms",)


def test_a_read_only_database_is_one_clear_error_and_reads_still_work(postgres_server: PostgresServer,
                                                                      postgres_url: str) -> None:
    """A standby, or ``default_transaction_read_only`` set by an administrator, takes no writes: the
    first write of a run (or the schema's creation) said only "cannot execute SELECT in a read-only
    transaction" with the server function's SQL as context. It now says what the server refused and
    what to check; reads (``vow ls``, ``vow show``) keep working."""
    fresh = postgres_server.create_database()
    database = postgres_url.rsplit("/", 1)[1]
    with Vow(postgres_url) as client:
        client.run("ro/1", _ro_flow)
    for url in (postgres_url, fresh):
        postgres_server.sql(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" SET default_transaction_read_only = on')
    clear = (r"^PostgreSQL store postgresql://\S+: the server takes no writes here \(cannot execute [A-Z ]+ in a "
             r"read-only transaction\); it is a standby or default_transaction_read_only is on \(for the server, "
             r"database or role\): point the store at the primary, or have the setting turned off$")
    try:
        with pytest.raises(StoreError, match=clear):
            PostgresStore(fresh)
        _RO_STARTED.clear()
        with Vow(postgres_url) as client:
            assert client.get("ro/1").state is State.RESOLVED
            with pytest.raises(StoreError, match=clear):
                client.run("ro/2", _ro_flow)
        assert _RO_STARTED == []
    finally:
        postgres_server.sql(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
        postgres_server.drop_database(fresh)


_RO_STARTED: list[str] = []


def _ro_leaf(ctx) -> int:
    _RO_STARTED.append(ctx.id)
    return 1


def _ro_flow(ctx):
    return (yield ctx.run(_ro_leaf))


def test_a_database_named_oddly_and_a_search_path_in_the_url_hold_a_store(postgres_server: PostgresServer) -> None:
    """Where users deploy it: a database name that needs quoting in SQL and in a URL, and the
    role's search_path moved by the URL's options (every name the store uses is schema-qualified)."""
    name = "odd db/ü?#%&=+'\"x.Dash-1"
    quoted = '"' + name.replace('"', '""') + '"'
    postgres_server.sql(f"CREATE DATABASE {quoted} TEMPLATE template0")
    url = postgres_server.database_url(name)
    try:
        with psycopg.connect(url, autocommit=True) as con:
            con.execute("CREATE SCHEMA elsewhere")
            con.execute("CREATE TABLE elsewhere.promises (id text)")  # a table of the same name, elsewhere
        for query in ("", "?options=-c%20search_path%3Delsewhere", "?schema=mine&options=-c%20search_path%3D"):
            with Vow(url + query) as client:
                assert client.run(f"odd/{len(query)}", _ro_flow) == 1
                assert client.get(f"odd/{len(query)}").state is State.RESOLVED
        with psycopg.connect(url, autocommit=True) as con:
            assert con.execute("SELECT count(*) FROM vow.promises").fetchone() == (4,)
            assert con.execute("SELECT count(*) FROM mine.promises").fetchone() == (2,)
            assert con.execute("SELECT count(*) FROM elsewhere.promises").fetchone() == (0,)
    finally:
        postgres_server.drop_database(url)
    literal = "'" + name.replace("'", "''") + "'"
    assert postgres_server.sql(f"SELECT count(*) FROM pg_database WHERE datname = {literal}") == "0"


def test_a_full_pool_whose_sessions_were_all_ended_serves_the_next_read_without_waiting(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every session of a busy store ended at once (an administrator's pg_terminate_backend, a
    failover, a restart): the pool holds ten dead sessions. psycopg_pool's own check of each slept
    between one refused session and the next (0, 1, 2, 4, 8, 16 s...): the next read took 63 s, and a
    run stood still that long. The store now drops each ended session and takes the next at once."""
    import psycopg_pool.pool

    slept: list[float] = []
    monkeypatch.setattr(psycopg_pool.pool, "sleep", lambda seconds: slept.append(seconds))
    store = PostgresStore(postgres_url + "?application_name=vow-full")
    try:
        barrier = threading.Barrier(store.pool_size)

        def hold_a_connection() -> None:
            with store._connection() as con:
                barrier.wait(30)
                con.execute("SELECT 1")

        threads = [threading.Thread(target=hold_a_connection) for _ in range(store.pool_size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        with psycopg.connect(postgres_url, autocommit=True) as con:
            ended = con.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
                                "'vow-full' AND datname = current_database()").fetchall()
            assert len(ended) >= store.pool_size
            wait_until(lambda: not con.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = "
                                               "'vow-full'").fetchall(), timeout=60, message="the sessions ended")
        assert store.get("none") is None
        store.apply(Batch(creates=[PromiseRecord("wf", State.PENDING, Kind.WORKFLOW, "wf")]))
        assert sum(slept) < 1, slept
    finally:
        store.close()
def test_vow_show_of_a_branch_reads_the_branch_in_one_query_not_once_per_promise(postgres_url: str,
                                                                                  monkeypatch) -> None:
    """Here ``children(parent)`` reads the whole tree of the parent's root (no index of parents is kept),
    so reading a branch a level at a time read the run's tree once per workflow in the branch: ``vow show``
    of a branch of 31 workflows in a run of 100,000 promises took 10.1 s, its whole tree 1.35 s. Then it
    read the run's tree once; now the server follows the parents and sends the branch (subtree())."""
    from click.testing import CliRunner

    from vow.cli import cli

    now = time.time()
    records = [PromiseRecord("big/1", State.RESOLVED, Kind.WORKFLOW, "big/1", func="flow", args="[]", value="1",
                             created_at=now, settled_at=now + 9)]
    for n in range(3):
        records.append(PromiseRecord(f"big/1.inner.{n}", State.RESOLVED, Kind.WORKFLOW, "big/1", func="w", args="[]",
                                     value="1", parent="big/1.inner", created_at=now + 2, settled_at=now + 3))
        records.append(PromiseRecord(f"big/1.inner.{n}.0", State.RESOLVED, Kind.STEP, "big/1", func="leaf", args="[]",
                                     value="1", parent=f"big/1.inner.{n}", created_at=now + 2, settled_at=now + 3))
    records.insert(1, PromiseRecord("big/1.inner", State.RESOLVED, Kind.WORKFLOW, "big/1", func="inner", args="[]",
                                    value="1", parent="big/1", created_at=now + 1, settled_at=now + 4))
    store = PostgresStore(postgres_url)
    store.apply(Batch(creates=records))
    store.close()
    calls: list[str] = []
    for name in ("children", "tree", "subtree"):
        real = getattr(PostgresStore, name)
        monkeypatch.setattr(PostgresStore, name,
                            lambda self, id, name=name, real=real: calls.append(name) or real(self, id))
    shown = CliRunner().invoke(cli, ["show", "big/1.inner", "--store", postgres_url])
    assert shown.exit_code == 0, shown.output
    shown_ids = [line.lstrip("│├└─ ").split()[0] for line in shown.output.splitlines()]
    assert shown_ids == ["big/1.inner", "big/1.inner.0", "big/1.inner.0.0", "big/1.inner.1", "big/1.inner.1.0",
                         "big/1.inner.2", "big/1.inner.2.0"], shown.output
    assert calls == ["subtree"], calls


def test_vow_cancel_of_a_branch_sends_the_branch_not_its_run(postgres_url: str, monkeypatch) -> None:
    """`vow cancel` of a promise under a run read the run's whole tree to find what was under it; the
    server now follows the parents and sends the branch alone (and the same promises are canceled)."""
    import vow_postgres.store as pg_store_module

    from tests.cli.test_cancel import cancel_a_branch_of_a_big_run

    cancel_a_branch_of_a_big_run(postgres_url, pg_store_module, monkeypatch)


def test_a_subtree_is_the_part_of_the_runs_tree_under_its_promise_in_the_same_order(pg_store: PostgresStore) -> None:
    """What subtree() reads is what tree() reads of the branch, in tree()'s order (vow show prints it)."""
    from vow.stores.contract import make_record

    at = {"r": 1.0, "r.a": 2.0, "r.b": 3.0, "r.a.2": 5.0, "r.a.1": 5.0, "r.a.1.x": 6.0, "r.c": 7.0, "s": 8.0}
    parents = {"r.a": "r", "r.b": "r", "r.a.2": "r.a", "r.a.1": "r.a", "r.a.1.x": "r.a.1", "r.c": "r"}
    # r.a.2 and r.a.1 share a time: the order of creation decides, as in tree()
    records = [make_record(rid, parent=parents.get(rid), created_at=t,
                           kind=Kind.WORKFLOW if rid in parents.values() else Kind.STEP) for rid, t in at.items()]
    pg_store.apply(Batch(creates=records))
    tree = pg_store.tree("r")
    for top in ("r", "r.a", "r.a.1", "r.b"):
        below = {top}
        expected = [r for r in tree if r.id == top or (r.parent in below and not below.add(r.id))]
        assert [r.id for r in pg_store.subtree(top)] == [r.id for r in expected]
    assert [r.id for r in pg_store.subtree("r.a")] == ["r.a", "r.a.2", "r.a.1", "r.a.1.x"]
    assert pg_store.subtree("nothing") == [] and pg_store.subtree("s") == [records[-1]]


def test_vow_ls_of_parked_runs_reads_the_parked_leases_not_every_pending_runs(postgres_url: str, monkeypatch) -> None:
    """`vow ls --state parked` paged through every pending run and read each one's lease in turn, to
    keep the parked. It reads the parked leases, then their runs, and prints the same."""
    import vow_postgres.store as pg_store_module

    from tests.test_listing import list_parked_runs_counting_reads

    list_parked_runs_counting_reads(postgres_url, PostgresStore, pg_store_module, monkeypatch)


def test_a_schema_made_before_the_index_of_parked_leases_gets_it_at_the_next_opening(postgres_url: str) -> None:
    """A schema of the same version made by an earlier vow-postgres has no index of parked leases: the
    next store opened on it makes it (a fresh schema has it), and the parked leases read the same."""
    def index() -> str | None:
        with psycopg.connect(postgres_url, autocommit=True) as con:
            return con.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'vow' "
                               "AND indexname = 'leases_parked'").fetchone()

    store = PostgresStore(postgres_url)
    store.claim("r", "died", 1.0, now=0.0)
    store.claim("r", "next", 1.0, now=100.0, max_recoveries=0)
    store.close()
    assert index() is not None
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("DROP INDEX vow.leases_parked")  # as the vow-postgres before it left the schema
    store = PostgresStore(postgres_url)
    try:
        assert "WHERE (parked IS NOT NULL)" in index()[0]
        assert [lease.root for lease in store.parked_leases()] == ["r"]
    finally:
        store.close()


def test_a_page_of_runs_is_one_keyset_query_however_deep_it_is(pg_store: PostgresStore, monkeypatch) -> None:
    """`runs()` was the default built on search(): every page searched again from the newest run, 256 and
    more of them (4 times more each time the page was not full), and kept those past the cursor. So page n
    of a listing read about n pages of runs: paging through a large store read its runs over and over. A
    page is now one query from the cursor on, sending the page's runs alone; the pages are the default's."""
    import vow_postgres.store as pg_store_module

    from vow.stores.base import StoreOperations, pipeline_workflow

    def run(n: int) -> PromiseRecord:
        if n % 4 == 3:  # pipeline runs, named in their arguments: "orders" and "images" in turn
            return PromiseRecord(f"run/{n:04}", State.PENDING, Kind.WORKFLOW, f"run/{n:04}", func=pipeline_workflow(),
                                 args=json.dumps([{"name": "orders" if n % 8 == 3 else "images"}]),
                                 created_at=1000.0 + n // 2)  # two runs start together: the id breaks the tie
        return PromiseRecord(f"run/{n:04}", State.PENDING, Kind.WORKFLOW, f"run/{n:04}", func="flow", args="[]",
                             created_at=1000.0 + n // 2)

    pg_store.apply(Batch(creates=[run(n) for n in range(800)]))
    pg_store.apply(Batch(settles=[Settle(f"run/{n:04}", State.RESOLVED, "1", 5000.0) for n in range(0, 800, 3)]))
    statements: list[str] = []
    records: list[str] = []
    real_execute, real_record = psycopg.Connection.execute, pg_store_module._record
    for filters in ({}, {"state": State.RESOLVED}, {"state": State.PENDING, "until": 1350.0}, {"name": "orders"},
                    {"name": "flow", "state": State.RESOLVED, "since": 1010.0}):
        limit, pages, before = 7, [], None
        while True:
            statements.clear()
            records.clear()
            with monkeypatch.context() as patched:
                patched.setattr(psycopg.Connection, "execute",
                                lambda con, *args, **kwargs: statements.append(args[0]) or real_execute(con, *args,
                                                                                                        **kwargs))
                patched.setattr(pg_store_module, "_record", lambda row: records.append(row[0]) or real_record(row))
                page = pg_store.runs(**filters, before=before, limit=limit)
            # A page of a name reads the pipeline runs of the other name too (half of them here).
            most = limit if "name" not in filters else 2 * limit
            assert len(records) <= most, f"{filters} page {len(pages) + 1}: {len(records)} records sent"
            assert len(statements) <= (1 if "name" not in filters else 2), f"{filters}: {statements}"
            if not page:
                break
            assert page == StoreOperations.runs(pg_store, **filters, before=before, limit=limit)
            pages.append([r.id for r in page])
            before = (page[-1].created_at, page[-1].id)
        seen = [rid for ids in pages for rid in ids]
        assert seen == [r.id for r in StoreOperations.runs(pg_store, **filters, limit=1000)], filters
        assert len(pages) >= 10, (filters, len(pages))


def test_a_schema_made_before_the_index_of_runs_gets_it_at_the_next_opening(postgres_url: str) -> None:
    """A schema of the same version made by an earlier vow-postgres has no index of runs in the order of
    runs()'s cursor: the next store opened on it makes it (a fresh schema has it), and runs answer the same."""
    def index() -> str | None:
        with psycopg.connect(postgres_url, autocommit=True) as con:
            row = con.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'vow' "
                              "AND indexname = 'promises_runs'").fetchone()
        return None if row is None else row[0]

    store = PostgresStore(postgres_url)
    store.apply(Batch(creates=[PromiseRecord(f"r{n}", State.PENDING, Kind.WORKFLOW, f"r{n}", func="flow", args="[]",
                                             created_at=float(n // 2)) for n in range(6)]))
    listed = store.runs(limit=4, before=(2.0, "r5"))
    store.close()
    assert index() is not None
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("DROP INDEX vow.promises_runs")  # as the vow-postgres before it left the schema
    assert index() is None
    store = PostgresStore(postgres_url)
    try:
        made = index()
        assert made is not None and 'COLLATE "C"' in made and "WHERE ((parent IS NULL) AND (kind = 'workflow'" in made
        assert [r.id for r in listed] == ["r4", "r3", "r2", "r1"] and store.runs(limit=4, before=(2.0, "r5")) == listed
    finally:
        store.close()


def _index_build_waits(con: psycopg.Connection, longer_than: float = 0) -> bool:
    """Whether the build of ``promises_runs`` waits for a lock (begun more than ``longer_than`` seconds ago)."""
    return con.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE "
                       "'%%CREATE INDEX%%promises_runs%%' AND now() - query_start > make_interval(secs => %s)",
                       (longer_than,)).fetchone()[0] == 1


def _insert_run(con: psycopg.Connection, rid: str) -> None:
    """Store a pending run ``rid`` as a round does (in ``con``'s transaction, if it has one open)."""
    con.execute("INSERT INTO vow.promises (id, state, kind, root, func, args, idempotency_key, attempt, "
                "created_at, tags) VALUES (%s, 'pending', 'workflow', %s, 'flow', '[]', %s, 0, 1, '{}')",
                (rid, rid, rid))


def test_making_a_missing_index_keeps_the_writers_going(postgres_url: str) -> None:
    """An index added to a schema made earlier was built with CREATE INDEX, which holds writes to its
    table until it is built: a store opening on a large store stalled every worker's rounds meanwhile
    (and, waiting for a transaction in progress, every round queued behind it). It is built
    CONCURRENTLY: a write made while it waits goes through, and the index is whole once made. One a
    build left invalid (never used, and IF NOT EXISTS would keep it) is made again."""
    def valid() -> bool | None:
        with psycopg.connect(postgres_url, autocommit=True) as con:
            row = con.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('vow.promises_runs')"
                              ).fetchone()
        return None if row is None else row[0]

    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("DROP INDEX vow.promises_runs")  # as the vow-postgres before it left the schema
    opened: list[PostgresStore] = []
    with psycopg.connect(postgres_url) as busy, psycopg.connect(postgres_url, autocommit=True) as writer:
        _insert_run(busy, "in-progress")  # a round in progress: its transaction stays open
        builder = threading.Thread(target=lambda: opened.append(PostgresStore(postgres_url)))
        builder.start()
        try:
            # Until the build waits for that transaction (it has begun, and holds its lock on the table).
            wait_until(lambda: _index_build_waits(writer), timeout=30)
            writer.execute("SET lock_timeout = '1s'")  # a write held back by the build would fail here
            _insert_run(writer, "meanwhile")
        finally:
            busy.commit()
            builder.join(30)
    assert len(opened) == 1, "the store that made the index did not open"
    store = opened[0]
    try:
        assert valid() is True
        assert [r.id for r in store.runs()] == ["meanwhile", "in-progress"]
    finally:
        store.close()
    with psycopg.connect(postgres_url, autocommit=True) as con:  # as a build that failed half-way leaves it
        con.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'vow.promises_runs'::regclass")
    assert valid() is False
    PostgresStore(postgres_url).close()
    assert valid() is True


def test_a_store_opening_while_another_makes_a_missing_index_does_not_wait_for_it(postgres_url: str) -> None:
    """The store that makes a missing index holds the schema's lock meanwhile; another opening then goes
    on without the index (its queries answer the same) rather than wait for a build of minutes."""
    def made() -> bool:
        with psycopg.connect(postgres_url, autocommit=True) as con:
            return bool(con.execute("SELECT to_regclass('vow.promises_runs') IS NOT NULL").fetchone()[0])

    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("DROP INDEX vow.promises_runs")
        con.execute("SELECT pg_advisory_lock(hashtext('vow indexes vow'))")  # as the store making it holds
        store = PostgresStore(postgres_url)
        try:
            assert store.runs() == [] and not made()
        finally:
            store.close()
    PostgresStore(postgres_url).close()
    assert made()


def test_a_timeout_in_the_url_does_not_cut_off_making_a_missing_index(postgres_url: str) -> None:
    """A URL's ``-c lock_timeout`` (or statement_timeout) is for the store's rounds. It cut off the build
    of a missing index waiting for a round in progress: the opening failed with a StoreError and left the
    index invalid, so every later opening failed the same way. The build now takes no timeout."""
    timed = postgres_url + ("&" if "?" in postgres_url else "?") + "options=-c%20lock_timeout%3D200"
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("DROP INDEX vow.promises_runs")
    opened: list[PostgresStore] = []
    failed: list[BaseException] = []

    def open_store() -> None:
        try:
            opened.append(PostgresStore(timed))
        except BaseException as exc:  # noqa: BLE001 - the failure is what the test looks at
            failed.append(exc)

    with psycopg.connect(postgres_url) as busy, psycopg.connect(postgres_url, autocommit=True) as watcher:
        _insert_run(busy, "busy")  # a round in progress: its transaction stays open
        builder = threading.Thread(target=open_store)
        builder.start()
        try:
            # The build has waited for that round five times as long as the URL's lock_timeout (or failed).
            wait_until(lambda: failed or _index_build_waits(watcher, longer_than=1), timeout=30)
        finally:
            busy.commit()
            builder.join(30)
    assert failed == [] and len(opened) == 1, failed
    opened[0].close()
    with psycopg.connect(postgres_url, autocommit=True) as con:
        assert con.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'vow.promises_runs'::regclass"
                           ).fetchone() == (True,)


def test_an_opening_that_remakes_the_functions_does_not_wait_for_an_index_build(postgres_url: str) -> None:
    """The build of a missing index held the schema's lock, the one an opening takes to remake the
    functions another release made: such an opening (a rolling upgrade) waited for the whole build."""
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("DROP INDEX vow.promises_runs")
    stores: list[PostgresStore] = []
    with psycopg.connect(postgres_url) as busy, psycopg.connect(postgres_url, autocommit=True) as watcher:
        _insert_run(busy, "busy")  # a round in progress: the build waits for it
        builder = threading.Thread(target=lambda: stores.append(PostgresStore(postgres_url)))
        builder.start()
        try:
            wait_until(lambda: _index_build_waits(watcher), timeout=30)
            watcher.execute("COMMENT ON SCHEMA vow IS 'vow-postgres functions 0123456789abcdef'")  # another release's
            opener = threading.Thread(target=lambda: stores.append(PostgresStore(postgres_url)))
            opener.start()
            opener.join(30)
            waited_for_the_build = opener.is_alive()
            assert watcher.execute("SELECT obj_description('vow'::regnamespace, 'pg_namespace')").fetchone() == (
                functions_mark("vow"),)
        finally:
            busy.commit()
            builder.join(30)
        opener.join(30)
    for store in stores:
        store.close()
    assert not waited_for_the_build and len(stores) == 2


def test_a_role_that_may_not_make_a_missing_index_opens_the_store_without_it(postgres_url: str, caplog) -> None:
    """A role that may read the store but not make an index in it (not the tables' owner) opens a schema
    lacking one with a warning, and its listings answer the same."""
    role = f"vow_reader_{os.getpid()}_{int(time.time() * 1000)}"
    store = PostgresStore(postgres_url)
    store.apply(Batch(creates=[PromiseRecord(f"r{n}", State.PENDING, Kind.WORKFLOW, f"r{n}", func="flow", args="[]",
                                             created_at=float(n)) for n in range(3)]))
    store.close()
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("DROP INDEX vow.promises_runs")
        con.execute(f"CREATE ROLE {role} LOGIN")
        con.execute(f"GRANT USAGE ON SCHEMA vow TO {role}")
        con.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA vow TO {role}")
    try:
        reader = PostgresStore(_with_user(postgres_url, role))
        try:
            assert [r.id for r in reader.runs(limit=2, before=(2.0, "r2"))] == ["r1", "r0"]
        finally:
            reader.close()
        assert any("lacks the indexes promises_runs" in r.getMessage() for r in caplog.records)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as con:
            con.execute(f"DROP OWNED BY {role}")
            con.execute(f"DROP ROLE {role}")


def test_branch_counts_are_counted_on_the_server_not_sent_record_by_record(pg_store: PostgresStore,
                                                                          monkeypatch) -> None:
    """`branch_counts()` was the default: one children() query per run, which sent and decoded every
    direct child of it. The console's list of runs asks it for every page, so a page with a run of a
    100,000-branch fan-out decoded 100,000 records. The server now counts, one statement per chunk of
    runs, and sends a few numbers per run: no record at all. The answers are the default's, for odd ids
    too (quotes, %, _, backslashes, dots) and for more runs than one statement takes."""
    import vow_postgres.store as pg_store_module

    from vow.naming import storable
    from vow.stores.base import StoreOperations
    from vow.stores.contract import make_record

    odd = ["big", "it's", "100%", "a_b", "x\\y", 'q"q', "r.x", "r", "f%_'\\"]
    records: list[PromiseRecord] = [make_record(rid, kind=Kind.WORKFLOW, root=rid) for rid in odd]
    records += [make_record(f"big.{n}", parent="big", root="big") for n in range(300)]
    records += [make_record("big.child", parent="big", root="big", kind=Kind.WORKFLOW)]
    records += [make_record(f"big.child.{n}", parent="big.child", root="big") for n in range(50)]  # not big's
    for rid in odd[1:]:
        records += [make_record(f"{rid}.{name}", parent=rid, root=rid) for name in ("started", "result", "gallery")]
        records += [make_record(f"{rid}.gate", parent=rid, root=rid, kind=Kind.PROMISE),
                    make_record(f"{rid}.nap", parent=rid, root=rid, kind=Kind.SLEEP),
                    make_record(f"{rid}.ok", parent=rid, root=rid),
                    make_record(f"{rid}.bad", parent=rid, root=rid),
                    make_record(f"{rid}.sub", parent=rid, root=rid, kind=Kind.WORKFLOW),
                    make_record(f"{rid}.sub.started", parent=f"{rid}.sub", root=rid)]
    records += [make_record("r.y.result", parent="r", root="r")]  # r's branch "y.result", not bookkeeping
    records += [make_record(f"many{n}", kind=Kind.WORKFLOW, root=f"many{n}") for n in range(25)]
    records += [make_record(f"many{n}.{m}", parent=f"many{n}", root=f"many{n}") for n in range(25) for m in range(n)]
    pg_store.apply(Batch(creates=records))
    pg_store.apply(Batch(settles=[Settle(f"big.{n}", State.RESOLVED, "1", 1.0) for n in range(0, 300, 3)]
                         + [Settle(f"{rid}.bad", State.REJECTED, '"no"', 1.0) for rid in odd[1:]]
                         + [Settle(f"{rid}.started", State.RESOLVED, "1", 1.0) for rid in odd[1:]]))
    roots = [*odd, "big", "unknown", "a\x00b", "a\udc80", "big.child", *(f"many{n}" for n in range(25))]
    expected = StoreOperations.branch_counts(pg_store, roots)  # the default: what the answers must be
    assert expected["big"] == {State.RESOLVED: 100, State.PENDING: 201}
    assert expected["it's"] == {State.PENDING: 2, State.REJECTED: 1} == expected["f%_'\\"]
    assert expected["r"] == {State.PENDING: 3, State.REJECTED: 1}
    assert expected["big.child"] == {State.PENDING: 50} and expected["unknown"] == {} == expected["a\x00b"]
    statements: list[str] = []
    decoded: list[str] = []
    real_execute, real_record = psycopg.Connection.execute, pg_store_module._record
    with monkeypatch.context() as patched:
        patched.setattr(psycopg.Connection, "execute",
                        lambda con, *args, **kwargs: statements.append(args[0]) or real_execute(con, *args, **kwargs))
        patched.setattr(pg_store_module, "_record", lambda row: decoded.append(row[0]) or real_record(row))
        assert pg_store.branch_counts(roots) == expected
        assert decoded == [] and len(statements) == 1, (len(decoded), statements)
        statements.clear()
        patched.setattr(pg_store_module, "_BRANCH_CHUNK", 4)  # many runs: one statement per chunk of them
        assert pg_store.branch_counts(roots) == expected
        sent = dict.fromkeys(r for r in roots if storable(r))  # once each; the NUL and the surrogate never
        assert len(sent) == len(roots) - 3
        assert decoded == [] and len(statements) == -(-len(sent) // 4), statements
    assert pg_store.branch_counts([]) == {}
