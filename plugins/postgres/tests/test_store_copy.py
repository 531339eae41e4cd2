"""``vow store copy`` from SQLite to PostgreSQL: the move users make when they outgrow one machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from vow_postgres import PostgresStore

from vow import Vow
from vow.stores.copy import root_ids
from vow.stores.sqlite import SQLiteStore
from vow.testing import register_sample_workflows, run_sample_workflows


def _vow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VOW_STORE"}
    return subprocess.run([sys.executable, "-m", "vow", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=cwd)


def test_sqlite_to_postgresql_and_the_runs_go_on_there(tmp_path: Path, postgres_url: str) -> None:
    sqlite_url = f"sqlite:{tmp_path / 'vow.sqlite'}"
    with Vow(sqlite_url) as client:
        states = run_sample_workflows(client)

    done = _vow("store", "copy", sqlite_url, postgres_url, "--batch", "5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    source, copy = SQLiteStore(tmp_path / "vow.sqlite"), PostgresStore(postgres_url)
    try:
        trees = {root: source.tree(root) for root in root_ids(source)}
        assert {root: copy.tree(root) for root in root_ids(copy)} == trees  # every field, every float, in order
        assert {root: copy.get(root).state.value for root in states} == states
        assert all(copy.lease(root) is None for root in states)
        assert done.stdout.startswith(f"copied 4 runs ({sum(map(len, trees.values()))} promises) from ")

        again = _vow("store", "copy", sqlite_url, postgres_url, cwd=tmp_path)
        assert again.returncode == 2 and "nothing was written" in again.stderr
        back = _vow("store", "copy", postgres_url, f"sqlite:{tmp_path / 'back.sqlite'}", cwd=tmp_path)
        assert back.returncode == 0, back.stderr
    finally:
        source.close()
        copy.close()

    with Vow(postgres_url) as moved:  # the pending runs finish on the server
        register_sample_workflows(moved)
        moved.resolve("sample/waiting.approval", 10)
        assert moved.resume("sample/waiting").result(60) == 15
        assert moved.resume("sample/submitted").result(60) == 1
