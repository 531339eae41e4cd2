"""`vow run` and `vow worker` whose output nobody reads any more (`vow run FILE | head -1`, stdout closed):
the run goes on to its end, with no traceback; the view is lost, not the work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.cli.test_durability import GATED
from tests.support import read_line
from vow.records import State
from vow.testing import wait_until


def test_vow_run_whose_reader_went_away_runs_to_its_end_without_a_traceback(sandbox) -> None:
    # `vow run gated.yaml | head -1`: the first write after head exits failed with EPIPE, and click
    # ended the process with exit 1 there, leaving the run pending half-way.
    sandbox.write("gated.yaml", GATED)
    running = sandbox.popen("run", "gated.yaml")
    assert read_line(running).startswith("approve: run approve/1 on ")
    wait_until(lambda: sandbox.store_file.exists() and "approve/1.approval" in sandbox.records("approve/1"),
               message="the run to wait for approval", proc=running)
    assert running.stdout is not None
    running.stdout.close()  # the reader is gone: every later line is a write to a closed pipe
    assert sandbox.run("resolve", "approve/1.approval", "yes").returncode == 0
    _, err = running.communicate(timeout=60)
    assert (running.returncode, err) == (0, "")
    assert sandbox.records("approve/1")["approve/1"].state is State.RESOLVED
    assert [d.key for d in sandbox.ledger().deliveries()] == ["approve/1.email"]


def test_vow_run_with_stdout_closed_runs_to_its_end(sandbox) -> None:
    # `vow run FILE >&-`: Python sets sys.stdout to None, and `sys.stdout.isatty()` was an AttributeError
    # traceback (exit 1) after the run was stored.
    sandbox.write("gated.yaml", GATED.replace("gate: {promise: approval, timeout: 120}\n", ""))
    done = subprocess.run(["sh", "-c", f'exec "{sys.executable}" -m vow run gated.yaml >&-'], cwd=sandbox.cwd,
                          env={**os.environ, **sandbox.env}, capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert sandbox.records("approve/1")["approve/1"].state is State.RESOLVED


def test_a_worker_whose_log_reader_went_away_goes_on_working(sandbox) -> None:
    # `vow worker | head -1`: the log's writes failed with EPIPE; as it stopped, the worker exited 1
    # with "Exception ... Broken pipe" on stderr.
    sandbox.write("plain.yaml", GATED.replace("gate: {promise: approval, timeout: 120}\n", ""))
    worker = sandbox.popen("worker", "--poll", "0.05")
    assert "worker on" in read_line(worker)
    assert worker.stdout is not None
    worker.stdout.close()
    for n in (1, 2):
        assert sandbox.run("run", "plain.yaml", "--set", f"n={n}", "--detach").returncode == 0
    for n in (1, 2):
        wait_until(lambda n=n: sandbox.records(f"approve/{n}")[f"approve/{n}"].settled, message=f"run {n} to settle",
                   proc=worker)
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert (worker.returncode, err) == (0, "")
    assert sorted(d.key for d in sandbox.ledger().deliveries()) == ["approve/1.email", "approve/2.email"]


def _with_reader_gone(sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    """``vow ARGS`` whose stdout is a pipe nobody reads any more (``vow ls | head -1`` once head has exited):
    its read end is closed before vow starts, so every write vow makes fails with EPIPE, whatever the timing."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "vow", *args], cwd=sandbox.cwd, env={**os.environ, **sandbox.env},
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args", [("ls",), ("ls", "--json"), ("show", "approve/1"), ("show", "approve/1", "--json"),
                                  ("schedule", "ls"), ("plugins",), ("--help",), ("ls", "--help")],
                         ids=" ".join)
def test_a_reading_command_whose_reader_went_away_exits_141_quietly(sandbox, args: tuple[str, ...]) -> None:
    # `vow ls | head -1`: click turned the EPIPE into exit 1, vow's "a workflow failed". Now it ends as
    # `git log | head -1` or `cat` do (141 in the shell, 128 + SIGPIPE), with nothing on stderr.
    sandbox.write("plain.yaml", GATED.replace("gate: {promise: approval, timeout: 120}\n", ""))
    assert sandbox.run("run", "plain.yaml").returncode == 0
    done = _with_reader_gone(sandbox, *args)
    assert (done.returncode, done.stderr) == (128 + signal.SIGPIPE, "")


def _into_a_full_disk(sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    """``vow ARGS > /dev/full``: every write to stdout fails with ENOSPC, as on a full disk."""
    with open("/dev/full", "w") as full:
        return subprocess.run([sys.executable, "-m", "vow", *args], cwd=sandbox.cwd, env={**os.environ, **sandbox.env},
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)


@pytest.mark.parametrize("args", [("ls",), ("ls", "--json"), ("show", "approve/1"), ("--help",)], ids=" ".join)
def test_a_reading_command_whose_output_cannot_be_written_says_so_in_one_line(sandbox, args: tuple[str, ...]) -> None:
    # `vow ls > file` on a full disk: an OSError traceback, exit 1 (vow's "a workflow failed").
    sandbox.write("plain.yaml", GATED.replace("gate: {promise: approval, timeout: 120}\n", ""))
    assert sandbox.run("run", "plain.yaml").returncode == 0
    done = _into_a_full_disk(sandbox, *args)
    assert (done.returncode, done.stderr) == (2, "error: could not write vow's output: No space left on device\n")


def test_vow_run_whose_output_cannot_be_written_runs_to_its_end(sandbox) -> None:
    sandbox.write("plain.yaml", GATED.replace("gate: {promise: approval, timeout: 120}\n", ""))
    done = _into_a_full_disk(sandbox, "run", "plain.yaml")
    assert (done.returncode, done.stderr) == (0, "")
    assert sandbox.records("approve/1")["approve/1"].state is State.RESOLVED


def test_stdout_that_failed_closes_quietly() -> None:
    """Python closes the wrapper when it is collected at exit: a failure said at its write is not said
    again there (Python 3.13 printed "Exception ignored in: <vow.cli.common._Output ...>")."""
    from vow.cli.common import OutputFailed, _Output

    read_end, write_end = os.pipe()
    os.close(read_end)
    stream = os.fdopen(write_end, "w")
    try:
        out = _Output(stream, drop=False)
        with pytest.raises(OutputFailed):
            out.write("x" * 100_000)
            out.flush()
        out.close()
        assert out.closed
    finally:
        stream.close()  # its descriptor was pointed at /dev/null when the write failed
