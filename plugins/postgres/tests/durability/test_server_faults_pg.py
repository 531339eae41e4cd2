"""Workers on PostgreSQL while the server ends their sessions under them.

Two worker processes (the core's ``tests.durability.worker_app``) share a server of this module's
own; while they run a few hundred fan-out workflows, every session they have is ended again and
again, with ``pg_terminate_backend`` (as an administrator or a pooler does) or by restarting the
server (``pg_ctl restart -m fast``). Whatever they were doing then (a commit, a claim, a renewal,
a read of the change feed), the workers carry on: every workflow finishes with the right value,
no leaf starts after its promise settled, no worker dies or prints a traceback, and each stops
cleanly at the end.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from vow_postgres import PostgresStore

from tests.durability import test_workers as core
from tests.durability.support import log_lines
from tests.durability.worker_app import expected
from vow.testing import wait_until
from vow.testing_postgres import PostgresServer, start_private_server

from .test_workers_pg import PostgresFleet

WORKFLOWS = 300
FAN = core.FAN


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    server = start_private_server()
    yield server
    server.stop()


@pytest.fixture
def fleet(tmp_path: Path, server: PostgresServer) -> Iterator[PostgresFleet]:
    url = server.create_database()
    PostgresStore(url).close()  # the schema exists before the workers start
    fleet = PostgresFleet(tmp_path, url)
    yield fleet
    fleet.close()
    server.drop_database(url)


def _resolved(fleet: PostgresFleet) -> int:
    """Workflows resolved so far; ``-1`` while the server restarts (or is ending this test's session)."""
    try:
        return int(fleet.resolved_roots())
    except psycopg.OperationalError:
        return -1


def _terminate_workers_sessions(fleet: PostgresFleet) -> int:
    with psycopg.connect(fleet.url, autocommit=True) as con:
        rows = con.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid() AND application_name = 'vow'").fetchall()
    return len(rows)


def _check(fleet: PostgresFleet, *, quiet: bool) -> None:
    records = fleet.records()
    roots = {i: r for i, r in records.items() if r[3] is None}
    leaves = {i: r for i, r in records.items() if r[3] is not None}
    assert len(roots) == WORKFLOWS and len(leaves) == WORKFLOWS * FAN
    assert all(r[1] == "resolved" and r[2] == str(expected(FAN)) for r in roots.values())
    late = [(w[1], w[2]) for w in log_lines(fleet.log, "start") if float(w[4]) >= leaves[w[1]][4]]
    assert not late, f"leaves started after they settled: {late[:10]}"
    for pid, err in fleet.stderr.items():  # fleet.stop() saw each worker exit 0, having said "stopped"
        assert not quiet or "Traceback" not in err, f"worker {pid}:\n{err}"


def _run_with(fleet: PostgresFleet, fault, *, quiet: bool = True) -> collections.Counter:
    fleet.start(2, max_running=8)
    fleet.submit(WORKFLOWS, ms=300)
    for k in range(1, 6):
        target = k * WORKFLOWS // 7
        wait_until(lambda: _resolved(fleet) >= target, timeout=120, message=f"{target} workflows done")  # noqa: B023
        fault()
    wait_until(lambda: _resolved(fleet) == WORKFLOWS, timeout=240, message="every workflow resolved")
    fleet.stop()
    _check(fleet, quiet=quiet)
    return collections.Counter(w[1] for w in log_lines(fleet.log, "start"))


def test_workers_whose_sessions_are_terminated_again_and_again_lose_nothing(fleet: PostgresFleet) -> None:
    ended = []
    _run_with(fleet, lambda: ended.append(_terminate_workers_sessions(fleet)))
    assert all(ended), f"no session was ended: {ended}"


def test_workers_across_server_restarts_lose_nothing(fleet: PostgresFleet, server: PostgresServer) -> None:
    # While the server shuts down a read may fail twice (the retry's new connection is refused too):
    # the worker logs it (a warning with its traceback) and looks again, so tracebacks are allowed here.
    _run_with(fleet, server.restart, quiet=False)
