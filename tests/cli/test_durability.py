"""Crash and resume, outside promises and several workers, with `vow` in real processes on one SQLite file.

The simulated channels' ledger ($VOW_SIM_DIR/ledger.sqlite) is the delivery sink: one row per
idempotency key, with a count of the duplicates it refused. "Nothing sent twice" means one row per
branch and no duplicate for any branch that had settled before a crash.
"""

from __future__ import annotations

import json
import re
import signal

from click.testing import CliRunner

from tests.support import kill, read_line
from vow.cli import cli
from vow.records import State
from vow.testing import wait_until

DEVICE = "a" * 64

CRASH = f"""\
version: 1
name: crash
id: "crash/{{{{ input.n }}}}"
input: {{n: 1}}
defaults:
  retry: {{policy: constant, delay: 0.05, max_attempts: 3}}
fan_out:
  - channel: email
    to: ada@example.com
    subject: Order confirmed
    body: hello
    options: {{latency: 0.02}}
  - channel: push
    to: "{DEVICE}"
    body: hello
    options: {{latency: 0.02}}
    faults: {{fail_attempts: [1], message: push service unavailable}}
  - channel: sms
    to: "+14155550100"
    body: hello
    options: {{latency: 0.02}}
    faults: {{hold_until_file: release}}
  - channel: slack
    to: "#orders"
    body: hello
    options: {{latency: 0.02}}
    faults: {{hold_until_file: release}}
"""


def test_sigkill_mid_fan_out_then_run_again_resumes_and_sends_nothing_twice(sandbox) -> None:
    sandbox.write("crash.yaml", CRASH)
    first = sandbox.popen("run", "crash.yaml")
    fast = {"crash/1.email", "crash/1.push"}

    def fast_settled() -> bool:
        records = sandbox.records("crash/1") if sandbox.store_file.exists() else {}
        return all(r in records and records[r].settled for r in fast)

    # sms and slack are held (in flight, not sent) until the file "release" exists: however loaded the
    # machine, the kill lands with them in flight, not after some latency ran out.
    wait_until(fast_settled, message="email and push to settle", proc=first)
    kill(first)
    before = sandbox.records("crash/1")
    assert before["crash/1"].state is State.PENDING
    assert not (before["crash/1.sms"].settled or before["crash/1.slack"].settled)  # in flight at the kill
    assert {d.key for d in sandbox.ledger().deliveries()} == fast  # and not sent

    (sandbox.cwd / "release").touch()  # the run again sends them
    again = sandbox.run("run", "crash.yaml")
    assert again.returncode == 0, again.stderr
    assert re.search(r"^  resuming crash/1 where it stopped: 2 of 4 already settled and not run again$",
                     again.stdout, re.M), again.stdout
    assert re.search(r"^done: crash/1 succeeded in .*; 4 of 4 branches ok \(push after 2 attempts\)$", again.stdout,
                     re.M)

    deliveries = {d.key: d for d in sandbox.ledger().deliveries()}
    assert set(deliveries) == {f"crash/1.{c}" for c in ("email", "push", "sms", "slack")}  # one delivery per key
    assert all(d.duplicates == 0 for d in deliveries.values())  # settled before the crash or not: sent once
    assert deliveries["crash/1.push"].receipt["attempt"] == 2  # the retry delivered, once
    after = sandbox.records("crash/1")
    for key in fast:  # the stored promise was reused, not run again
        assert (after[key].attempt, after[key].settled_at) == (before[key].attempt, before[key].settled_at)


GATED = """\
version: 1
name: approve
id: "approve/{{ input.n }}"
input: {n: 1}
gate: {promise: approval, timeout: 120}
fan_out:
  - channel: email
    to: ada@example.com
    subject: "Refund for order {{ input.n }}"
    body: Your refund is on its way.
    options: {latency: 0.01}
"""


