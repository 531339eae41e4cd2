"""The store contract suite, unchanged, on a real PostgreSQL server."""

from __future__ import annotations

import pytest

from vow.testing import StoreContract


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, pg_store):
        return pg_store
