"""Owners across a server restart: every session ends, so every owner's advisory lock goes, and a
process must show its owners alive again (row and lock) or a later death of theirs is not seen.

The tests restart a server of this module's own (``pg_ctl restart -m fast``), never the session's
shared one; the owners live in real child processes, SIGKILLed where what counts is how soon
their leases are taken over.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
from vow_postgres import PostgresStore

from tests.support import kill, read_line, spawn
from vow.records import Batch, Kind, PromiseRecord, State
from vow.stores.owners import new_owner_id
from vow.testing import wait_until
from vow.testing_postgres import PostgresServer, start_private_server

APP = "vow-restart-owner"
"""The application name of the child's sessions: the test waits until the server has ended them all."""


@pytest.fixture(scope="module")
def restartable_server() -> Iterator[PostgresServer]:
    server = start_private_server()
    yield server
    server.stop()


@pytest.fixture
def url(restartable_server: PostgresServer) -> Iterator[str]:
    url = restartable_server.create_database()
    PostgresStore(url).close()  # the schema exists before any child opens it
    yield url
    restartable_server.drop_database(url)


def _create_root(url: str, root: str) -> None:
    store = PostgresStore(url)
    try:
        store.apply(Batch(creates=[PromiseRecord(root, State.PENDING, Kind.WORKFLOW, root)]))
    finally:
        store.close()


def _wait_for_sessions_to_end(url: str) -> None:
    """Until the server has ended every session of the killed child (so its locks are gone)."""
    with psycopg.connect(url, autocommit=True) as con:
        wait_until(lambda: not con.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = %s "
                                           "AND datname = current_database()", (APP,)).fetchall(),
                   timeout=60, message="the server ended the killed owner's sessions")


# The child shows an owner alive and waits; after the restart it claims "wf" for an hour (and renews
# it, given "renew"), then waits.
_CLAIMS_AFTER_THE_RESTART = """
import sys
from vow_postgres import PostgresStore
from vow.stores.owners import new_owner_id

store = PostgresStore(sys.argv[1])
owner = new_owner_id()
assert store.hold_owner(owner)
print(owner, flush=True)
sys.stdin.readline()
lease = store.claim("wf", owner, 3600)
assert lease and (sys.argv[2:] != ["renew"] or store.renew([lease], 3600))
print("claimed", flush=True)
sys.stdin.readline()
"""


def test_an_owner_swept_while_the_server_restarted_shows_alive_again(url: str,
                                                                    restartable_server: PostgresServer) -> None:
    """After a restart an idle owner's row reads dead (its lock went with its session), and an owner
    starting then deletes it (it holds no lease). Taking the lock again is not enough: without its
    row the owner is unknown, and when it is killed holding a lease (an hour long here) the lease
    waits for expiry instead of being taken at once."""
    _create_root(url, "wf")
    child = spawn("-c", _CLAIMS_AFTER_THE_RESTART, url, "renew", stdin=True, env={"PGAPPNAME": APP})
    other = None
    try:
        owner = read_line(child).strip()
        restartable_server.restart()
        other = PostgresStore(url)
        assert other.owner_alive(owner) is False, "the restart ended the owner's session"
        assert other.hold_owner(new_owner_id())  # another owner starts, and sweeps
        assert other.owner_alive(owner) is None, "the sweep deleted the idle owner's row"
        child.stdin.write("\n")
        child.stdin.flush()
        assert read_line(child) == "claimed\n"
        assert other.owner_alive(owner) is True, "the owner shows itself alive again, row and lock"
        kill(child)
        _wait_for_sessions_to_end(url)
        assert other.owner_alive(owner) is False, "the killed owner reads as unknown"
        assert other.claim("wf", new_owner_id(), 30), "the killed owner's lease (an hour long) was not taken at once"
    finally:
        kill(child)
        if other is not None:
            other.close()


def test_a_lease_claimed_right_after_a_restart_is_a_live_owners(url: str,
                                                               restartable_server: PostgresServer) -> None:
    """An owner that claims after a restart, before anything else it does has taken its lock again,
    must not read dead: its fresh lease would be taken over at once by any worker (fencing keeps
    that safe, but the run starts over elsewhere while it still runs here)."""
    _create_root(url, "wf")
    child = spawn("-c", _CLAIMS_AFTER_THE_RESTART, url, stdin=True, env={"PGAPPNAME": APP})
    other = None
    try:
        owner = read_line(child).strip()
        restartable_server.restart()
        other = PostgresStore(url)
        assert other.owner_alive(owner) is False, "the restart ended the owner's session"
        child.stdin.write("\n")
        child.stdin.flush()
        assert read_line(child) == "claimed\n"
        assert other.owner_alive(owner) is True, "the owner claimed while it read dead"
        assert other.claim("wf", new_owner_id(), 30) is None, "a live owner's fresh lease was taken over"
        kill(child)
        _wait_for_sessions_to_end(url)
        assert other.claim("wf", new_owner_id(), 30), "the killed owner's lease was not taken at once"
    finally:
        kill(child)
        if other is not None:
            other.close()


# A real worker: it runs one workflow (so its owner is shown alive), then waits for work that never comes.
_IDLE_WORKER = """
import sys
from vow import Vow

vow = Vow(sys.argv[1], lease_ttl=3.0)

@vow.register
def warm_up(ctx):
    yield from ()
    return "ready"

assert vow.run("warm-up", warm_up) == "ready"
print(vow.owner, flush=True)
vow.worker()
"""


def test_an_idle_worker_shows_alive_again_after_a_restart(url: str, restartable_server: PostgresServer) -> None:
    """An idle worker holds no lease, so it renews nothing; its lease keeper still checks its owner
    every renewal interval (a third of the lease here: 1 s), so after a restart it reads alive
    again, and dead the moment it is killed, without ever claiming or renewing."""
    child = spawn("-c", _IDLE_WORKER, url, env={"PGAPPNAME": APP})
    other = None
    try:
        owner = read_line(child).strip()
        restartable_server.restart()
        other = PostgresStore(url)
        assert other.hold_owner(new_owner_id())  # another owner starts, and sweeps
        wait_until(lambda: other.owner_alive(owner) is True, timeout=60, proc=child,
                   message="the idle worker shows alive again")
        kill(child)
        _wait_for_sessions_to_end(url)
        assert other.owner_alive(owner) is False, "the killed idle worker reads as unknown"
    finally:
        kill(child)
        if other is not None:
            other.close()


def test_a_store_whose_pooled_sessions_a_restart_ended_reads_and_writes_at_once(
        restartable_server: PostgresServer, url: str) -> None:
    """Every idle connection in the pool is dead after a restart. A read used to fail once per dead
    connection (it tries once more) and a write at once (a batch is never sent twice: it may have
    committed); the pool now hands out only sessions the server has not ended."""
    store = PostgresStore(url + "?pool_size=4")
    try:
        barrier = threading.Barrier(4)

        def hold_a_connection() -> None:
            with store._connection() as con:  # four sessions in the pool at once
                barrier.wait(30)
                con.execute("SELECT 1")

        threads = [threading.Thread(target=hold_a_connection) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        restartable_server.restart()
        for i in range(4):  # each would take a dead session from the pool
            assert store.get(f"none/{i}") is None
            store.apply(Batch(creates=[PromiseRecord(f"wf/{i}", State.PENDING, Kind.WORKFLOW, f"wf/{i}")]))
        assert [store.get(f"wf/{i}").id for i in range(4)] == [f"wf/{i}" for i in range(4)]
    finally:
        store.close()
