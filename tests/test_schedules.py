"""Schedules in one process: when they tick, which ticks a look starts, and how ticks become runs.

The clock of a look is given (``Ticker(clock=...)``), so every catch-up policy is checked on
exact times; the runs are real runs in a real SQLite file. Real worker processes sharing a
store are in ``tests/cli/test_schedule.py``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from calendar import timegm
from pathlib import Path
from typing import Any

import pytest

from vow import Vow
from vow.errors import ConfigError
from vow.pipeline.source import SpecError
from vow.schedules import manage
from vow.schedules import ticker as ticker_module
from vow.schedules.definition import Definition, WorkflowTarget, due, run_id
from vow.schedules.record import ScheduleRecord
from vow.schedules.ticker import Ticker
from vow.schedules.timing import Timing, parse_every, parse_tick_text, tick_text
from vow.stores.sqlite import _MIGRATIONS, SQLiteStore

T0 = float(timegm((2025, 1, 6, 12, 0, 0)))  # a Monday, 12:00:00 UTC


def utc(*fields: int) -> float:
    return float(timegm((*fields, 0, 0, 0)[:6]))


# -- timing ------------------------------------------------------------------------------------

def test_an_interval_ticks_at_multiples_of_its_length_since_the_epoch() -> None:
    every = Timing(every=30)
    assert every.latest(T0 + 7) == T0 and every.after(T0 + 7) == T0 + 30
    assert every.latest(T0) == T0 and every.after(T0) == T0 + 30
    assert every.between(T0 - 60, T0 + 45, 10) == [T0 - 30, T0, T0 + 30]
    assert every.between(T0 - 600, T0, 3) == [T0 - 570, T0 - 540, T0 - 510]
    assert Timing(every=3600).latest(T0 + 1800) == T0  # on the hour


def test_cron_ticks_in_its_time_zone() -> None:
    paris = Timing(cron="0 9 * * *", timezone="Europe/Paris")
    assert paris.after(T0) == utc(2025, 1, 7, 8, 0, 0)  # 09:00 in Paris is 08:00 UTC in winter
    assert paris.latest(T0) == utc(2025, 1, 6, 8, 0, 0)
    assert paris.after(utc(2025, 7, 1, 12, 0, 0)) == utc(2025, 7, 2, 7, 0, 0)  # and 07:00 UTC in summer
    weekdays = Timing(cron="*/15 9-17 * * MON-FRI")
    assert weekdays.between(utc(2025, 1, 10, 17, 0, 0), utc(2025, 1, 13, 9, 20, 0), 10) == [
        utc(2025, 1, 10, 17, 15, 0), utc(2025, 1, 10, 17, 30, 0), utc(2025, 1, 10, 17, 45, 0),
        utc(2025, 1, 13, 9, 0, 0), utc(2025, 1, 13, 9, 15, 0)]  # Friday evening, then Monday morning
    assert Timing(cron="* * * * * *").between(T0, T0 + 3, 10) == [T0 + 1, T0 + 2, T0 + 3]  # seconds first


def test_cron_across_daylight_saving_time_runs_once() -> None:
    paris = Timing(cron="30 2 * * *", timezone="Europe/Paris")
    # 2025-03-30: clocks go from 02:00 to 03:00; the 02:30 job runs at the first moment after (03:00).
    assert paris.after(utc(2025, 3, 29, 23, 0, 0)) == utc(2025, 3, 30, 1, 0, 0)
    # 2025-10-26: 02:00-03:00 happens twice; the 02:30 job runs once.
    night = paris.between(utc(2025, 10, 25, 22, 0, 0), utc(2025, 10, 26, 6, 0, 0), 10)
    assert night == [utc(2025, 10, 26, 0, 30, 0)]


@pytest.mark.parametrize("cron, timezone, night", [
    ("30 2 * * *", "Europe/Paris", (2025, 10, 26)),  # 02:00-03:00 happens twice
    ("15 1-3 * * *", "America/New_York", (2025, 11, 2)),  # 01:00-02:00 happens twice
    ("30 2 * * *", "Europe/Paris", (2025, 3, 30)),  # 02:00-03:00 never happens
    ("30 * * * *", "Australia/Lord_Howe", (2025, 4, 6)),  # a half-hour shift: 01:30-02:00 happens twice
    ("30 * * * *", "Australia/Lord_Howe", (2025, 10, 5)),  # 02:00-02:30 never happens
    ("*/10 * * * *", "Australia/Lord_Howe", (2025, 4, 6)),
])
def test_the_latest_tick_is_the_last_forward_tick_through_a_daylight_saving_night(
        cron: str, timezone: str, night: tuple[int, int, int]) -> None:
    timing = Timing(cron=cron, timezone=timezone)
    start = utc(*night, 0, 0, 0) - 86400
    ticks = timing.between(start - 3 * 86400, start + 3 * 86400, 10_000)
    for minute in range(0, 2 * 86400, 60):
        at = start + minute
        assert timing.latest(at) == max(t for t in ticks if t <= at), tick_text(at)


def test_a_schedule_added_in_the_repeated_hour_does_not_start_the_tick_before_it() -> None:
    paris = Definition(Timing(cron="30 2 * * *", timezone="Europe/Paris"), WorkflowTarget("job"))
    added = utc(2025, 10, 26, 1, 10, 0)  # 02:10 the second time (CET): the 02:30 tick ran an hour ago
    cursor = paris.timing.latest(added)  # what vow schedule add and resume store
    assert cursor == utc(2025, 10, 26, 0, 30, 0)
    assert due(paris, cursor, utc(2025, 10, 26, 1, 40, 0)) == ([], cursor)  # nothing until the next day
    assert due(paris, cursor, utc(2025, 10, 27, 1, 30, 0))[0] == [utc(2025, 10, 27, 1, 30, 0)]


@pytest.mark.parametrize("fields, problem", [
    ({"cron": "* *"}, "has 2 fields; expected 5"),
    ({"cron": "61 * * * *"}, "is not a cron expression (Bad minute)"),
    ({"every": 0}, "is not a whole number of seconds of at least 1"),
    ({}, "exactly one of cron"),
    ({"cron": "* * * * *", "every": 5}, "exactly one of cron"),
    ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "is not a known IANA time zone"),
    ({"every": 86400, "timezone": "Europe/Paris"}, "timezone: applies to cron only"),
])
def test_bad_timing_says_what_is_allowed(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        Timing(**fields)


def test_intervals_and_tick_texts() -> None:
    assert parse_every("1h30m") == 5400 and parse_every(45) == 45
    for bad in ("0s", "1.5s", "soon"):
        with pytest.raises(ConfigError):
            parse_every(bad)
    assert tick_text(T0) == "2025-01-06T12:00:00Z" and parse_tick_text("2025-01-06T12:00:00Z") == T0
    assert run_id("nightly", T0) == "nightly/2025-01-06T12:00:00Z"


# -- which ticks a look starts -----------------------------------------------------------------

def _definition(catch_up: str = "latest", every: int = 10, grace: float = 60.0) -> Definition:
    return Definition(Timing(every=every), WorkflowTarget("job"), catch_up, grace)  # type: ignore[arg-type]


@pytest.mark.parametrize("catch_up, every, now, started, cursor", [
    ("all", 10, T0 + 5, [], T0),  # nothing due yet
    ("all", 10, T0 + 10, [T0 + 10], T0 + 10),  # on time: every policy starts it
    ("latest", 10, T0 + 10, [T0 + 10], T0 + 10),
    ("none", 10, T0 + 10, [T0 + 10], T0 + 10),
    ("all", 10, T0 + 35, [T0 + 10, T0 + 20, T0 + 30], T0 + 30),  # after downtime: every missed tick
    ("latest", 10, T0 + 35, [T0 + 30], T0 + 30),  # only the most recent
    ("none", 10, T0 + 35, [T0 + 30], T0 + 30),  # the most recent is 5 s late: within the grace
    ("none", 100, T0 + 165, [], T0 + 100),  # ... but not 65 s late: skipped, and the cursor moves on
    ("latest", 100, T0 + 165, [T0 + 100], T0 + 100),
])
def test_catch_up_policies(catch_up: str, every: int, now: float, started: list[float], cursor: float) -> None:
    assert due(_definition(catch_up, every=every), T0, now) == (started, cursor)


def test_a_schedule_without_a_cursor_starts_from_its_next_tick() -> None:
    assert due(_definition("all"), None, T0 + 35) == ([], T0 + 30)


def test_catch_up_all_starts_a_bounded_number_per_look() -> None:
    ticks, cursor = due(_definition("all", every=1), T0, T0 + 1000)
    assert len(ticks) == 100 and ticks[0] == T0 + 1 and cursor == T0 + 100


# -- ticks become runs -------------------------------------------------------------------------

class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _job(ctx: Any, x: int) -> Any:
    return x * 2
    yield  # a workflow


@pytest.fixture
def client(tmp_path: Path) -> Any:
    vow = Vow(f"sqlite:{tmp_path / 'vow.sqlite'}")
    vow.register(_job, name="job")
    yield vow
    vow.close()


def _runs(vow: Any) -> list[str]:
    return sorted(r.id for r in vow.store.runs(limit=1000))


def _put(vow: Any, catch_up: str = "latest", *, cursor: float | None = T0, every: int = 10, **more: Any) -> None:
    definition = Definition(Timing(every=every), WorkflowTarget("job", "[21]"), catch_up, **more)  # type: ignore
    vow.store.put_schedule(ScheduleRecord("job", definition.to_json(), cursor=cursor))


@pytest.mark.parametrize("catch_up, expected", [
    ("all", ["job/2025-01-06T12:00:10Z", "job/2025-01-06T12:00:20Z", "job/2025-01-06T12:00:30Z"]),
    ("latest", ["job/2025-01-06T12:00:30Z"]),
    ("none", ["job/2025-01-06T12:00:30Z"]),
])
def test_a_look_after_downtime_stores_runs_by_the_policy(client: Any, catch_up: str, expected: list[str]) -> None:
    _put(client, catch_up)
    clock = Clock(T0 + 35)
    ticker = Ticker(client, every=0, clock=clock)
    assert ticker.look() == len(expected)
    assert _runs(client) == expected
    record = client.get(expected[0])
    assert (record.func, record.args, record.state.value) == ("job", "[21]", "pending")
    assert client.store.schedule("job").cursor == T0 + 30
    assert ticker.look() == 0  # nothing new is due
    clock.now = T0 + 40
    assert ticker.look() == 1 and client.store.schedule("job").cursor == T0 + 40


def test_none_skips_a_tick_later_than_its_grace(client: Any) -> None:
    _put(client, "none", grace=2.0)
    assert Ticker(client, every=0, clock=Clock(T0 + 35)).look() == 0
    assert _runs(client) == [] and client.store.schedule("job").cursor == T0 + 30


def test_ticks_started_by_two_workers_at_once_are_one_run_each(tmp_path: Path) -> None:
    clients = [Vow(f"sqlite:{tmp_path / 'vow.sqlite'}") for _ in range(2)]
    try:
        for c in clients:
            c.register(_job, name="job")
        _put(clients[0], "all")
        clock = Clock(T0)
        tickers = [Ticker(c, every=0, clock=clock) for c in clients]
        for second in range(1, 50):
            clock.now = T0 + second
            for ticker in (tickers if second % 2 else reversed(tickers)):
                ticker.look()
        assert _runs(clients[0]) == [run_id("job", T0 + 10 * n) for n in range(1, 5)]
    finally:
        for c in clients:
            c.close()


def test_a_tick_whose_run_was_stored_before_a_crash_joins_it(client: Any) -> None:
    _put(client, "all")
    client.submit(run_id("job", T0 + 10), "job", 21)  # stored, then the worker died before moving the cursor
    assert Ticker(client, every=0, clock=Clock(T0 + 15)).look() == 1
    assert _runs(client) == [run_id("job", T0 + 10)] and client.store.schedule("job").cursor == T0 + 10


def test_a_paused_schedule_starts_nothing_and_resumes_from_its_next_tick(client: Any) -> None:
    _put(client, "all", cursor=client.store.now() - 100)
    manage.pause(client.store, "job")
    assert Ticker(client, every=0).look() == 0
    resumed = manage.resume(client.store, "job")
    assert resumed.cursor is not None and resumed.cursor >= client.store.now() - 10  # paused ticks skipped
    assert Ticker(client, every=0).look() == 0 and _runs(client) == []


def test_resuming_a_schedule_that_is_not_paused_skips_none_of_its_due_ticks(client: Any) -> None:
    # No worker ran for a while; "resume" on a schedule nobody paused (run to be sure, after an
    # outage) had moved its cursor to now, so catch_up: all started none of the ticks it missed.
    _put(client, "all")
    resumed = manage.resume(client.store, "job")
    assert not resumed.paused and resumed.cursor == T0
    assert Ticker(client, every=0, clock=Clock(T0 + 35)).look() == 3 and len(_runs(client)) == 3


def test_a_tick_of_a_workflow_this_worker_lacks_is_left_for_one_that_has_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:{tmp_path / 'vow.sqlite'}"
    with Vow(url) as without, Vow(url) as with_it:
        with_it.register(_job, name="job")
        _put(without, "all")
        clock = Clock(T0 + 12)
        lacking = Ticker(without, every=0, clock=clock)
        with caplog.at_level(logging.WARNING, logger="vow.schedules"):
            assert lacking.look() == 0
            assert lacking.look() == 0
        said = [r.getMessage() for r in caplog.records if "not registered in this worker" in r.getMessage()]
        assert len(said) == 1  # said once, not at every look
        assert without.store.schedule("job").cursor == T0  # still due
        assert Ticker(with_it, every=0, clock=clock).look() == 1
        assert _runs(with_it) == [run_id("job", T0 + 10)]


def test_vow_schedule_stores_a_python_schedule_and_a_worker_runs_its_ticks(client: Any) -> None:
    info = client.schedule("twice", "job", every="2s", args=[4])
    assert info.definition.timing == Timing(every=2) and info.next_run_id.startswith("twice/")
    record = client.store.schedule("twice")
    client.store.put_schedule(ScheduleRecord(record.name, record.definition, cursor=T0))  # as if added at T0
    Ticker(client, every=0, clock=Clock(T0 + 2)).look()
    rid = run_id("twice", T0 + 2)
    assert client.run(rid, "job", 4) == 8  # the stored run, with its arguments, joined by id
    with pytest.raises(ConfigError, match="not a usable schedule name"):
        client.schedule("no/slash", "job", every=5)
    with pytest.raises(ConfigError, match="no workflow named 'missing'"):
        client.schedule("x", "missing", every=5)
    with pytest.raises(ConfigError, match="catch_up"):
        client.schedule("x", "job", every=5, catch_up="sometimes", args=[1])


@pytest.mark.parametrize("given, problem", [
    # args="eu" for args=["eu"]: every tick had started job('e', 'u') and failed
    (dict(every=5, args="eu"), "args takes a list of the workflow's arguments, got 'eu'"),
    (dict(every=5, args=[1, 2]), "workflow 'job' cannot be called with args=[1, 2], kwargs={}"),
    (dict(every=5, kwargs={"y": 1}), "workflow 'job' cannot be called with args=[], kwargs={'y': 1}"),
    (dict(every=5, timezone=None, args=[1]), "timezone: None is not a known IANA time zone"),
    (dict(cron=5, args=[1]), "cron: 5 is not a cron expression"),
])
def test_a_python_schedule_that_no_tick_could_start_is_refused(client: Any, given: dict[str, Any],
                                                               problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        client.schedule("bad", "job", **given)
    assert problem in str(caught.value)
    assert client.store.schedule("bad") is None


def test_adding_again_keeps_progress_unless_the_timing_changed(client: Any) -> None:
    client.schedule("s", "job", every=10, args=[1])
    client.store.advance_schedule("s", client.store.now() + 1000)
    kept = client.schedule("s", "job", every=10, args=[2])
    assert kept.cursor is not None and kept.cursor > client.store.now() + 900
    changed = client.schedule("s", "job", every=20, args=[2])
    assert changed.cursor is not None and changed.cursor <= client.store.now()


# -- pipelines ---------------------------------------------------------------------------------

PIPELINE = """\
version: 1
name: digest
schedule: {every: 10s, catch_up: all}
output: "out/{{ run.slug }}"
fan_out:
  - channel: slack
    to: "#daily"
    body: "digest of {{ schedule.tick or 'now' }} by {{ schedule.name or 'hand' }}"
