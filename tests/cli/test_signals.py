"""`vow run` stopped by signals while a branch runs: one exit code, the run left pending and consistent."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from vow.records import State
from vow.testing import wait_until

SLOW = """\
version: 1
name: slow
id: "slow/{{ input.n }}"
input: {n: 1}
fan_out:
  - channel: email
    to: ada@example.com
    subject: hi
    body: hello
    options: {latency: 0.01}
  - channel: sms
    to: "+14155550100"
    body: hello
    options: {latency: 600}
"""


@pytest.fixture(autouse=True, scope="module")
def _ctrl_c_reaches_children() -> Iterator[None]:
    """Start every command here with SIGINT at its default, as from a terminal. A suite started in the
    background of a script (``pytest &``) inherits SIGINT ignored and passes that on to every command
    it starts, which then rightly ignores Ctrl-C; a handler of our own is reset to the default at exec."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("signals", [(signal.SIGTERM, signal.SIGINT, signal.SIGINT),
                                     (signal.SIGINT, signal.SIGINT, signal.SIGTERM)])
def test_signals_in_a_row_end_vow_run_with_a_stop_code_and_the_run_pending(sandbox, signals) -> None:
    # A second signal while vow run stopped after the first met Python's default handling: "Aborted!"
    # and exit 1 (click, given a KeyboardInterrupt in the client's close), a "RuntimeError: release
    # unlocked lock" traceback (an exception raised inside threading's Event.wait), or death by the signal.
    sandbox.write("slow.yaml", SLOW)
    running = sandbox.popen("run", "slow.yaml")

    def email_settled() -> bool:
        records = sandbox.records("slow/1") if sandbox.store_file.exists() else {}
        return "slow/1.email" in records and records["slow/1.email"].settled

    wait_until(email_settled, message="the email branch to settle", proc=running)
    for sig in signals:
        running.send_signal(sig)
    _, err = running.communicate(timeout=60)
    # Signals that arrive together are handled in the order of their numbers (SIGINT first): the
    # first one handled gives the code and the message.
    assert running.returncode in (130, 143), err
    said = "terminated" if running.returncode == 143 else "interrupted"
    assert err.startswith(f"\n{said}: slow/1 stays pending; run the same command again, or `vow resume slow/1`"), err
    assert "Traceback" not in err and "Aborted" not in err
    records = sandbox.records("slow/1")
    assert (records["slow/1"].state, records["slow/1.email"].state) == (State.PENDING, State.RESOLVED)
    assert records["slow/1.sms"].state is State.PENDING



def _holds_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open."""
    fds = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):  # a descriptor closed while listed
        return any(os.readlink(fds / fd) == str(path) for fd in os.listdir(fds))
    return False


def test_ctrl_c_while_vow_run_plans_exits_130_with_one_line_and_stores_nothing(sandbox) -> None:
    # Before: click's "Aborted!" and exit 1, as for a failed run.
    sandbox.write("slow.yaml", SLOW)
    fifo = sandbox.cwd / "input.json"
    os.mkfifo(fifo)  # as `--input @<(slow-command)`: planning reads the input until its writer is done
    writer = os.open(fifo, os.O_RDWR)  # a writer that has written nothing yet
    try:
        running = sandbox.popen("run", "slow.yaml", "--input", f"@{fifo}")
        wait_until(lambda: _holds_open(running.pid, fifo), message="vow run to read its input", proc=running)
        running.send_signal(signal.SIGINT)
        out, err = running.communicate(timeout=60)
    finally:
        os.close(writer)
    assert (running.returncode, out) == (130, "")
    assert err == "\ninterrupted while planning slow.yaml: nothing was stored\n"
    assert not sandbox.store_file.exists()


def test_ctrl_c_in_another_command_exits_130_with_one_line(sandbox) -> None:
    # Before: click's "Aborted!" and exit 1 (here `vow validate` reading a pipeline file that is still coming).
    fifo = sandbox.cwd / "slow.yaml"
    os.mkfifo(fifo)  # as `vow validate <(make-pipeline)`
    writer = os.open(fifo, os.O_RDWR)
    try:
        running = sandbox.popen("validate", str(fifo))
        wait_until(lambda: _holds_open(running.pid, fifo), message="vow validate to read the file", proc=running)
        running.send_signal(signal.SIGINT)
        out, err = running.communicate(timeout=60)
    finally:
        os.close(writer)
    assert (running.returncode, out, err) == (130, "", "\ninterrupted\n")
