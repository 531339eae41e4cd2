"""Test helpers for vow and its plugins; also a pytest plugin (entry point ``pytest11: vow``).

Installing vow makes the fixtures below available in every pytest session — of any project in
the environment — so the fixtures import the stores and the client when they are used, not when
pytest loads this plugin.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Generator, Iterator
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
           "vow_client", "memory_vow", "wait_until", "run_sample_workflows", "register_sample_workflows",
           "endless_body", "cut_off_body"]

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


# =============================================================================================
# Answers of HTTP providers that misbehave (bodies for respx: httpx.Response(200, content=...))
# =============================================================================================


def endless_body(read: list[int], head: bytes = b"", mib: int = 100) -> Iterator[bytes]:
    """``head``, then ``mib`` MiB one MiB at a time, appending to ``read`` for each MiB taken: a test
    of a transport checks that it stops reading a huge answer early."""
    yield head
    for _ in range(mib):
        read.append(1)
        yield b"x" * (1 << 20)


def cut_off_body(head: bytes) -> Iterator[bytes]:
    """``head``, then the connection drops: the answer's status arrived, its body did not."""
    import httpx  # the HTTP transports' dependency, not the core's

    yield head
    raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


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
# Stores: a few realistic runs, for tests that move or compare whole stores
# =============================================================================================


def _sample_step(ctx: Any, n: int) -> int:
    if n < 0:
        from vow.errors import PermanentError

        raise PermanentError(f"no square of {n} today")
    return n * n


def _sample_child(ctx: Any, n: int) -> Generator[Any, Any, Any]:
    return (yield ctx.run(_sample_step, n))


def _sample_flow(ctx: Any, n: int, wait_outside: bool = False) -> Generator[Any, Any, int]:
    handles = []
    for i in range(n):
        handles.append((yield ctx.begin_run(_sample_step, i).options(tags={"i": str(i)})))
    handles.append((yield ctx.begin_run(_sample_child, n)))
    values = yield ctx.all(handles)
    yield ctx.sleep(0.001)
    if wait_outside:
        approval = yield ctx.promise(f"{ctx.id}.approval")
        values.append((yield approval))
    return sum(values)


def _sample_failing(ctx: Any) -> Generator[Any, Any, Any]:
    return (yield ctx.run(_sample_step, -1))


def register_sample_workflows(vow: Any) -> None:
    """Register the workflows of :func:`run_sample_workflows` on ``vow`` (to resume those runs there)."""
    from vow.retry import Never

    vow.register(_sample_flow, name="sample_flow")
    vow.register(_sample_failing, name="sample_failing", retry=Never())


def run_sample_workflows(vow: Any) -> dict[str, str]:
    """Leave runs of every shape in ``vow``'s store; their ids and the state each is in.

    A finished fan-out (leaves, a child workflow, a sleep, tags), a failed run, a run waiting for
    an outside promise (``sample/waiting.approval``; its leaves settled), and a submitted run no
    worker started. Resumed where :func:`register_sample_workflows` ran, the waiting run returns
    ``5`` plus the approval's value and the submitted one ``1``.
    """
    register_sample_workflows(vow)
    vow.run("sample/done", "sample_flow", 3)
    try:
        vow.run("sample/failed", "sample_failing")
    except Exception:  # noqa: BLE001 - failing is what this run is for
        pass
    waiting = vow.begin_run("sample/waiting", "sample_flow", 2, True)
    import time

    deadline = time.monotonic() + 60
    while vow.get("sample/waiting.approval") is None:
        if time.monotonic() > deadline or waiting.done():
            raise AssertionError("sample/waiting never reached its outside promise")
        time.sleep(0.01)
    vow.submit("sample/submitted", "sample_flow", 1)
    return {"sample/done": "resolved", "sample/failed": "rejected", "sample/waiting": "pending",
            "sample/submitted": "pending"}


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
