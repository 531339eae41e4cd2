"""The worker's log: lines said on the engine thread are written in batches, none lost or torn."""

from __future__ import annotations

import io
import re
import sys
import threading

import pytest

from vow.cli.worker import LogOutput


def test_lines_said_from_many_threads_are_each_written_once_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    threads, lines = 4, 5000
    go = threading.Barrier(threads)

    def say_many(output: LogOutput, t: int) -> None:
        go.wait()
        for i in range(lines):
            output.say(f"thread {t} line {i}")

    with LogOutput(every=0.0005) as output:  # written while the lines come
        workers = [threading.Thread(target=say_many, args=(output, t)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    written = out.getvalue().splitlines()
    assert len(written) == threads * lines
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d \[\d+\] thread \d line \d+", line) for line in written)
    for t in range(threads):
        mine = [int(line.rsplit(" ", 1)[1]) for line in written if f" thread {t} " in line]
        assert mine == list(range(lines))


def test_a_line_said_now_is_written_at_once_with_the_lines_before_it(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    with LogOutput(every=3600) as output:  # the thread would not write before the test ends
        output.say("run a started")
        assert out.getvalue() == ""
        output.say("worker on sqlite:x", now=True)
        assert [line.split("] ", 1)[1] for line in out.getvalue().splitlines()] == ["run a started",
                                                                                  "worker on sqlite:x"]
        output.say("run a resolved")
    assert out.getvalue().splitlines()[-1].endswith("] run a resolved")  # written when the worker stops
