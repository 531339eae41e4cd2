"""The console under test: a real ``vow ui`` in a subprocess (uvicorn on a free port) and a real
headless Chromium (Debian's ``chromium``) driven by Playwright.

Chromium is Debian's, not Playwright's download (which cannot be fetched here): ``.ci/run``
installs it. Locally, a missing browser skips the browser tests with how to install it; in CI
(``CI`` set) it fails them instead, so they never pass by not running.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vow.testing import wait_until

CHROMIUM = os.environ.get("VOW_UI_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
START_TIMEOUT = 60.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Console:
    """A running ``vow ui`` subprocess."""

    def __init__(self, proc: subprocess.Popen[str], host: str, port: int, log: Path) -> None:
        self.proc, self.host, self.port, self.log = proc, host, port, log
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


class Sandbox:
    """A working directory with its own SQLite store, simulated-channel ledger and consoles."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store_file = root / "vow.sqlite"
        self.store = f"sqlite:{self.store_file}"
        self.env = {**os.environ, "VOW_SIM_DIR": str(root / "sim"), "VOW_STORE": self.store, "PYTHONUNBUFFERED": "1"}
        self.env.pop("VOW_UI_TOKEN", None)
        self.consoles: list[Console] = []

    def vow(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vow", *args], cwd=self.root, env=self.env, text=True,
                              capture_output=True, timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "vow", *args], cwd=self.root, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def console(self, *args: str, host: str = "127.0.0.1") -> Console:
        """Start ``vow ui`` on a free port and return once it accepts connections (polled, not slept)."""
        port = free_port(host)
        log = self.root / f"ui-{port}.log"
        with log.open("w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "vow", "ui", "--host", host, "--port", str(port), *args],
                                    cwd=self.root, env=self.env, text=True, stdout=out, stderr=subprocess.STDOUT)
        console = Console(proc, host, port, log)
        self.consoles.append(console)

        def listening() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"vow ui exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with socket.create_connection((host, port), timeout=1):
                    return True
            except OSError:
                return False

        wait_until(listening, START_TIMEOUT, f"vow ui listens on {host}:{port}", interval=0.05)
        return console

    def close(self) -> None:
        for console in self.consoles:
            console.stop()


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path)
    yield box
    box.close()


@pytest.fixture(scope="module")  # not the session: Playwright's sync API keeps an event loop running
def _playwright() -> Iterator[Any]:  # in this thread while it lives, and asyncio.run() elsewhere refuses to start
    if not os.path.exists(CHROMIUM):
        message = (f"no Chromium at {CHROMIUM}: install Debian's with `apt-get install -y chromium` "
                   "(.ci/run does), or point VOW_UI_CHROMIUM at one")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = "Playwright is not installed: pip install -r requirements-dev.txt"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as p:
        yield p


@pytest.fixture
def browser(_playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A fresh headless Chromium (its own user-data-dir) with one page; every JS error fails the test."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    context = _playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    errors: list[str] = []
    page = context.pages[0] if context.pages else context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
