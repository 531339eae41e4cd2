"""Crash matrix: the four-channel workflow, SIGKILLed at each interesting point, then resumed.

Each case runs ``notify_app`` (email, SMS, Slack, push through ``vow.channels.deliver`` with
the simulated transports) on a real SQLite file in a subprocess, kills it with SIGKILL at one
exact point, and resumes the same workflow id in a fresh process. The sink is the simulated
transports' Ledger (another SQLite file, shared by the processes), which counts every repeated
send of an idempotency key as a duplicate. A crash-free run of the same plan, in its own
process, store and ledger, gives the expected result.

What every case proves, at the sink and in the store:

* every channel was delivered exactly once per idempotency key;
* a leaf settled before the kill was never sent again (no duplicate) and no attempt of it was
  ever started after it settled; its stored record is unchanged;
* a leaf in flight at the kill ran again with the same key: a duplicate at the sink only if it had
  already reached the sink (and then exactly one);
* the resumed result is complete and equal to the crash-free run's, and each receipt is the
  one the sink recorded.
"""

from __future__ import annotations

import collections
import json
import random
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.durability.support import app, log_lines
from tests.support import finish, kill, read_line
from vow.engine import BACKOFF_FUNC
from vow.records import Kind, PromiseRecord, State
from vow.simulation import Delivery, Ledger
from vow.stores.sqlite import SQLiteStore
from vow.testing import wait_until

CHANNELS = ("email", "sms", "slack", "push")
ALL = {"send": list(CHANNELS)}
PUSH_FAILS_ONCE = {"push": {"faults": {"fail_attempts": [1], "message": "push service unavailable"}}}


@attrs.frozen
class World:
    """What the test can see of a run: its store, its sink and its log."""

    wid: str
    store: SQLiteStore
    ledger: Ledger
    log: Path

    def records(self) -> dict[str, PromiseRecord]:
        """The workflow's promises, without the engine's retry back-off timers."""
        return {r.id: r for r in self.store.tree(self.wid) if r.func != BACKOFF_FUNC}

    def channel(self, name: str) -> PromiseRecord | None:
        return self.store.get(f"{self.wid}.{name}")

    def settled(self, *names: str) -> bool:
        return all((r := self.channel(n)) is not None and r.settled for n in names)

    def held(self, what: str) -> set[str]:
        return {w[2] for w in log_lines(self.log, "held") if w[1] == what}

    def keys(self, *names: str) -> set[str]:
        return {f"{self.wid}.{n}" for n in names}

    def sleeps(self) -> list[PromiseRecord]:
        return [r for r in self.store.tree(self.wid) if r.kind is Kind.SLEEP]


@attrs.frozen
class Case:
    """One crash point: the plan, the holds of the killed process, when to kill, what must hold then."""

    plan: dict[str, Any]
    holds: dict[str, str]
    ready: Callable[[World], Any]
    at_kill: Callable[[World, dict[str, PromiseRecord], dict[str, Delivery]], None]
    reference_plan: dict[str, Any] | None = None  # the same result without the long waits
    store_query: str = ""  # store options in the URL


def _nothing_delivered(w: World, records: dict[str, PromiseRecord], sink: dict[str, Delivery]) -> None:
    assert set(records) == {w.wid} | w.keys(*CHANNELS)  # the root and its four children are stored
    assert not any(r.settled for r in records.values())
    assert sink == {}


def _two_settled(w: World, records: dict[str, PromiseRecord], sink: dict[str, Delivery]) -> None:
    assert {i for i, r in records.items() if r.settled} == w.keys("email", "sms")
    assert set(sink) == w.keys("email", "sms")


def _delivered_not_settled(w: World, records: dict[str, PromiseRecord], sink: dict[str, Delivery]) -> None:
    assert not records[f"{w.wid}.push"].settled
    assert set(sink) == w.keys(*CHANNELS)
    assert {i for i, r in records.items() if r.settled} == w.keys("email", "sms", "slack")


def _in_backoff(w: World, records: dict[str, PromiseRecord], sink: dict[str, Delivery]) -> None:
    push = records[f"{w.wid}.push"]
    assert (push.state, push.attempt) == (State.PENDING, 2)
    assert set(sink) == w.keys("email", "sms", "slack")


def _in_sleep(w: World, records: dict[str, PromiseRecord], sink: dict[str, Delivery]) -> None:
    [nap] = [r for r in records.values() if r.kind is Kind.SLEEP]
    assert nap.state is State.PENDING, "the kill came after the sleep ended: the box is too slow for this case"
    assert set(sink) == w.keys("email", "sms")
    assert f"{w.wid}.slack" not in records


