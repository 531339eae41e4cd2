"""The crash matrix on PostgreSQL: the four-channel workflow SIGKILLed at each chosen point and
at random moments, then resumed in a fresh process, with every delivery counted at the sink.

The cases, the workflow (``tests.durability.notify_app``) and every check are the core's
(``tests/durability/test_crash_matrix.py``); here the killed and the resuming processes keep their
promises in a PostgreSQL database instead of a SQLite file. The crash-free reference run stays
on SQLite: it only gives the expected result. The ``synchronous=full`` case is SQLite's own and is
not repeated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from vow_postgres import PostgresStore

from tests.durability import test_crash_matrix as matrix
from tests.durability.support import app
from tests.durability.test_crash_matrix import _no_process_left_behind  # noqa: F401 - its autouse cleanup, here too

CASES = [name for name, case in matrix.CASES.items() if not case.store_query]


@pytest.fixture
def on_postgresql(monkeypatch: pytest.MonkeyPatch, postgres_url: str) -> str:
    """Make the core's crash tests run (and read) the crashed workflow on ``postgres_url``.

    The core's ``_run`` builds a SQLite URL from the run's name; this runs every process but the
    reference on the PostgreSQL database, and its ``SQLiteStore(...)`` reader becomes a
    :class:`PostgresStore` on the same database.
    """
    run_on_sqlite = matrix._run

    def run(tmp: Path, name: str, wid: str, plan: dict[str, Any], holds: dict[str, str], query: str = ""):
        if name == "reference":
            return run_on_sqlite(tmp, name, wid, plan, holds)
        env = {"VOW_SIM_DIR": str(tmp / f"{name}-sim"), "DURABILITY_LOG": str(tmp / f"{name}.log"), **holds}
        proc = app("notify_app", postgres_url, wid, json.dumps(plan), env=env)
        matrix._SPAWNED.append(proc)
        return proc

    monkeypatch.setattr(matrix, "_run", run)
    monkeypatch.setattr(matrix, "SQLiteStore", lambda _path: PostgresStore(postgres_url))
    return postgres_url


@pytest.mark.parametrize("name", CASES)
def test_sigkill_then_resume_delivers_each_channel_once(tmp_path: Path, name: str, on_postgresql: str) -> None:
    matrix.test_sigkill_then_resume_delivers_each_channel_once(tmp_path, name)


def test_a_retry_backoff_cut_by_a_crash_is_still_waited_out(tmp_path: Path, on_postgresql: str) -> None:
    matrix.test_a_retry_backoff_cut_by_a_crash_is_still_waited_out(tmp_path)


@pytest.mark.parametrize("seed", range(4))
def test_sigkill_at_a_random_moment_then_resume(tmp_path: Path, seed: int, on_postgresql: str) -> None:
    matrix.test_sigkill_at_a_random_moment_then_resume(tmp_path, seed)


def test_two_crashes_in_a_row_then_resume(tmp_path: Path, on_postgresql: str) -> None:
    matrix.test_two_crashes_in_a_row_then_resume(tmp_path)


def test_the_killed_process_wrote_to_postgresql(tmp_path: Path, on_postgresql: str) -> None:
    """The redirection above is real: the crashed run's promises are on the server, not in a file."""
    matrix.test_sigkill_then_resume_delivers_each_channel_once(tmp_path, "before_any_branch")
    assert not (tmp_path / "run.sqlite").exists()
    store = PostgresStore(on_postgresql)
    try:
        assert store.get("order/before_any_branch").state.value == "resolved"
        assert len(store.tree("order/before_any_branch")) == 5
    finally:
        store.close()
