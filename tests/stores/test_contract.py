"""The store contract suite (vow.testing.StoreContract) run against the shipped stores."""

from __future__ import annotations

import pytest

from vow.testing import StoreContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self, memory_store):
        return memory_store


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def store(self, sqlite_store):
        return sqlite_store


class TestSQLiteStoreFullSync(StoreContract):
    """``synchronous=full`` changes durability only; every rule still holds."""

    @pytest.fixture
    def store(self, tmp_path):
        from vow.stores.sqlite import SQLiteStore

        store = SQLiteStore(tmp_path / "full.sqlite", synchronous="full")
        yield store
        store.close()
