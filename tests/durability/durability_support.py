"""Helpers shared by the durability tests: subprocesses, waiting on conditions, store dumps.

The test modules put this directory on ``sys.path`` and import it as ``durability_support``
(a name no other test directory uses).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HEAVY = os.environ.get("VOW_HEAVY") == "1"
"""``VOW_HEAVY=1`` turns on the heavier settings (more workflows, more examples)."""


def spawn(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``python tests/durability/<script> args...`` with ``env`` added to this environment."""
    return subprocess.Popen([sys.executable, str(HERE / script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def finish(proc: subprocess.Popen[str], timeout: float = 90) -> tuple[str, str]:
    """Wait for ``proc``; fail with its stderr unless it exited 0; return ``(stdout, stderr)``."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{err}"
    return out, err


def kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL ``proc`` and reap it (no chance to clean up: a crash); nothing if it is gone already."""
    proc.send_signal(signal.SIGKILL)  # Popen checks that the process was not reaped yet
    try:
        proc.communicate(timeout=60)
    except ValueError:  # its output was read to the end before
        proc.wait(60)


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition",
               proc: subprocess.Popen[str] | None = None) -> Any:
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` seconds.

    When ``proc`` exits first, fail at once with its output (it will never get there).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"{what}: the process exited ({proc.returncode}) first\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout} s")
        time.sleep(0.01)


def log_lines(path: Path, kind: str | None = None) -> list[list[str]]:
    """The log's lines split into words (only those starting with ``kind`` when given)."""
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
