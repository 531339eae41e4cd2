"""Test helpers for vow and its plugins; also a pytest plugin (entry point ``pytest11: vow``).

Installing vow makes the fixtures below available in every pytest session — of any project in
the environment — so the fixtures import the stores and the client when they are used, not when
pytest loads this plugin.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

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

from vow.stores.contract import StoreContract, make_record  # noqa: E402

__all__ = ["StoreContract", "make_record", "memory_store", "sqlite_store", "plugins",
           "vow_client", "memory_vow", "wait_until"]

T = TypeVar("T")


# =============================================================================================
# Waiting for something to happen
# =============================================================================================


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, message: str = "condition", *,
               proc: subprocess.Popen[Any] | None = None, interval: float = 0.01) -> T:
    """Call ``predicate`` until it returns something true, and return that value.

    This is how a test synchronises with another thread or process: on a state it can observe
    (a stored record, a line in a log, a file), never on a fixed sleep. ``timeout`` is only the
    point at which the test gives up, so make it generous (a loaded machine is slow, not wrong);
    the test then fails with ``message``. When ``proc`` is given and exits before the condition
    holds, the test fails at once with the process's output, since it will never get there.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"{message}: the process exited ({proc.returncode}) first\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{message}: not reached in {timeout} s")
        time.sleep(interval)


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
