"""Seed 003 end to end: one order.confirmed event reaches email, SMS, Slack and push in parallel."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from vow import Context, Vow
from vow.channels import deliver
from vow.events import EventKind
from vow.simulation import Ledger

CHANNELS = ("email", "sms", "slack", "push")


class BranchTimes:
    """First start and final settle of each branch, from the engine's events."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.settled: dict[str, float] = {}

    def on_event(self, event) -> None:
        if event.promise_kind != "step":
            return
        if event.kind is EventKind.STARTED:
            self.started.setdefault(event.id, event.time)
        elif event.kind is EventKind.SETTLED:
            self.settled[event.id] = event.time

    def durations(self) -> dict[str, float]:
        return {i: self.settled[i] - self.started[i] for i in self.settled}


def notify_all(ctx: Context, event: dict):
    recipients = {"email": event["email"], "sms": event["phone"], "slack": "#orders", "push": "b" * 64}
    handles = []
    for channel in CHANNELS:
        message = {"to": recipients[channel], "subject": f"Order {event['order_id']} confirmed",
                   "body": f"Order {event['order_id']} is confirmed."}
        faults = {"fail_attempts": [1], "message": "push service unavailable"} if channel == "push" else None
        handles.append((yield ctx.begin_run(deliver, channel, message, None, faults).options(id=f"{ctx.id}.{channel}")))
    receipts = []
    for handle in handles:
        receipts.append((yield handle))
    return receipts


@pytest.fixture
def sim_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))
    return tmp_path / "sim"


def test_order_confirmed_reaches_four_channels_in_parallel_and_push_is_retried_alone(
        tmp_path: Path, sim_dir: Path) -> None:
    times = BranchTimes()
    event = {"order_id": "A-1", "email": "ada@example.com", "phone": "+14155550100"}
    with Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}", observers=[times]) as vow:
        t0 = time.perf_counter()
        receipts = vow.run("notify/A-1", notify_all, event)
        wall = time.perf_counter() - t0
        again = vow.run("notify/A-1", notify_all, event)

    assert [(r["channel"], r["attempt"]) for r in receipts] == [("email", 1), ("sms", 1), ("slack", 1), ("push", 2)]
    assert again == receipts
    deliveries = Ledger(sim_dir / "ledger.sqlite").deliveries()
    assert sorted((d.channel, d.key, d.duplicates) for d in deliveries) == sorted(
        (c, f"notify/A-1.{c}", 0) for c in CHANNELS)  # each channel delivered exactly once
    durations = times.durations()
    assert set(durations) == {f"notify/A-1.{c}" for c in CHANNELS}
    slowest, total = max(durations.values()), sum(durations.values())
    # Wall time tracks the slowest branch, not the sum of the four.
    assert wall < slowest + 0.25
    assert wall < 0.75 * total
