"""``vow schedule`` and real ``vow worker`` processes firing a schedule.

Proven with real processes on one SQLite file, judged by the stored run ids (each names its tick)
and by the simulated Slack ledger (the sink), never by the test's own clock:

* two workers and a one-second schedule: every tick from the first after ``schedule add`` ran,
  none was missed and none delivered twice;
* a worker killed with SIGKILL and started again catches up by the schedule's policy: ``all``
  starts every tick it missed, ``latest`` only the most recent.
"""

from __future__ import annotations

import json
import math
import signal
import time
from typing import Any

import pytest

from vow.schedules.timing import parse_tick_text
from vow.stores.sqlite import SQLiteStore
from vow.testing import wait_until

PIPELINE = """\
version: 1
name: tick
schedule: {{every: 1s, catch_up: {catch_up}}}
fan_out:
  - channel: slack
    to: "#ticks"
    body: "tick {{{{ schedule.tick or 'by hand' }}}}"
    options: {{latency: 0}}
"""


def _runs(sandbox: Any) -> dict[float, Any]:
    """The schedule's runs by tick."""
    reader = SQLiteStore(sandbox.store_file)
    try:
        return {parse_tick_text(r.id.split("/", 1)[1]): r for r in reader.runs(limit=10_000)
                if r.id.startswith("tick/")}
    finally:
        reader.close()


def _resolved(sandbox: Any) -> list[float]:
    return sorted(t for t, r in _runs(sandbox).items() if r.state.value == "resolved")


def _check_sink(sandbox: Any, runs: dict[float, Any]) -> None:
    """Each resolved tick was delivered exactly once, and nothing else was delivered."""
    from vow.schedules.timing import tick_text

    deliveries = sandbox.ledger().deliveries("slack")
    bodies = [d.payload.get("text") or json.dumps(d.payload) for d in deliveries]
    assert all(d.duplicates == 0 for d in deliveries), "a tick was sent twice"
    for tick, run in runs.items():
        sent = [b for b in bodies if f"tick {tick_text(tick)}" in b]
        if run.state.value == "resolved":
            assert len(sent) == 1, f"tick {tick_text(tick)} was delivered {len(sent)} times"
        else:
            assert len(sent) <= 1
    assert len(deliveries) <= len(runs)


def test_two_workers_run_every_tick_of_a_one_second_schedule_once(sandbox: Any, start_worker: Any) -> None:
    sandbox.write("tick.yaml", PIPELINE.format(catch_up="all"))
    added = sandbox.run("schedule", "add", "tick.yaml", "--json")
    assert added.returncode == 0, added.stderr
    first = parse_tick_text(json.loads(added.stdout)["next_tick"])
    workers = [start_worker(), start_worker()]
    try:
        wait_until(lambda: len(_resolved(sandbox)) >= 8, 90, "eight ticks ran", proc=workers[0].proc, interval=0.1)
    finally:
        for w in workers:
            w.stop()
    runs = _runs(sandbox)
    ticks = sorted(runs)
    assert ticks[0] == first, "the first tick after `schedule add` is missing"
    assert ticks == [first + i for i in range(len(ticks))], f"missed ticks: {ticks}"
    assert len(_resolved(sandbox)) >= 8
    _check_sink(sandbox, runs)
    for w in workers:
        assert "Traceback" not in "".join(w.lines + w.errors)


