"""The memory, SQLite and PostgreSQL stores answer every operation the same way.

The core's state machine (``tests/durability/test_store_equivalence.py``) applies each operation
— batches with creates, settles, attempts and fences; every read; claims by live, dead and
remote owners at chosen clock values; renewals and releases — to the memory and SQLite stores
and requires the same answer; here the PostgreSQL store must give that same answer too, after
every step. Each machine gets a schema of its own, dropped at its end.

``VOW_HEAVY=1`` runs 300 machines of 50 steps instead of 20 of 25.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from vow_postgres import PostgresStore

from tests.durability import test_store_equivalence as core
from tests.durability.support import HEAVY
from vow.testing_postgres import PostgresServer

_machines = itertools.count()
_URL: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def equivalence_url(postgres_server: PostgresServer) -> Iterator[str]:
    url = postgres_server.create_database("vow_equivalence")
    _URL[:] = [url]
    yield url
    _URL.clear()
    postgres_server.drop_database(url)


class SameAnswersOnPostgres(core.SameAnswers):
    def __init__(self) -> None:
        super().__init__()
        self.schema = f"machine_{next(_machines)}"
        self.postgres = PostgresStore(_URL[0], schema=self.schema, pool_size=2)
        for owner in core.ALIVE + [core.DEAD]:  # as the core does for its two stores
            assert self.postgres.hold_owner(owner)
        self.postgres.release_owner(core.DEAD)

    def teardown(self) -> None:
        super().teardown()
        self.postgres.close()
        with psycopg.connect(_URL[0], autocommit=True) as con:
            con.execute(f"DROP SCHEMA {self.schema} CASCADE")

    def same(self, op: Callable[[Any], Any]) -> Any:
        answer = super().same(op)
        on_postgres = core.outcome(lambda: op(self.postgres))
        assert on_postgres == answer, f"memory and sqlite answered {answer!r}\npostgresql answered {on_postgres!r}"
        return answer


SameAnswersOnPostgres.TestCase.settings = settings(
    max_examples=300 if HEAVY else 20, stateful_step_count=50 if HEAVY else 25, deadline=None,
    database=None, suppress_health_check=[HealthCheck.too_slow])
TestSameAnswersOnPostgres = SameAnswersOnPostgres.TestCase
