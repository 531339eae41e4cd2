"""A sandbox for driving ``vow`` in real subprocesses: its own store, ledger and working directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vow.simulation import Ledger
from vow.testing import wait_until


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


class Worker:
    """``vow worker`` in a subprocess, with its output collected as it comes."""

    def __init__(self, sandbox: Any, *options: str) -> None:
        self.proc: subprocess.Popen[str] = sandbox.popen("worker", "--poll", "0.05", *options)
        self.lines: list[str] = []
        self.errors: list[str] = []  # stderr, read as it comes so a full pipe never blocks the worker
        self._readers = [threading.Thread(target=self._read, args=(stream, into), daemon=True)
                         for stream, into in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors))]
        for reader in self._readers:
            reader.start()
        wait_until(lambda: any("worker on" in line for line in self.lines), 60, "the worker started",
                   proc=self.proc)

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(60)
        for reader in self._readers:
            reader.join(10)


@pytest.fixture
def start_worker(sandbox: VowSandbox) -> Iterator[Callable[..., Worker]]:
    """Start ``vow worker`` processes on the sandbox's store (``start_worker("--max-running", "5")``);
    any still running at the end of the test is killed."""
    started: list[Worker] = []

    def start(*options: str) -> Worker:
        worker = Worker(sandbox, *options)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.stop(signal.SIGKILL)
