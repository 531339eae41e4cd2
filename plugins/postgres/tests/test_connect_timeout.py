"""A store URL whose address never answers: the opening fails after a connect timeout (the store's
default unless the URL or ``$PGCONNECT_TIMEOUT`` gives one), naming the store and what to check.

Before, nothing bounded it but psycopg's own default of 130 s (per address the host resolves to):
``Vow(url)`` and every ``vow`` command sat silent that long on a blackholed address or on a port
where something accepts connections and never speaks.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from vow_postgres import PostgresStore
from vow_postgres import store as store_module

from vow import Vow
from vow.errors import StoreError

WAIT_S = 60  # far beyond the 2 s timeouts these tests set, far below psycopg's own 130 s


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections (the kernel completes them) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def _opening_error(open_store: type[PostgresStore] | type[Vow], url: str) -> BaseException:
    """The exception opening ``url`` raises, from a thread (so that a hang fails the test, not the suite)."""
    raised: list[BaseException] = []

    def opening() -> None:
        try:
            open_store(url).close()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            raised.append(exc)

    thread = threading.Thread(target=opening, daemon=True)
    thread.start()
    thread.join(WAIT_S)
    assert not thread.is_alive(), f"opening {url} still waits after {WAIT_S} s"
    assert raised, "the opening succeeded"
    return raised[0]


@pytest.mark.parametrize("opener", [PostgresStore, Vow])
def test_a_server_that_never_answers_fails_the_opening_after_the_default_timeout(
        silent_port: int, monkeypatch: pytest.MonkeyPatch, opener: type[PostgresStore] | type[Vow]) -> None:
    monkeypatch.setattr(store_module, "DEFAULT_CONNECT_TIMEOUT", 2)
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    url = f"postgresql://vow:hunter2@127.0.0.1:{silent_port}/vow"
    error = _opening_error(opener, url)
    assert isinstance(error, StoreError)
    text = str(error)
    assert "hunter2" not in text
    assert text.startswith(f"PostgreSQL store postgresql://vow@127.0.0.1:{silent_port}/vow: no answer within 2 s")
    assert "connect_timeout=" in text and "firewall" in text


@pytest.mark.parametrize("where", ["url", "environment"])
def test_a_connect_timeout_of_the_users_own_is_kept(silent_port: int, monkeypatch: pytest.MonkeyPatch,
                                                    where: str) -> None:
    monkeypatch.setattr(store_module, "DEFAULT_CONNECT_TIMEOUT", 3600)  # would outlast the test
    url = f"postgresql://vow@127.0.0.1:{silent_port}/vow"
    if where == "url":
        monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
        url += "?connect_timeout=2"
    else:
        monkeypatch.setenv("PGCONNECT_TIMEOUT", "2")
    error = _opening_error(PostgresStore, url)
    assert isinstance(error, StoreError) and "no answer within 2 s" in str(error), error


def test_the_stores_tcp_probes_give_way_to_the_urls(postgres_url: str) -> None:
    """Each session probes the server (keepalives, ``tcp_user_timeout``) as the store says, unless the URL says."""
    for query, expected in [("", {"keepalives_idle": "10", "tcp_user_timeout": "25000", "connect_timeout": "10"}),
                            ("?tcp_user_timeout=1234&keepalives_idle=7", {"keepalives_idle": "7",
                                                                          "tcp_user_timeout": "1234"})]:
        store = PostgresStore(postgres_url + query)
        try:
            with store._connection() as con:
                parameters = con.info.get_parameters()
            assert {k: parameters.get(k) for k in expected} == expected
        finally:
            store.close()
