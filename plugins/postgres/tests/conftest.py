"""Fixtures of the vow-postgres tests: stores on fresh databases of the test server.

The server and the databases come from :mod:`vow.testing_postgres` (fixtures ``postgres_server``
and ``postgres_url``); fixture names here start with ``pg_`` so they cannot collide with other
plugins' fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from vow_postgres import PostgresStore


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[PostgresStore]:
    """A :class:`PostgresStore` on a fresh database, closed after the test."""
    store = PostgresStore(postgres_url)
    yield store
    store.close()
