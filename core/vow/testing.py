"""Test helpers for vow and its plugins; also a pytest plugin (entry point ``pytest11: vow``).

Installing vow makes the fixtures below available in every pytest session.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from vow.stores.base import Store

# =============================================================================================
# Stores: the contract suite and store fixtures
# =============================================================================================
#
# Every store must pass :class:`StoreContract`. A store author subclasses it and provides a
# ``store`` fixture; pytest then runs every rule of :mod:`vow.stores.base` against it::
#
#     from vow.testing import StoreContract
#
#     class TestMyStore(StoreContract):
#         @pytest.fixture
#         def store(self, tmp_path):
#             store = MyStore(tmp_path / "promises")
#             yield store
#             store.close()
#
# The suite lives in its own module so that pytest rewrites its asserts (registered before
# the import): a failing rule shows the values it compared.

pytest.register_assert_rewrite("vow.stores.contract")

from vow.stores.contract import StoreContract, dead_lease_owner, make_record  # noqa: E402

__all__ = ["StoreContract", "make_record", "dead_lease_owner", "memory_store", "sqlite_store", "plugins",
           "vow_client", "memory_vow"]


@pytest.fixture
def memory_store() -> Iterator[Store]:
    """A fresh in-memory store."""
    from vow.stores.memory import MemoryStore

    store = MemoryStore()
    yield store
    store.close()


@pytest.fixture
def sqlite_store(tmp_path: Any) -> Iterator[Store]:
    """A SQLite store on a fresh file, ``tmp_path / "vow.sqlite"``."""
    from vow.stores.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "vow.sqlite")
    yield store
    store.close()


# =============================================================================================
# Clients and plugin managers
# =============================================================================================


@pytest.fixture
def plugins() -> Any:
    """A plugin manager with no entry points loaded: add the plugin under test with ``.add(module, name)``."""
    from vow.plugins import Plugins

    return Plugins(entry_points=False)


@pytest.fixture
def vow_client(tmp_path: Any) -> Iterator[Any]:
    """A :class:`vow.Vow` on a fresh SQLite file (``tmp_path / "vow.sqlite"``), closed afterwards."""
    from vow import Vow

    client = Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}")
    yield client
    client.close()


@pytest.fixture
def memory_vow() -> Iterator[Any]:
    """A :class:`vow.Vow` on the memory store, closed afterwards."""
    from vow import Vow

    client = Vow(store="memory:")
    yield client
    client.close()


# =============================================================================================
# PostgreSQL: a real server started by the test session (see vow.testing_postgres)
# =============================================================================================
#
# ``postgres_server`` (session) starts one with initdb and pg_ctl on a free 127.0.0.1 port, as
# an unprivileged user when the tests run as root; ``postgres_url`` gives each test a fresh
# database on it. Without the server binaries the tests that use them are skipped, saying how
# to get them, unless VOW_REQUIRE_POSTGRES=1 (CI), where that is a failure.

from vow.testing_postgres import PostgresServer, postgres_server, postgres_url  # noqa: E402

__all__ += ["PostgresServer", "postgres_server", "postgres_url"]
