"""A sandbox for driving ``vow`` in real subprocesses: its own store, ledger and working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vow.simulation import Ledger


class VowSandbox:
    """Runs ``python -m vow ...`` in ``cwd`` with its own SQLite store and simulated-channel ledger."""

    def __init__(self, root: Path) -> None:
        self.cwd = root
        self.store = f"sqlite:{root / 'vow.sqlite'}"
        self.store_file = root / "vow.sqlite"
        self.sim_dir = root / "sim"
        self.env = {**os.environ, "VOW_SIM_DIR": str(self.sim_dir), "VOW_STORE": self.store,
                    "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}

    def write(self, name: str, text: str) -> str:
        (self.cwd / name).write_text(text)
        return name

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vow", *args], cwd=self.cwd, env=self.env, text=True,
                              capture_output=True, timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "vow", *args], cwd=self.cwd, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def ledger(self) -> Ledger:
        return Ledger(self.sim_dir / "ledger.sqlite")

    def records(self, root: str) -> dict[str, Any]:
        """The stored records of run ``root`` by id (read through a fresh client)."""
        from vow import Vow

        with Vow(self.store) as reader:
            return {r.id: r for r in reader.store.tree(root)}


@pytest.fixture
def sandbox(tmp_path: Path) -> VowSandbox:
    return VowSandbox(tmp_path)
