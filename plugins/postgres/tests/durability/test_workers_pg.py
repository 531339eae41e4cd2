"""Concurrent workers on PostgreSQL: four worker processes share one server and 1,000 workflows.

The workers (``tests.durability.worker_app``), the workload and every check are the core's
(``tests/durability/test_workers.py``): each workflow runs to completion once, no leaf attempt
starts twice or after its promise settled, and a SIGKILLed worker loses nothing. Here the
workers meet on a PostgreSQL database, where claims take leases with ``FOR UPDATE SKIP LOCKED``
and expiry is judged by the server's clock.

A worker "on another machine" is one whose death the server cannot see (``pg_worker_app.py``
explains how it is made). Added here: workers whose own clocks run an hour ahead still take over
such a worker's leases only once they expire on the server's clock.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from vow_postgres import PostgresStore

from tests.durability import test_workers as core
from tests.durability.support import importable, log_lines
from tests.support import spawn
from vow.testing import wait_until

HERE = Path(__file__).resolve().parent


class PostgresFleet(core.Fleet):
    """The core's fleet of worker processes, meeting on a PostgreSQL database."""

    def __init__(self, tmp: Path, url: str) -> None:
        super().__init__(tmp)
        self.url = url
        self.path = None  # no SQLite file

    def spawn_worker(self, lease_ttl: float, max_running: int, env: dict[str, str] | None):
        """A worker run through ``pg_worker_app.py``."""
        return spawn(HERE / "pg_worker_app.py", self.url, str(self.log), str(lease_ttl), str(max_running),
                     env=importable(env))

    def query(self, sql: str, *args: object) -> list[tuple]:
        """The core's queries (SQLite placeholders) on the server's tables."""
        with psycopg.connect(self.url, autocommit=True, options="-c search_path=vow") as con:
            return con.execute(sql.replace("?", "%s"), args).fetchall()


@pytest.fixture
def fleet(tmp_path: Path, postgres_url: str):
    PostgresStore(postgres_url).close()  # the schema exists before the workers start
    fleet = PostgresFleet(tmp_path, postgres_url)
    yield fleet
    fleet.close()


def test_four_workers_run_a_thousand_workflows_each_once(fleet: PostgresFleet) -> None:
    core.test_four_workers_run_a_thousand_workflows_each_once(fleet)


def test_a_killed_worker_loses_nothing(fleet: PostgresFleet) -> None:
    core.test_a_killed_worker_loses_nothing(fleet)


def test_workers_killed_again_and_again_lose_nothing(fleet: PostgresFleet) -> None:
    core.test_workers_killed_again_and_again_lose_nothing(fleet)


def test_a_remote_workers_lease_is_taken_over_only_after_it_expires(fleet: PostgresFleet) -> None:
    core.test_a_remote_workers_lease_is_taken_over_only_after_it_expires(fleet)


SKEW_S = 3600.0


def test_workers_whose_clocks_run_ahead_wait_for_the_servers_clock(fleet: PostgresFleet) -> None:
    """A worker that died on another machine is taken over when the server says its lease expired,
    even by workers whose clocks say it expired an hour ago."""
    ttl = 3.0
    [remote] = fleet.start(1, lease_ttl=ttl, env={"DURABILITY_REMOTE_OWNER": "1"})
    fleet.submit(100, ms=1000)  # as in the core's remote-worker test: nothing settles around the freeze
    wait_until(lambda: len(fleet.held_pending(remote.owner)) >= 5, timeout=60,
               message="the remote worker runs workflows", proc=remote)  # a dead one: fail now, with its output
    held = fleet.freeze_holding(remote, remote.owner)  # expiry on the server's clock
    fleet.kill(remote)

    ahead = fleet.start(2, env={"PG_WORKER_CLOCK_SKEW": str(SKEW_S)})
    wait_until(lambda: fleet.resolved_roots() == 100, timeout=240, message="every workflow resolved")
    fleet.stop()
    taken: dict[str, float] = {}
    for _, root, pid, at in log_lines(fleet.log, "resumed"):
        if root in held and int(pid) in {p.pid for p in ahead}:
            taken[root] = min(float(at) - SKEW_S, taken.get(root, float("inf")))  # back to the real clock
    assert set(taken) == set(held), "every workflow the remote worker held was finished by another"
    for root, at in taken.items():
        assert at >= held[root], f"{root} was taken {held[root] - at:.2f} s before its lease expired on the server"
    for pid, err in fleet.stderr.items():
        assert "Traceback" not in err, f"worker {pid}:\n{err}"