def _fanned_in(w: World, records: dict[str, PromiseRecord], sink: dict[str, Delivery]) -> None:
    assert w.settled(*CHANNELS)
    assert set(sink) == w.keys(*CHANNELS)
    assert not records[w.wid].settled
    pending = [r for r in records.values() if not r.settled and r.id != w.wid]
    assert len(pending) == 1 and pending[0].kind in (Kind.STEP, Kind.SLEEP)


CASES = {
    # The root and its four children are stored and every leaf is running; none reached the sink.
    "before_any_branch": Case(
        {"stages": [ALL]}, {"DURABILITY_HOLD_BEFORE": ",".join(CHANNELS)},
        lambda w: len(w.held("before")) == 4, _nothing_delivered),
    # Email and SMS settled; Slack and push are running.
    "after_some_settle": Case(
        {"stages": [ALL], "channels": PUSH_FAILS_ONCE}, {"DURABILITY_HOLD_BEFORE": "slack,push"},
        lambda w: w.settled("email", "sms") and len(w.held("before")) == 2, _two_settled),
    # The same on a store that syncs every commit to disk.
    "after_some_settle_synchronous_full": Case(
        {"stages": [ALL], "channels": PUSH_FAILS_ONCE}, {"DURABILITY_HOLD_BEFORE": "slack,push"},
        lambda w: w.settled("email", "sms") and len(w.held("before")) == 2, _two_settled,
        store_query="?synchronous=full"),
    # Push reached the sink but its leaf never returned: the one case a duplicate is expected.
    "delivered_not_settled": Case(
        {"stages": [ALL]}, {"DURABILITY_HOLD_AFTER": "push"},
        lambda w: w.held("after") and w.settled("email", "sms", "slack"), _delivered_not_settled),
    # Push failed attempt 1 and waits 3 s (Retry-After) before attempt 2.
    "retry_backoff": Case(
        {"stages": [ALL], "channels": {"push": {"faults": {"fail_attempts": [1], "retry_after": 3.0}}}}, {},
        lambda w: (p := w.channel("push")) is not None and p.attempt == 2 and w.settled("email", "sms", "slack"),
        _in_backoff,
        reference_plan={"stages": [ALL],
                        "channels": {"push": {"faults": {"fail_attempts": [1], "retry_after": 0.01}}}}),
    # Inside a durable sleep between two fan-outs.
    "durable_sleep": Case(
        {"stages": [{"send": ["email", "sms"]}, {"sleep": 2.0}, {"send": ["slack", "push"]}],
         "channels": PUSH_FAILS_ONCE}, {},
        lambda w: w.sleeps(), _in_sleep),
    # All four fanned in; the step after the fan-in is running.
    "after_fan_in_leaf": Case(
        {"stages": [ALL, {"confirm": True}], "channels": PUSH_FAILS_ONCE}, {"DURABILITY_HOLD_CONFIRM": "1"},
        lambda w: w.held("confirm"), _fanned_in),
    # All four fanned in; a durable sleep before the workflow returns.
    "after_fan_in_sleep": Case(
        {"stages": [ALL, {"sleep": 1.5}]}, {},
        lambda w: w.sleeps(), _fanned_in),
}


def _mask_time(receipt: dict[str, Any]) -> dict[str, Any]:
    """A receipt without the parts that differ between two correct runs: the duplicate flag (set on
    a re-sent in-flight leaf) and the wall-clock seconds in a Slack ``ts``."""
    text = re.sub(r"\b\d{10}\.(\d{6})\b", r"T.\1", json.dumps(receipt, sort_keys=True))
    return {k: v for k, v in json.loads(text).items() if k != "duplicate"}


def _normalize(result: dict[str, Any]) -> dict[str, Any]:
    return {"receipts": {c: _mask_time(r) for c, r in result["receipts"].items()}, "confirmed": result["confirmed"]}


_SPAWNED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_process_left_behind():
    """A test that fails half-way leaves no holding process running, and no pipe open."""
    yield
    while _SPAWNED:
        kill(_SPAWNED.pop())  # nothing to do for one that finished


def _run(tmp: Path, name: str, wid: str, plan: dict[str, Any], holds: dict[str, str], query: str = ""):
    env = {"VOW_SIM_DIR": str(tmp / f"{name}-sim"), "DURABILITY_LOG": str(tmp / f"{name}.log"), **holds}
    proc = app("notify_app", f"sqlite:{tmp / f'{name}.sqlite'}{query}", wid, json.dumps(plan), env=env)
    _SPAWNED.append(proc)
    return proc