@pytest.mark.parametrize("catch_up", ["all", "latest"])
def test_a_worker_killed_and_restarted_catches_up_by_the_policy(sandbox: Any, start_worker: Any, catch_up: str) -> None:
    sandbox.write("tick.yaml", PIPELINE.format(catch_up=catch_up))
    assert sandbox.run("schedule", "add", "tick.yaml").returncode == 0
    worker = start_worker()
    try:
        wait_until(lambda: len(_resolved(sandbox)) >= 2, 60, "two ticks ran", proc=worker.proc, interval=0.1)
    finally:
        worker.stop(signal.SIGKILL)
    last = max(_runs(sandbox))  # the dead worker starts nothing more
    # Downtime: at least three ticks come due with no worker (the SQLite store's clock is this machine's).
    wait_until(lambda: time.time() >= last + 4.5, 30, "three ticks passed")
    restarted_at = time.time()
    worker = start_worker()
    try:
        wait_until(lambda: any(t >= math.floor(restarted_at) + 1 for t in _resolved(sandbox)), 60,
                   "the restarted worker ran the ticks after its restart", proc=worker.proc, interval=0.1)
        wait_until(lambda: all(r.state.value != "pending" for t, r in _runs(sandbox).items()
                               if t <= math.floor(restarted_at)), 60, "every run from before the restart finished",
                   proc=worker.proc, interval=0.1)
    finally:
        worker.stop()
    runs = _runs(sandbox)
    missed = [last + i for i in range(1, int(math.floor(restarted_at) - last))]  # due while no worker ran
    assert len(missed) >= 3
    if catch_up == "all":
        assert all(t in runs for t in missed), "catch_up: all starts every missed tick"
        after = sorted(t for t in runs if t > last)
        assert after == [last + i for i in range(1, len(after) + 1)]
    else:
        assert not any(t in runs for t in missed), "catch_up: latest skips the older missed ticks"
        assert min(t for t in runs if t > last) >= math.floor(restarted_at)
    _check_sink(sandbox, runs)


def test_schedule_commands(sandbox: Any, start_worker: Any) -> None:
    sandbox.write("tick.yaml", PIPELINE.format(catch_up="latest").replace("{every: 1s", '{cron: "0 9 * * *"'))
    added = sandbox.run("schedule", "add", "tick.yaml", "--name", "morning")
    assert added.returncode == 0, added.stderr
    assert "scheduled morning: cron \"0 9 * * *\", catch_up latest, starts pipeline tick.yaml" in added.stdout
    assert "first run: morning/" in added.stdout
    listed = sandbox.run("schedule", "ls")
    assert listed.stdout.splitlines()[0].split() == ["NAME", "WHEN", "CATCH_UP", "STARTS", "LAST", "TICK", "NEXT"]
    assert "morning" in listed.stdout
    assert "paused" in sandbox.run("schedule", "pause", "morning").stdout
    assert json.loads(sandbox.run("schedule", "ls", "--json").stdout)[0]["paused"] is True
    resumed = sandbox.run("schedule", "resume", "morning")
    assert resumed.returncode == 0 and "next" in resumed.stdout
    assert sandbox.run("schedule", "rm", "morning").stdout.strip() == "removed schedule morning"
    gone = sandbox.run("schedule", "rm", "morning")
    assert gone.returncode == 2 and "no schedule named 'morning'" in gone.stderr
    assert "no schedules" in sandbox.run("schedule", "ls").stdout


def test_schedule_add_points_at_the_bad_line(sandbox: Any, start_worker: Any) -> None:
    sandbox.write("bad.yaml", PIPELINE.format(catch_up="latest").replace("every: 1s", "every: soon"))
    result = sandbox.run("schedule", "add", "bad.yaml")
    assert result.returncode == 2
    assert result.stderr.startswith("error: bad.yaml:3: schedule.every: 'soon' is not a duration")
    sandbox.write("bool.yaml", PIPELINE.format(catch_up="latest").replace("every: 1s", "every: true"))
    result = sandbox.run("schedule", "add", "bool.yaml")  # it said "True is not a duration"
    assert (result.returncode, result.stderr) == (2, "error: bool.yaml:3: schedule.every: expected a duration (a "
                                                     "number of seconds, or text such as 30s, 5m, 1h30m or 1d), got "
                                                     "true (true/false)\n")
    sandbox.write("none.yaml", PIPELINE.format(catch_up="latest").replace("schedule: {every: 1s, catch_up: latest}\n",
                                                                          ""))
    result = sandbox.run("schedule", "add", "none.yaml")
    assert result.returncode == 2 and "has no schedule: block" in result.stderr
    assert sandbox.run("schedule", "ls").stdout.startswith("no schedules")