"""


def test_a_pipeline_tick_is_planned_with_its_tick_and_its_own_output(client: Any, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "digest.yaml"
    file.write_text(PIPELINE)
    monkeypatch.chdir(tmp_path)
    info = manage.add_pipeline(client.store, "digest.yaml", plugins=client.plugins)
    assert info.name == "digest" and info.definition.kind == "pipeline"
    record = client.store.schedule("digest")
    client.store.put_schedule(ScheduleRecord(record.name, record.definition, cursor=T0))
    monkeypatch.chdir(tmp_path.parent)  # another working directory: the stored one still counts
    file.write_text("edited: after it was added")  # the stored text counts, not the file
    assert Ticker(client, every=0, clock=Clock(T0 + 25)).look() == 2
    spec = client.store.get(run_id("digest", T0 + 10)).args
    assert "digest of 2025-01-06T12:00:10Z by digest" in spec
    assert f'"output":"{tmp_path / "out" / "digest-2025-01-06T12-00-10Z"}"' in spec  # each tick its own


def _digest_from_t0(client: Any, tmp_path: Path, text: str) -> None:
    """Schedule pipeline ``text`` as ``digest`` (from digest.yaml), its cursor at T0."""
    file = tmp_path / "digest.yaml"
    file.write_text(text)
    manage.add_pipeline(client.store, str(file), plugins=client.plugins)
    record = client.store.schedule("digest")
    client.store.put_schedule(ScheduleRecord(record.name, record.definition, cursor=T0))


def test_a_pipeline_tick_starts_its_run_with_the_files_timeout(client: Any, tmp_path: Path) -> None:
    _digest_from_t0(client, tmp_path, PIPELINE.replace("output:", "timeout: 45s\noutput:"))
    assert Ticker(client, every=0, clock=Clock(T0 + 10)).look() == 1
    run = client.store.get(run_id("digest", T0 + 10))
    assert run.state.value == "pending" and run.timeout - run.created_at == pytest.approx(45.0)  # the run's deadline


def test_a_pipeline_without_a_schedule_block_or_with_a_bad_one_is_refused_at_its_line(client: Any,
                                                                                       tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text(PIPELINE.replace("schedule: {every: 10s, catch_up: all}\n", ""))
    with pytest.raises(SpecError, match="has no schedule: block"):
        manage.add_pipeline(client.store, str(file), plugins=client.plugins)
    file.write_text(PIPELINE.replace("{every: 10s, catch_up: all}", '{cron: "61 * * * *"}'))
    with pytest.raises(SpecError, match=r"p.yaml:3: schedule.cron: '61 \* \* \* \*' is not a cron expression"):
        manage.add_pipeline(client.store, str(file), plugins=client.plugins)
    file.write_text(PIPELINE.replace("catch_up: all", "catch_up: sometimes"))
    with pytest.raises(SpecError, match=r"p.yaml:3: schedule.catch_up"):
        manage.add_pipeline(client.store, str(file), plugins=client.plugins)
    file.write_text(PIPELINE.replace("catch_up: all", "catch_up: all, grace: 5s"))
    with pytest.raises(SpecError, match="grace: applies to catch_up: none only"):
        manage.add_pipeline(client.store, str(file), plugins=client.plugins)
    file.write_text(PIPELINE.replace("catch_up: all", "catch_up: none, grace: -5"))
    with pytest.raises(SpecError, match=r"p.yaml:3: schedule.grace: -5 is negative$"):  # the key said once
        manage.add_pipeline(client.store, str(file), plugins=client.plugins)
    assert client.store.schedules() == []


# -- the store format --------------------------------------------------------------------------

def test_a_format_2_file_is_upgraded_in_place_keeping_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    for step in (1, 2):
        for statement in _MIGRATIONS[step]:
            con.execute(statement)
    con.execute("INSERT INTO promises VALUES ('r', 'resolved', 'workflow', 'r', 'f', '[]', '1', NULL, NULL, 'r', 1, "
                "1.0, 2.0, '{}')")
    con.execute("PRAGMA user_version = 2")
    con.commit()
    con.close()
    store = SQLiteStore(path)
    try:
        assert store.get("r").value == "1"
        store.put_schedule(ScheduleRecord("s", "{}"))
        assert [s.name for s in store.schedules()] == ["s"]
        assert store.take_token("b", 1.0, 1) == 0.0
    finally:
        store.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 3
    con.close()  # Python 3.13 warns of a connection collected open


def test_a_tick_that_cannot_be_planned_is_stored_as_failed_and_the_later_ticks_go_on(
        client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The template fails for the tick T0 + 10 only, wherever it is planned: with catch_up: all that
    # tick stayed due for ever, and every later tick waited behind it.
    bad = int(T0 + 10)
    _digest_from_t0(client, tmp_path, PIPELINE.replace("by {{ schedule.name or 'hand' }}",
                                       f"{{{{ 1 // 0 if schedule.time == {bad} else 'ok' }}}}"))
    clock = Clock(T0 + 25)
    ticker = Ticker(client, every=0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="vow.schedules"):
        assert ticker.look() == 0  # left a while for a worker that could start it
        assert client.store.schedule("digest").cursor == T0 and _runs(client) == []
        clock.now = T0 + 25 + ticker_module.LEFT_FOR
        ticker.look()
    failed = client.store.get(run_id("digest", T0 + 10))
    assert failed is not None and failed.state.value == "rejected"
    assert "ZeroDivisionError" in client.codec.decode(failed.value).args[0]
    assert _runs(client) == [run_id("digest", T0 + 10 * n) for n in range(1, 9)]  # the later ticks started
    assert client.store.schedule("digest").cursor == T0 + 80
    said = [r.getMessage() for r in caplog.records if "2025-01-06T12:00:10Z" in r.getMessage()]
    assert len(said) == 2 and "stored as failed" in said[1]
    info = manage.listing(client.store)[0]
    assert info.cursor == T0 + 80


def test_a_tick_stored_as_failed_cannot_be_retried_or_forked_and_says_why(client: Any, tmp_path: Path) -> None:
    # Such a run was never planned (no plan, no arguments): vow retry made a new run that failed with
    # "expected a mapping (a pipeline's plan), got nothing" and stayed in vow ls.
    from vow.forking import fork, retry

    _digest_from_t0(client, tmp_path, PIPELINE.replace("by {{ schedule.name or 'hand' }}",
                                       f"{{{{ 1 // 0 if schedule.time == {int(T0 + 10)} else 'ok' }}}}"))
    clock = Clock(T0 + 15)
    ticker = Ticker(client, every=0, clock=clock)
    ticker.look()
    clock.now += ticker_module.LEFT_FOR
    ticker.look()
    failed = run_id("digest", T0 + 10)
    assert client.store.get(failed).state.value == "rejected"
    for attempt in (lambda: retry(client.store, failed), lambda: fork(client.store, failed, failed)):
        with pytest.raises(ConfigError, match=r"never started: its schedule's tick could not be planned "
                                              r"\(.*ZeroDivisionError.*\)"):
            attempt()
    assert [r.id for r in client.store.search(roots_only=True) if "/retry-" in r.id or "/fork-" in r.id] == []


@pytest.mark.parametrize("error", [TypeError("a plugin's options class broke"), RuntimeError("plugin bug")])
def test_a_tick_whose_planning_raises_any_error_is_stored_as_failed_and_the_schedule_goes_on(
        client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    # Only a ConfigError took the way to a failed run: any other error from planning left the schedule
    # out of every look, for ever, with catch_up: all stalling every later tick.
    import vow.pipeline.plan as plan_module

    _digest_from_t0(client, tmp_path, PIPELINE)
    real = plan_module.make_plan

    def make_plan(*args: Any, **kwargs: Any) -> Any:
        if kwargs["tick"]["time"] == T0 + 10:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(plan_module, "make_plan", make_plan)
    clock = Clock(T0 + 25)
    ticker = Ticker(client, every=0, clock=clock)
    ticker.look()
    clock.now += ticker_module.LEFT_FOR
    ticker.look()
    assert client.store.get(run_id("digest", T0 + 10)).state.value == "rejected"
    assert run_id("digest", T0 + 20) in _runs(client)


def test_every_with_a_time_zone_is_refused_at_its_line_and_a_stored_one_still_ticks(client: Any,
                                                                                    tmp_path: Path) -> None:
    # every: ticks at the same instants in every zone; the zone used to be taken and ignored, so
    # "every: 1d, timezone: Europe/Paris" ticked at 00:00 UTC, not at midnight in Paris.
    file = tmp_path / "p.yaml"
    file.write_text(PIPELINE.replace("{every: 10s, catch_up: all}", "{every: 1d, timezone: Europe/Paris}"))
    with pytest.raises(SpecError, match=r"p.yaml:3: schedule.timezone: applies to cron only .*cron: \"0 0 \* \* \*\""):
        manage.add_pipeline(client.store, str(file), plugins=client.plugins)
    with pytest.raises(ConfigError, match="timezone: applies to cron only"):
        client.schedule("s", "job", every="1d", timezone="Europe/Paris", args=[1])
    assert client.store.schedules() == []
    assert client.schedule("s", "job", every="1d", timezone="UTC", args=[1]).definition.timing.every == 86400
    # A schedule stored by an earlier vow with both keeps ticking as it did: every day at 00:00 UTC.
    old = ('{"catch_up":"latest","grace":60.0,"timing":{"cron":null,"every":86400,"timezone":"Europe/Paris"},'
           '"workflow":"job","args":"[21]"}')
    client.store.put_schedule(ScheduleRecord("old", old, cursor=T0 - 43200))
    assert manage.listing(client.store)[0].next_tick == T0 + 43200
    assert Ticker(client, every=0, clock=Clock(T0 + 43201)).look() == 1
    assert run_id("old", T0 + 43200) in _runs(client)


@pytest.mark.parametrize("name", ["", "a b", "-x", "x" * 65, "x\n"])  # "$" matched before a final "\n"
def test_a_bad_schedule_name_is_refused_as_a_name(client: Any, tmp_path: Path, name: str) -> None:
    # '' was taken as no name (the file's was used instead); 'a b' was refused as "--id: 'a b/...' is
    # not a usable run id", an option the user never gave.
    file = tmp_path / "digest.yaml"
    file.write_text(PIPELINE)
    with pytest.raises(ConfigError, match=r"is not a usable schedule name \(1-64 letters"):
        manage.add_pipeline(client.store, str(file), plugins=client.plugins, name=name)
    assert client.store.schedules() == []


def test_a_look_through_a_half_hour_daylight_saving_shift_starts_the_ticks_and_fails_nothing(client: Any) -> None:
    # Lord Howe Island moves its clocks by 30 minutes. The reverse iteration gave a latest tick the
    # forward one never reaches, and due() raised IndexError at every look: the worker's loop stopped.
    timing = Timing(cron="30 * * * *", timezone="Australia/Lord_Howe")
    definition = Definition(timing, WorkflowTarget("job", "[21]"), "all")
    cursor = utc(2025, 4, 5, 14, 30, 0)  # 01:30 (+11:00), the first pass
    client.store.put_schedule(ScheduleRecord("job", definition.to_json(), cursor=cursor))
    clock = Clock(utc(2025, 4, 5, 15, 30, 0))  # 02:00 (+10:30): 01:30 came again in between
    ticker = Ticker(client, every=0, clock=clock)
    assert ticker.look() == 0 and client.store.schedule("job").cursor == cursor
    clock.now = utc(2025, 4, 5, 16, 0, 0)  # 02:30 (+10:30)
    assert ticker.look() == 1 and _runs(client) == [run_id("job", utc(2025, 4, 5, 16, 0, 0))]


def test_ticks_that_no_worker_can_plan_for_a_minute_are_stored_as_failed_without_waiting_each(
        client: Any, tmp_path: Path) -> None:
    # Every tick of 2025 fails: each waited its own minute, so a 10 s schedule fell further behind
    # at every tick instead of going on.
    _digest_from_t0(client, tmp_path, PIPELINE.replace("by {{ schedule.name or 'hand' }}",
                                       "{{ 1 // 0 if schedule.time < 1750000000 else 'ok' }}"))
    clock = Clock(T0 + 25)
    ticker = Ticker(client, every=0, clock=clock)
    assert ticker.look() == 0 and _runs(client) == []
    clock.now = T0 + 25 + ticker_module.LEFT_FOR
    ticker.look()
    assert _runs(client) == [run_id("digest", T0 + 10 * n) for n in range(1, 9)]
    assert {client.store.get(rid).state.value for rid in _runs(client)} == {"rejected"}
    assert client.store.schedule("digest").cursor == T0 + 80


def test_a_worker_that_cannot_plan_a_tick_leaves_it_to_one_that_can_tick_after_tick(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Worker A lacks what every tick needs (here: an input it refuses), worker B has it. A's minute must
    # start again for each tick B goes on with, or A stores B's next tick as failed before B sees it.
    from vow.pipeline import plan as plan_module

    url = f"sqlite:{tmp_path / 'vow.sqlite'}"
    file = tmp_path / "digest.yaml"
    file.write_text(PIPELINE.replace("{every: 10s, catch_up: all}", "{every: 100s, catch_up: all}"))
    with Vow(url) as lacking, Vow(url) as able:
        manage.add_pipeline(able.store, str(file), plugins=able.plugins)
        record = able.store.schedule("digest")
        able.store.put_schedule(ScheduleRecord(record.name, record.definition, cursor=T0))
        real = plan_module.make_plan

        without = threading.Event()  # set while A looks: the clients share one plugin registry

        def make_plan(*args: Any, **kwargs: Any) -> Any:
            if without.is_set():
                raise ConfigError("missing secret: set the environment variable SLACK_TOKEN")
            return real(*args, **kwargs)

        def look_without(ticker: Ticker) -> int:
            without.set()
            try:
                return ticker.look()
            finally:
                without.clear()

        monkeypatch.setattr(plan_module, "make_plan", make_plan)
        clock = Clock(T0 + 100)
        a, b = Ticker(lacking, every=0, clock=clock), Ticker(able, every=0, clock=clock)
        assert look_without(a) == 0
        clock.now = T0 + 150
        assert b.look() == 1  # B starts the tick A could not
        clock.now = T0 + 200  # the next tick: A, first again, a minute after its first failure
        assert look_without(a) == 0
        assert b.look() == 1
        runs = [lacking.store.get(rid) for rid in _runs(lacking)]
        assert [(r.id, r.state.value) for r in runs] == [(run_id("digest", T0 + 100), "pending"),
                                                         (run_id("digest", T0 + 200), "pending")]


def test_a_schedule_that_breaks_a_look_stops_neither_the_others_nor_the_worker(
        client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # An unexpected error in one schedule (the IndexError of a Lord Howe night was one) went out of
    # Ticker.look, which catches store errors only, and ended vow worker's loop.
    from vow.schedules import definition as definition_module

    _put(client, "all")
    client.store.put_schedule(ScheduleRecord("other", Definition(Timing(every=10), WorkflowTarget("job", "[1]"),
                                                                 "all").to_json(), cursor=T0))
    real = definition_module.due

    def due(definition: Definition, cursor: float | None, now: float) -> Any:
        if definition.target.args == "[21]":  # schedule "job"
            raise IndexError("list index out of range")
        return real(definition, cursor, now)

    monkeypatch.setattr(ticker_module, "due", due)
    ticker = Ticker(client, every=0, clock=Clock(T0 + 15))
    with caplog.at_level(logging.WARNING, logger="vow.schedules"):
        assert ticker.look() == 1
        assert ticker.look() == 0
    assert _runs(client) == [run_id("other", T0 + 10)]
    said = [r for r in caplog.records if "schedule job" in r.getMessage()]
    assert len(said) == 1 and "IndexError: list index out of range" in said[0].getMessage()


def test_a_workflow_tick_that_cannot_be_stored_is_failed_under_its_workflows_name(
        client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _put(client, "all")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ConfigError("refused for this tick")

    monkeypatch.setattr(client, "submit", refuse)
    clock = Clock(T0 + 10)
    ticker = Ticker(client, every=0, clock=clock)
    assert ticker.look() == 0
    clock.now = T0 + 10 + ticker_module.LEFT_FOR
    ticker.look()
    failed = client.store.get(run_id("job", T0 + 10))
    assert (failed.func, failed.state.value) == ("job", "rejected")