def _result(proc) -> dict[str, Any]:
    out, _ = finish(proc)
    return json.loads(out.strip().splitlines()[-1])


def check_after_resume(w: World, result: dict[str, Any], reference: dict[str, Any],
                       at_kill: dict[str, PromiseRecord], sink_at_kill: dict[str, Delivery],
                       earlier_kills: tuple[dict[str, PromiseRecord], ...] = ()) -> None:
    """The invariants every crash case must keep (see the module docstring). ``at_kill`` and
    ``sink_at_kill`` are the store and the sink right after the last kill; ``earlier_kills`` the
    store after any kill before it."""
    deliveries = w.ledger.deliveries()
    assert sorted((d.channel, d.key) for d in deliveries) == sorted((c, f"{w.wid}.{c}") for c in CHANNELS), (
        "every channel delivered exactly once, under its own key")
    sink = {d.key: d for d in deliveries}
    for channel in CHANNELS:
        key = f"{w.wid}.{channel}"
        assert sink[key].channel == channel
        before = at_kill.get(key)
        settled_before = before is not None and before.settled
        resent = not settled_before and key in sink_at_kill
        assert sink[key].duplicates == (1 if resent else 0), (
            f"{key}: {sink[key].duplicates} duplicate sends (settled before the kill: {settled_before}, "
            f"at the sink before the kill: {key in sink_at_kill})")
        receipt = result["receipts"][channel]
        assert receipt == {**sink[key].receipt, "duplicate": resent}, "the result holds the sink's receipt"
        assert receipt["idempotency_key"] == key

    after = w.records()
    assert all(r.state is State.RESOLVED for r in after.values()), [r for r in after.values() if not r.settled]
    for pid, record in at_kill.items():
        if record.settled:
            assert after[pid] == record, f"{pid} was settled before the kill and changed after it"
    # No attempt of a leaf started after the leaf settled, in either process.
    for _, pid, attempt, _proc, started in log_lines(w.log, "start"):
        assert float(started) < after[pid].settled_at, f"{pid} attempt {attempt} started after it settled"
    # Each attempt of a leaf started once, plus once more for each kill that caught it in flight.
    starts = collections.Counter((x[1], int(x[2])) for x in log_lines(w.log, "start"))
    for (pid, attempt), count in starts.items():
        caught = sum(1 for snapshot in (*earlier_kills, at_kill)
                     if (r := snapshot.get(pid)) is not None and not r.settled and r.attempt == attempt)
        assert count <= 1 + caught, f"{pid} attempt {attempt} started {count} times, in flight at {caught} kills"
    # A durable sleep cut short by the kill still lasted its full time across the two processes.
    for nap in (r for r in after.values() if r.kind is Kind.SLEEP):
        assert nap.settled_at is not None and nap.timeout is not None and nap.settled_at >= nap.timeout
        later = [r for r in after.values() if r.created_at > nap.created_at and r.kind is Kind.STEP]
        assert all(r.created_at >= nap.timeout for r in later), "a step after the sleep ran before it ended"
    for log in (w.log, w.log.with_name("reference.log")):
        locked = [" ".join(x) for x in log_lines(log, "retry") if "locked" in x]
        assert not locked, f"'database is locked' reached a leaf ({log.name}): {locked}"
    assert _normalize(result) == _normalize(reference)
    assert all(r["duplicate"] is False for r in reference["receipts"].values())


