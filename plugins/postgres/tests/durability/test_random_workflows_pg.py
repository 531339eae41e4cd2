"""Random workflows crashed at a random commit and resumed, on PostgreSQL.

The workflow shapes, the simulated crash (the store dies under the client at the *k*-th group
commit, before or after it) and the invariants are the core's
(``tests/durability/test_random_workflows.py``); here the store is a PostgreSQL database. Each
example opens the store afresh, as a restarted process would (the schema is already there).

Fewer examples than on SQLite by default (each commit is a round trip to the server);
``VOW_HEAVY=1`` runs 300.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vow_postgres import PostgresStore

from tests.durability import test_random_workflows as core
from tests.durability.support import HEAVY
from vow.testing_postgres import PostgresServer

EXAMPLES = 300 if HEAVY else 15


@pytest.fixture(scope="module")
def random_url(postgres_server: PostgresServer) -> Iterator[str]:
    """One database for every example of this module (each example has its own workflow ids)."""
    url = postgres_server.create_database("vow_random")
    PostgresStore(url).close()
    yield url
    postgres_server.drop_database(url)


_ids = itertools.count()


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(steps=core.workflows, where=st.floats(0, 1), after=st.booleans())
def test_a_random_workflow_survives_a_crash_at_a_random_commit(random_url: str, steps: list, where: float,
                                                               after: bool) -> None:
    n = next(_ids)
    wid = f"random-pg/{n}"
    expected, commits = core.crash_free(f"reference-pg/{n}", steps)
    crash_at = 1 + int(where * commits)
    inner = PostgresStore(random_url)  # the resuming client closes it
    try:
        assert core.run_crash_and_resume(inner, wid, steps, crash_at, after) == expected
    finally:
        inner.close()
