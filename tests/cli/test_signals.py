"""`vow run` stopped by signals while a branch runs: one exit code, the run left pending and consistent."""

from __future__ import annotations

import signal

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