@pytest.mark.parametrize("name", list(CASES))
def test_sigkill_then_resume_delivers_each_channel_once(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    wid = f"order/{name}"
    reference_proc = _run(tmp_path, "reference", wid, case.reference_plan or case.plan, {})
    first = _run(tmp_path, "run", wid, case.plan, case.holds, case.store_query)
    store = SQLiteStore(tmp_path / "run.sqlite")
    ledger = Ledger(tmp_path / "run-sim" / "ledger.sqlite")
    w = World(wid, store, ledger, tmp_path / "run.log")
    try:
        wait_until(lambda: case.ready(w), 60, f"{name}: the crash point", proc=first)
        kill(first)
        at_kill = w.records()
        sink_at_kill = {d.key: d for d in ledger.deliveries()}
        case.at_kill(w, at_kill, sink_at_kill)

        result = _result(_run(tmp_path, "run", wid, case.plan, {}, case.store_query))
        reference = _result(reference_proc)
        check_after_resume(w, result, reference, at_kill, sink_at_kill)
        if "confirm" in json.dumps(case.plan):
            confirms = [x for x in log_lines(w.log, "start") if x[1] == f"{wid}.confirm"]
            assert len(confirms) == 2  # in flight at the kill, so run once more after it
    finally:
        store.close()
        ledger.close()



def test_a_retry_backoff_cut_by_a_crash_is_still_waited_out(tmp_path: Path) -> None:
    """Retry-After is the provider's rule: a restart must not send attempt 2 before it expires."""
    case = CASES["retry_backoff"]
    wid = "order/backoff"
    first = _run(tmp_path, "run", wid, case.plan, {})
    store = SQLiteStore(tmp_path / "run.sqlite")
    ledger = Ledger(tmp_path / "run-sim" / "ledger.sqlite")
    w = World(wid, store, ledger, tmp_path / "run.log")
    try:
        wait_until(lambda: case.ready(w), 60, "push in its backoff", proc=first)
        kill(first)
        _result(_run(tmp_path, "run", wid, case.plan, {}))
        [retry] = log_lines(w.log, "retry")
        failed_attempt, failed_at, delay = retry[2:5]
        assert (failed_attempt, float(delay)) == ("1", 3.0)
        second_attempts = [float(x[4]) for x in log_lines(w.log, "start") if x[1:3] == [f"{wid}.push", "2"]]
        assert second_attempts and min(second_attempts) >= float(failed_at) + 3.0 - 0.05, (
            f"attempt 2 started {min(second_attempts) - float(failed_at):.2f} s after attempt 1 failed "
            "with Retry-After 3 s")
    finally:
        store.close()
        ledger.close()


RANDOM_PLAN = {
    "stages": [ALL, {"sleep": 0.2}, {"confirm": True}],
    "channels": {"email": {"latency": 0.05}, "sms": {"latency": 0.1}, "slack": {"latency": 0.2},
                 "push": {"latency": 0.05, "faults": {"fail_attempts": [1]}}},
}


@pytest.mark.parametrize("seed", range(4))
def test_sigkill_at_a_random_moment_then_resume(tmp_path: Path, seed: int) -> None:
    """No chosen point: the kill lands wherever it lands (the invariants hold at any moment)."""
    wid = f"order/random-{seed}"
    delay = random.Random(seed).uniform(0.0, 0.8)
    reference_proc = _run(tmp_path, "reference", wid, RANDOM_PLAN, {})
    first = _run(tmp_path, "run", wid, RANDOM_PLAN, {})
    store = SQLiteStore(tmp_path / "run.sqlite")
    ledger = Ledger(tmp_path / "run-sim" / "ledger.sqlite")
    w = World(wid, store, ledger, tmp_path / "run.log")
    try:
        assert read_line(first).startswith("started")
        time.sleep(delay)  # chooses the moment of the crash; no correctness depends on it
        kill(first)
        at_kill = w.records()
        sink_at_kill = {d.key: d for d in ledger.deliveries()}
        result = _result(_run(tmp_path, "run", wid, RANDOM_PLAN, {}))
        check_after_resume(w, result, _result(reference_proc), at_kill, sink_at_kill)
    finally:
        store.close()
        ledger.close()


def test_two_crashes_in_a_row_then_resume(tmp_path: Path) -> None:
    """Killed with two leaves running, then killed again after push reached the sink, then resumed."""
    wid = "order/twice"
    plan = {"stages": [ALL, {"confirm": True}], "channels": PUSH_FAILS_ONCE}
    reference_proc = _run(tmp_path, "reference", wid, plan, {})
    store = SQLiteStore(tmp_path / "run.sqlite")
    ledger = Ledger(tmp_path / "run-sim" / "ledger.sqlite")
    w = World(wid, store, ledger, tmp_path / "run.log")
    try:
        first = _run(tmp_path, "run", wid, plan, {"DURABILITY_HOLD_BEFORE": "slack,push"})
        wait_until(lambda: w.settled("email", "sms") and len(w.held("before")) == 2, 60, "two held, two settled",
                   proc=first)
        kill(first)
        first_kill = w.records()
        second = _run(tmp_path, "run", wid, plan, {"DURABILITY_HOLD_AFTER": "push"})
        wait_until(lambda: w.held("after") and w.settled("slack"), 60, "push held after the sink, slack settled",
                   proc=second)
        kill(second)
        at_kill = w.records()
        sink_at_kill = {d.key: d for d in ledger.deliveries()}
        for pid, record in first_kill.items():
            if record.settled:
                assert at_kill[pid] == record
        result = _result(_run(tmp_path, "run", wid, plan, {}))
        check_after_resume(w, result, _result(reference_proc), at_kill, sink_at_kill, (first_kill,))
        assert sink_at_kill[f"{wid}.push"].duplicates == 0 and ledger.get(f"{wid}.push").duplicates == 1
    finally:
        store.close()
        ledger.close()
