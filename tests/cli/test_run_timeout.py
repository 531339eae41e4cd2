"""A pipeline's top-level ``timeout:``: the whole run times out, its pending branches with it, and
``vow run`` (a real subprocess) says so and exits 1. Times are judged by what the store recorded."""

from __future__ import annotations

import json
import re

import pytest

from vow.records import State

SLOW = """\
version: 1
name: slow
id: slow/1
timeout: 2s
fan_out:
  - {channel: slack, to: "#orders", body: hi, options: {latency: 0}}
  - channel: email
    to: ada@example.com
    subject: hi
    body: hello
    faults: {latency: 600}  # its attempt outlasts the run's timeout many times over
"""

GATED = """\
version: 1
name: gated
id: gated/1
timeout: 1
gate: {promise: approval}
fan_out:
  - {channel: slack, to: "#orders", body: hi}
  - {channel: sms, to: "+14155550100", body: hi}
"""


def test_a_run_that_outlasts_its_timeout_times_out_with_its_pending_branch_and_exits_1(sandbox) -> None:
    sandbox.write("slow.yaml", SLOW)
    done = sandbox.run("run", "slow.yaml")
    assert done.returncode == 1, done.stdout + done.stderr

    records = sandbox.records("slow/1")
    root, slack, email = records["slow/1"], records["slow/1.slack"], records["slow/1.email"]
    assert root.state is State.TIMEDOUT
    assert root.timeout - root.created_at == pytest.approx(2.0)  # the file's 2s, as the run's deadline
    assert root.settled_at >= root.timeout
    assert (slack.state, email.state) == (State.RESOLVED, State.TIMEDOUT)  # the pending branch, with the run
    assert email.settled_at >= root.timeout
    ledger = sandbox.ledger()
    try:
        assert [d.key for d in ledger.deliveries()] == ["slow/1.slack"]  # the email was never sent
    finally:
        ledger.close()

    lines = done.stdout.splitlines()
    assert re.fullmatch(r"timed out: slow/1 timed out after \d+\.\d\ds \(the run's timeout is 2s\); 1 of 2 "
                        r"branches had finished ok", lines[-3]), done.stdout
    assert lines[-2:] == ["  timed out: email", "  promise tree: vow show slow/1"]

    again = sandbox.run("run", "slow.yaml")  # the stored outcome, said the same way
    assert again.returncode == 1 and again.stdout.splitlines()[-3:] == lines[-3:]
    document = json.loads(sandbox.run("run", "slow.yaml", "--json").stdout)
    assert (document["state"], document["timeout"], document["ok"]) == ("timedout", 2.0, False)


def test_a_gate_still_waiting_at_the_deadline_times_out_and_no_branch_starts(sandbox) -> None:
    sandbox.write("gated.yaml", GATED)
    done = sandbox.run("run", "gated.yaml")
    assert done.returncode == 1, done.stdout + done.stderr
    records = sandbox.records("gated/1")
    assert {pid: r.state for pid, r in records.items()} == {  # no branch stored: none started
        "gated/1": State.TIMEDOUT, "gated/1.started": State.RESOLVED, "gated/1.approval": State.TIMEDOUT}
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"timed out: gated/1 timed out after \d+\.\d\ds \(the run's timeout is 1s\); 0 of 2 "
                        r"branches had finished ok", lines[-4]), done.stdout
    assert lines[-3:-1] == ["  timed out: approval", "  never started: slack, sms"]


def test_a_detached_run_is_stored_with_the_files_timeout(sandbox) -> None:
    sandbox.write("slow.yaml", SLOW.replace("timeout: 2s", "timeout: 1h30m"))
    done = sandbox.run("run", "slow.yaml", "--detach")
    assert (done.returncode, done.stdout) == (0, "slow/1\n"), done.stderr
    root = sandbox.records("slow/1")["slow/1"]
    assert root.state is State.PENDING and root.timeout - root.created_at == pytest.approx(5400.0)

    checked = sandbox.run("validate", "slow.yaml")
    assert checked.stdout.splitlines()[-1] == "    the whole run times out after 90m"
