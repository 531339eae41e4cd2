"""What the durability tests share beyond :mod:`tests.support`: starting their apps, the heavier
settings, and reading what the apps leave behind (their logs, the store's rows).

The apps (``tests/durability/*_app.py``) run as modules of the ``tests`` package,
``python -m tests.durability.notify_app``, with the checkout's root on ``PYTHONPATH``: a function
is stored under its module's import name, so a run an app started and a test that imports the
same app (``from tests.durability.worker_app import fan``) meet its promises under the same names.

    from tests.durability.support import HEAVY, app, log_lines
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support import Environment, spawn

__all__ = ["HEAVY", "ROOT", "app", "dump_promises", "importable", "log_lines"]

ROOT = Path(__file__).resolve().parents[2]
"""The checkout's root: the directory the package ``tests`` is imported from."""

HEAVY = os.environ.get("VOW_HEAVY") == "1"
"""``VOW_HEAVY=1`` turns on the heavier settings (more workflows, more examples)."""


def importable(env: Environment | None = None) -> dict[str, str | None]:
    """``env`` with the checkout's root first on ``PYTHONPATH`` (before any path ``env`` or this
    process gives), so that a child imports ``tests.durability...`` wherever it runs."""
    env = dict(env or {})
    given = env.get("PYTHONPATH", os.environ.get("PYTHONPATH"))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *([given] if given else [])])
    return env


def app(name: str, *args: str, env: Environment | None = None, prefix: Sequence[str] = ()) -> subprocess.Popen[str]:
    """Start app ``tests/durability/NAME.py`` with ``ARGS`` as ``python -m tests.durability.NAME``
    (see the module's docstring), its output piped: end it with ``tests.support.finish`` or ``kill``."""
    return spawn("-m", f"tests.durability.{name}", *args, env=importable(env), prefix=prefix)


def log_lines(path: Path, kind: str | None = None) -> list[list[str]]:
    """An app's log (``start ...``, ``held ...`` lines) split into words; only the lines that start
    with ``kind`` when given."""
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [w for w in lines if kind is None or w[0] == kind]


def dump_promises(path: Path) -> list[tuple[Any, ...]]:
    """Every row of a SQLite store's ``promises`` table, in rowid order (read-only)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT * FROM promises ORDER BY rowid").fetchall()
    finally:
        con.close()