@pytest.mark.parametrize("every, problem", [
    (".nan", "schedule.every: nan is not a finite number of seconds"),
    (".inf", "schedule.every: inf is not a finite number of seconds"),
    ("100000000000000000000000000", "schedule.every: 100000000000000000000000000 is too long; at most 36500d"),
    ("36501d", "schedule.every: '36501d' is too long; at most 36500d"),
])
def test_schedule_add_refuses_an_interval_that_is_not_finite_or_too_long(sandbox: Any, every: str,
                                                                        problem: str) -> None:
    sandbox.write("bad.yaml", PIPELINE.format(catch_up="latest").replace("every: 1s", f"every: {every}"))
    result = sandbox.run("schedule", "add", "bad.yaml")
    assert result.returncode == 2 and result.stderr.startswith(f"error: bad.yaml:3: {problem}"), result.stderr
    assert "Traceback" not in result.stderr
    if every.startswith("."):  # a grace may be long, but not nan or infinite
        sandbox.write("grace.yaml", PIPELINE.format(catch_up=f"none, grace: {every}"))
        result = sandbox.run("schedule", "add", "grace.yaml")
        assert result.returncode == 2 and result.stderr.startswith(
            f"error: grace.yaml:3: schedule.grace: must be a finite number of seconds, got {every[1:]}"), result.stderr
    assert sandbox.run("schedule", "ls").stdout.startswith("no schedules")


def test_a_schedule_this_vow_cannot_read_is_named_and_the_others_still_list(sandbox: Any) -> None:
    # A schedule stored by a newer vow (a catch-up policy this one lacks), or in a time zone this
    # machine's tzdata lacks: `schedule ls` had failed as a whole, naming neither the schedule nor
    # the cause, and `schedule pause` had paused it and then failed (exit 2 after the write).
    from vow.schedules.definition import Definition, WorkflowTarget
    from vow.schedules.record import ScheduleRecord
    from vow.schedules.timing import Timing

    sandbox.write("tick.yaml", PIPELINE.format(catch_up="latest"))
    assert sandbox.run("schedule", "add", "tick.yaml", "--name", "good").returncode == 0
    text = Definition(Timing(every=60), WorkflowTarget("job")).to_json()
    store = SQLiteStore(sandbox.store_file)
    try:
        store.put_schedule(ScheduleRecord("newer", text.replace('"latest"', '"fair"'), cursor=0.0))
        # A cron one: an interval's zone is never read (it ticks in UTC whatever was stored with it).
        cron = Definition(Timing(cron="* * * * *"), WorkflowTarget("job")).to_json()
        store.put_schedule(ScheduleRecord("zone", cron.replace('"UTC"', '"Mars/Olympus_Mons"'), cursor=0.0))
    finally:
        store.close()
    listed = sandbox.run("schedule", "ls")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["good"]
    assert "schedule 'newer' cannot be read by this vow: catch_up: 'fair' is not a policy" in listed.stderr
    assert "schedule 'zone' cannot be read by this vow: timezone: 'Mars/Olympus_Mons'" in listed.stderr
    assert [s["name"] for s in json.loads(sandbox.run("schedule", "ls", "--json").stdout)] == ["good"]
    paused = sandbox.run("schedule", "pause", "newer")
    assert paused.returncode == 2 and "schedule 'newer' cannot be read by this vow" in paused.stderr
    assert "vow schedule rm newer" in paused.stderr
    store = SQLiteStore(sandbox.store_file)
    try:
        assert store.schedule("newer").paused is False  # refused, so nothing written
    finally:
        store.close()
    assert sandbox.run("schedule", "rm", "newer").returncode == 0


def test_schedule_ls_shows_no_last_tick_until_a_tick_has_run(sandbox: Any, start_worker: Any) -> None:
    """The cursor `schedule add` stores is the latest tick before the add, so that none before it
    starts: `schedule ls` showed it as LAST TICK (and --json as last_tick), a tick that never ran."""
    sandbox.write("tick.yaml", PIPELINE.format(catch_up="latest"))
    added = sandbox.run("schedule", "add", "tick.yaml", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["last_tick"] is None
    listed = sandbox.run("schedule", "ls")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert row[header.index("LAST TICK"):].split()[0] == "-", listed.stdout
    assert json.loads(sandbox.run("schedule", "ls", "--json").stdout)[0]["last_tick"] is None

    worker = start_worker()
    try:
        wait_until(lambda: _resolved(sandbox), 60, "a tick ran", proc=worker.proc, interval=0.1)
    finally:
        worker.stop()
    last = json.loads(sandbox.run("schedule", "ls", "--json").stdout)[0]["last_tick"]
    assert last is not None and parse_tick_text(last) in _runs(sandbox)  # a tick that started its run
