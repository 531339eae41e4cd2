"""A rate limit shared by two ``vow worker`` processes: ten Slack messages at two a second.

Judged at the sink (the simulated Slack ledger): each message arrives once, and the receive
times are at least 0.5 s apart less :data:`TOLERANCE` — the time between taking a token from the
store's bucket and the ledger's write, which a loaded machine can stretch for one message and
not the next. Without the shared bucket the ten would arrive within a few tens of milliseconds.
"""

from __future__ import annotations

import signal
from typing import Any

from vow import Vow
from vow.pipeline.plan import load
from vow.pipeline.workflow import NAME
from vow.testing import wait_until

TOLERANCE = 0.2
"""Seconds: how much closer than 1 / per_second two receive times may be (see the module docstring)."""

PIPELINE = """\
version: 1
name: burst
id: "burst/{{ input.n }}"
input: {n: 0}
fan_out:
  - channel: slack
    to: "#burst"
    body: "message {{ input.n }}"
    options: {latency: 0, rate_limit: {per_second: 2}}
"""


def test_two_workers_share_one_rate_limit(sandbox: Any, start_worker: Any) -> None:
    sandbox.write("burst.yaml", PIPELINE)
    with Vow(sandbox.store) as submitter:
        for n in range(10):  # ten runs of one message, so both workers send at once
            plan = load(str(sandbox.cwd / "burst.yaml"), input={"n": n})
            submitter.submit(plan.run_id, NAME, plan.spec)
    workers = [start_worker("--max-running", "5"), start_worker("--max-running", "5")]

    def settled() -> bool:
        with Vow(sandbox.store) as reader:
            return all(r.settled for r in reader.store.runs(limit=100)) and len(reader.store.runs(limit=100)) == 10

    try:
        wait_until(settled, 120, "the ten runs finished", proc=workers[0].proc, interval=0.1)
    finally:
        for w in workers:
            w.stop(signal.SIGTERM)
    deliveries = sandbox.ledger().deliveries("slack")
    assert sorted(d.payload["text"] for d in deliveries) == [f"message {n}" for n in range(10)]
    assert all(d.duplicates == 0 for d in deliveries)
    times = sorted(d.delivered_at for d in deliveries)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 0.5 - TOLERANCE, f"receive times closer than the limit allows: {gaps}"
    with Vow(sandbox.store) as reader:
        runs = reader.store.runs(limit=100)
        assert all(r.state.value == "resolved" for r in runs)
        # A wait for a token is not a failed attempt: every message went out on its first attempt.
        assert all(reader.get(f"{r.id}.slack").attempt == 1 for r in runs)