def test_resolve_from_a_second_process_wakes_the_waiting_run(sandbox) -> None:
    sandbox.write("gated.yaml", GATED)
    waiting = sandbox.popen("run", "gated.yaml")
    wait_until(lambda: sandbox.store_file.exists() and "approve/1.approval" in sandbox.records("approve/1"),
               message="the run to wait for approval", proc=waiting)
    assert sandbox.ledger().deliveries() == []  # nothing is sent before the approval

    resolved = sandbox.run("resolve", "approve/1.approval", '{"by": "ada"}')
    assert (resolved.returncode, resolved.stdout) == (0, "approve/1.approval: resolved\n"), resolved.stderr
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert ("  approval  waiting for approve/1.approval: resolve it with  vow resolve approve/1.approval VALUE  "
            "(or  vow reject approve/1.approval REASON)") in out.splitlines()
    assert [d.key for d in sandbox.ledger().deliveries()] == ["approve/1.email"]
    shown = json.loads(sandbox.run("show", "approve/1", "--json").stdout)
    assert shown["value"]["approval"] == {"by": "ada"}

    # Rejecting instead fails the run (exit 1) with the reason, and sends nothing.
    refused = sandbox.popen("run", "gated.yaml", "--set", "n=2")
    wait_until(lambda: "approve/2.approval" in sandbox.records("approve/2"), message="the second run to wait",
               proc=refused)
    assert sandbox.run("reject", "approve/2.approval", "refund denied").returncode == 0
    out, _ = refused.communicate(timeout=60)
    assert refused.returncode == 1
    assert re.search(r"^failed: approve/2 rejected after .*: VowError: refund denied$", out, re.M), out
    assert [d.key for d in sandbox.ledger().deliveries()] == ["approve/1.email"]


WORKED = """\
version: 1
name: worked
id: "w/{{ input.n }}"
input: {n: 0}
fan_out:
  - channel: email
    to: ada@example.com
    subject: "Order {{ input.n }}"
    body: hello
    options: {latency: 0.02}
  - channel: sms
    to: "+14155550100"
    body: "Order {{ input.n }}"
    options: {latency: 0.02}
"""
RUNS = 20


def test_two_workers_share_one_store_and_run_each_submitted_run_once(sandbox, monkeypatch) -> None:
    sandbox.write("worked.yaml", WORKED)
    detached = sandbox.run("run", "worked.yaml", "--detach")
    assert (detached.returncode, detached.stdout) == (0, "w/0\n"), detached.stderr
    assert [(r.id, r.state) for r in _roots(sandbox)] == [("w/0", State.PENDING)]
    assert sandbox.ledger().deliveries() == []  # stored for a worker, not run

    workers = [sandbox.popen("worker", "--poll", "0.05") for _ in range(2)]
    ready = [read_line(w) for w in workers]  # each has its signal handlers in place
    assert all(re.search(r"\] worker on sqlite://\S+ runs: vow\.pipeline; stop with", line) for line in ready), ready
    monkeypatch.chdir(sandbox.cwd)
    monkeypatch.setenv("VOW_SIM_DIR", str(sandbox.sim_dir))
    try:
        # The same command in-process for the other runs (fast), while both workers poll the store.
        for n in range(1, RUNS):
            result = CliRunner().invoke(cli, ["run", "worked.yaml", "--detach", "--set", f"n={n}",
                                              "--store", sandbox.store])
            assert (result.exit_code, result.stdout) == (0, f"w/{n}\n"), result.output
        runs = {f"w/{n}" for n in range(RUNS)}
        wait_until(lambda: {r.id for r in _roots(sandbox) if r.state is State.RESOLVED} == runs,
                   timeout=90, message="every run to resolve")
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
    outputs = [(first + out, err) for first, (out, err) in zip(ready, (w.communicate(timeout=60) for w in workers))]
    assert [w.returncode for w in workers] == [0, 0], [err for _, err in outputs]

    started = {m.group(1) for out, _ in outputs
               for m in re.finditer(r"\] run (\S+) \(vow\.pipeline\) started$", out, re.M)}
    # Every run ran in a worker. (A worker may still replay a run that another worker finished a moment
    # before: a known engine race, xfailed in tests/durability/test_workers.py; such a replay only reads
    # stored results, which the ledger below proves: nothing was delivered twice.)
    assert set(started) == runs, outputs
    deliveries = sandbox.ledger().deliveries()
    assert sorted(d.key for d in deliveries) == sorted(f"{r}.{c}" for r in runs for c in ("email", "sms"))
    assert all(d.duplicates == 0 for d in deliveries)


def _roots(sandbox) -> list:
    from vow import Vow

    with Vow(sandbox.store) as reader:
        return reader.store.search(roots_only=True, limit=1000)
