"""What the tests share: Python in a subprocess, started, waited for and killed one way.

A test that needs a real process — a crash with ``SIGKILL``, a second worker, the ``vow``
command as a user runs it — uses these, so every child is this interpreter with this environment
(plus what the test adds), its output is text, and no test waits forever. To wait for something a
process brings about, use :func:`vow.testing.wait_until` (with ``proc=`` to fail at once if the
process dies first): the one polling helper.

    from tests.support import python, spawn, kill
"""

from __future__ import annotations

import ast
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

__all__ = ["WarpedClock", "finish", "kill", "mounted_tmpfs", "python", "read_line", "spawn", "vow_command",
           "warped_engine_clock"]

TIMEOUT = 120.0
"""Seconds a child may take before the test fails (generous: a loaded 2-core machine)."""


Environment = Mapping[str, str | None]
"""Variables to set in the child on top of this process's environment; ``None`` unsets one."""


def _environment(env: Environment | None) -> dict[str, str]:
    merged = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def python(*args: str | Path, env: Environment | None = None, cwd: str | Path | None = None,
           timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` to its end and return what it did (exit code, stdout, stderr as text)."""
    return subprocess.run([sys.executable, *map(str, args)], env=_environment(env), cwd=cwd, text=True,
                          capture_output=True, timeout=timeout)


def vow_command(*args: str, env: Environment | None = None, cwd: str | Path | None = None,
                timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``python -m vow ARGS``, as a user runs the command."""
    return python("-m", "vow", *args, env=env, cwd=cwd, timeout=timeout)


def spawn(*args: str | Path, env: Environment | None = None, cwd: str | Path | None = None,
          stdin: bool = False, prefix: Sequence[str] = ()) -> subprocess.Popen[str]:
    """Start ``python ARGS`` with its output piped (text); see :func:`finish` and :func:`kill`.

    ``stdin``: pipe its input too, for a test that writes to it. ``prefix``: a command that starts
    Python in turn (``unshare --pid --fork ...``).
    """
    return subprocess.Popen([*prefix, sys.executable, *map(str, args)], env=_environment(env), cwd=cwd, text=True,
                            stdin=subprocess.PIPE if stdin else None, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def read_line(proc: subprocess.Popen[str]) -> str:
    """The next line ``proc`` writes to stdout ("" at its end).

    Read byte by byte straight from the pipe: ``proc.stdout.readline()`` would buffer what follows
    the line, where :func:`finish` (``communicate``, which reads the pipe itself) never sees it.
    """
    assert proc.stdout is not None, "start the process with spawn(): its stdout is a pipe"
    fd = proc.stdout.fileno()
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line.decode()


def finish(proc: subprocess.Popen[str], timeout: float = TIMEOUT) -> tuple[str, str]:
    """Wait for ``proc``; fail with its stderr unless it exited 0; return ``(stdout, stderr)``."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{err}"
    return out, err


def kill(proc: subprocess.Popen[str]) -> None:
    """``SIGKILL`` ``proc`` (no chance to clean up: a crash) and reap it; nothing if it is gone already."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    try:
        proc.communicate(timeout=TIMEOUT)
    except ValueError:  # its output was read to the end before, or the test closed its input
        proc.wait(TIMEOUT)
    for stream in (proc.stdin, proc.stdout, proc.stderr):  # whatever communicate left open: closed, not collected
        if stream is not None:
            with contextlib.suppress(OSError):  # input the dead process never read
                stream.close()


def imported_modules(path: Path, *, from_modules: bool = True) -> set[str]:
    """The absolute imports of a module, leaving out those under ``if TYPE_CHECKING:``: each
    ``import X`` and ``from X import name`` as ``X.name`` (a submodule, or a name in X) and, with
    ``from_modules``, as ``X`` too."""
    tree = ast.parse(path.read_text())
    typing_only = {id(node) for block in ast.walk(tree)
                   if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                   for node in ast.walk(block)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if from_modules:
                found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # may name a submodule
    return found


def mounted_tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``where`` with ``options`` (``size=16k``: a full disk; ``ro``: a read-only one)
    for a fixture to yield from, unmounted after the test; the test skips where it cannot mount (not root)."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (the test needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


class WarpedClock:
    """The engine's monotonic clock in a test of long waits: it runs as the real one, and jumps ahead
    whenever the engine would wait for a timer, straight to when the timer is due. A back-off of an
    hour passes at once, and the timer still fires in order, as the engine's own code arms it.

    ``now()`` is what the engine reads: a fake provider answers by it ("refuse for 60 s").
    ``waited`` is how far it jumped in all. For a test with one branch at a time: with another leaf in
    flight while a timer is pending, the jump would pass time that leaf's clock does not see.
    """

    def __init__(self) -> None:
        import time

        self._real = time.monotonic
        self.waited = 0.0

    def now(self) -> float:
        return self._real() + self.waited

    monotonic = now  # the one function the engine's modules call on ``time``


@contextlib.contextmanager
def warped_engine_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[WarpedClock]:
    """Run the engine on a :class:`WarpedClock` while the block runs (clients built inside it)."""
    from vow.engine import retries, stepper, timers

    clock = WarpedClock()
    for module in (retries, stepper, timers):
        monkeypatch.setattr(module, "time", clock)
    real_timeout = timers.Timers.timeout

    def timeout(self: timers.Timers) -> float | None:
        wait = real_timeout(self)
        if wait:  # the engine would block this long for its next timer: let the time pass at once
            clock.waited += wait
            return 0.0
        return wait

    monkeypatch.setattr(timers.Timers, "timeout", timeout)
    yield clock
