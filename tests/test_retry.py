"""Retries are never silent: a scheduled retry is a warning a user sees with no logging set up."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    from vow import Constant, Context, LeafContext, TransientError, Vow

    def flaky(ctx: LeafContext) -> int:
        if ctx.attempt == 1:
            raise TransientError("service unavailable")
        return ctx.attempt

    def wf(ctx: Context):
        return (yield ctx.run(flaky).options(retry=Constant(delay=0.01)))

    with Vow(store="memory:") as vow:
        print(vow.run("r/1", wf))
""")


def test_a_retry_is_printed_to_stderr_without_any_logging_configuration() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
    assert done.stderr.splitlines() == [
        "r/1.1 failed on attempt 1 (TransientError: service unavailable); retrying in 0.01s"]


def test_the_retry_log_can_be_silenced_like_any_logger() -> None:
    quiet = "import logging; logging.getLogger('vow.retry').setLevel(logging.ERROR)\n" + SCRIPT
    done = subprocess.run([sys.executable, "-c", quiet], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
