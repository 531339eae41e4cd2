"""Adding, listing, pausing, resuming and removing schedules (``vow schedule``, ``Vow.schedule``).

Everything here works on the store alone, so a schedule added on one machine is fired by the
workers of every machine that shares the store. A schedule's first run is its first tick after it
was added; adding a schedule again under the same name replaces its definition, and keeps its
progress (and whether it is paused) when its timing did not change.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from vow.errors import ConfigError
from vow.schedules.definition import Definition, PipelineTarget, WorkflowTarget, check_name, run_id
from vow.schedules.record import ScheduleRecord
from vow.schedules.timing import Timing, parse_every, tick_text

if TYPE_CHECKING:
    from vow.plugins import Plugins

__all__ = ["ScheduleInfo", "add_pipeline", "add_workflow", "definition_of", "get", "listing", "pause", "put",
           "remove", "resume"]


@attrs.frozen
class ScheduleInfo:
    """A stored schedule as ``vow schedule ls`` shows it."""

    name: str
    definition: Definition
    paused: bool
    cursor: float | None
    """The last tick handled: fired, or skipped (by the catch-up policy, or as the latest tick before the
    schedule was added or resumed, so that it does not start)."""
    next_tick: float | None
    updated_at: float
    last_tick: float | None = None
    """The cursor when its tick started a run that is in the store; else ``None`` (no tick has run yet,
    or the last tick handled was skipped, or its run was pruned)."""

    @property
    def next_run_id(self) -> str | None:
        """The id of the run the next tick will start (``None`` while paused)."""
        return run_id(self.name, self.next_tick) if self.next_tick is not None else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        timing = self.definition.timing
        return {"name": self.name, "kind": self.definition.kind, "what": self.definition.what,
                "cron": timing.cron, "every": timing.every, "timezone": timing.timezone,
                "catch_up": self.definition.catch_up, "grace": self.definition.grace, "paused": self.paused,
                "last_tick": tick_text(self.last_tick) if self.last_tick is not None else None,
                "next_tick": tick_text(self.next_tick) if self.next_tick is not None else None,
                "next_run_id": self.next_run_id}


def definition_of(record: ScheduleRecord) -> Definition:
    """The definition stored in ``record``; a :class:`ConfigError` naming the schedule when this vow
    cannot read it (written by a newer vow, or in a time zone this machine's tzdata lacks)."""
    try:
        return Definition.from_json(record.definition)
    except ConfigError as exc:
        raise ConfigError(f"schedule {record.name!r} cannot be read by this vow: {exc} (vow schedule rm "
                          f"{record.name} removes it)") from None


def info(record: ScheduleRecord, now: float, store: Any = None) -> ScheduleInfo:
    """What ``record`` means at ``now``: its next tick is the first after its cursor (one in the past
    while no worker fires it). With ``store``, its last tick is the cursor if that tick's run is there."""
    definition = definition_of(record)
    next_tick = None
    if not record.paused:
        next_tick = definition.timing.after(record.cursor if record.cursor is not None else now)
    # The cursor alone is no tick that ran: adding or resuming a schedule sets it to the latest tick
    # before, which never starts (`vow schedule ls` showed it as LAST TICK just after `add`).
    last_tick = None
    if store is not None and record.cursor is not None and store.get(run_id(record.name, record.cursor)) is not None:
        last_tick = record.cursor
    return ScheduleInfo(record.name, definition, record.paused, record.cursor, next_tick, record.updated_at,
                        last_tick)


def listing(store: Any, *, problems: list[str] | None = None) -> list[ScheduleInfo]:
    """Every stored schedule, by name. One this vow cannot read raises a :class:`ConfigError` naming it;
    with ``problems``, it is left out and what is wrong with it appended there instead."""
    now = store.now()
    infos = []
    for record in store.schedules():
        try:
            infos.append(info(record, now, store))
        except ConfigError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
    return infos


def get(store: Any, name: str) -> ScheduleRecord:
    """The stored schedule ``name``; a :class:`ConfigError` naming the ones there are otherwise."""
    record: ScheduleRecord | None = store.schedule(name)
    if record is None:
        names = ", ".join(s.name for s in store.schedules()) or "none"
        raise ConfigError(f"no schedule named {name!r} in {store.url} (schedules: {names})")
    return record


def put(store: Any, name: str, definition: Definition) -> ScheduleInfo:
    """Store ``definition`` as schedule ``name`` (new, or replacing the stored one)."""
    check_name(name)
    existing = store.schedule(name)
    now = store.now()
    cursor: float | None = definition.timing.latest(now)
    paused = False
    if existing is not None:
        paused = existing.paused
        try:
            same_timing = Definition.from_json(existing.definition).timing == definition.timing
        except ConfigError:
            same_timing = False
        if same_timing:
            cursor = existing.cursor
    store.put_schedule(ScheduleRecord(name, definition.to_json(), paused, cursor))
    return info(get(store, name), now, store)


def add_pipeline(store: Any, file: str, *, plugins: Plugins, name: str | None = None,
                 input: Mapping[str, Any] | None = None, base_dir: str | None = None) -> ScheduleInfo:
    """Check pipeline ``file`` as a scheduled run would be planned (against ``plugins``, the registry
    the workers will run it with), and store its ``schedule:``.

    ``name`` defaults to the file's ``schedule.name``, else its pipeline name as a slug. The file's
    text and ``input`` are stored: later edits of the file change nothing until it is added again.
    """
    from vow.pipeline.plan import make_plan
    from vow.pipeline.source import read
    from vow.pipeline.templates import slug

    if name is not None:  # before planning, which would name it as a run id's first part
        check_name(name)
    source = read(file)
    now = time.time()
    sample = {"name": name or "schedule", "tick": tick_text(now), "time": now}
    plan = make_plan(source, input=input, run_id=f"{sample['name']}/{sample['tick']}", plugins=plugins, tick=sample)
    block = plan.schedule
    if block is None:
        raise source.error((), "has no schedule: block, so there is nothing to schedule; add one, such as "
                               "schedule: {cron: \"0 9 * * *\", timezone: Europe/Paris} or schedule: {every: 1h}")
    chosen = check_name(name if name is not None else block["name"] or slug(plan.name))
    timing = Timing(cron=block["cron"], every=block["every"], timezone=block["timezone"])
    first_tick = timing.after(now)
    first = {"name": chosen, "tick": tick_text(first_tick), "time": first_tick}
    # Plan once more as the first tick will be, so a template that fails only with the real name fails now.
    make_plan(source, input=input, run_id=run_id(chosen, first_tick), plugins=plugins, tick=first)
    target = PipelineTarget(file, source_text(file), dict(input or {}), base_dir or os.getcwd())
    definition = Definition(timing, target, block["catch_up"], block["grace"] or 60.0)
    return put(store, chosen, definition)


def source_text(file: str) -> str:
    """The text of ``file`` (already read once by the planner, so it exists and is UTF-8)."""
    with open(file, encoding="utf-8") as f:
        return f.read()


def add_workflow(store: Any, name: str, workflow: str, args_text: str, *, cron: str | None = None,
                 every: str | int | None = None, timezone: str = "UTC", catch_up: str = "latest",
                 grace: float | str | None = None) -> ScheduleInfo:
    """Store a schedule that starts registered ``workflow`` with ``args_text`` on every tick."""
    from vow.schedules.definition import parse_grace

    check_name(name)
    seconds = parse_every(every) if every is not None else None
    timing = Timing(cron=cron, every=seconds, timezone=timezone)
    definition = Definition(timing, WorkflowTarget(workflow, args_text), catch_up,  # type: ignore[arg-type]
                            parse_grace(grace) if grace is not None else 60.0)
    return put(store, name, definition)


def pause(store: Any, name: str) -> ScheduleInfo:
    """Stop firing ``name``'s ticks; the ticks that pass meanwhile are skipped."""
    record = get(store, name)
    definition_of(record)  # one this vow cannot read is refused before anything is written
    store.put_schedule(attrs.evolve(record, paused=True))
    return info(get(store, name), store.now(), store)


def resume(store: Any, name: str) -> ScheduleInfo:
    """Fire ``name``'s ticks again, from the next one (ticks that passed while paused are skipped).
    A schedule that is not paused is left as it is: its due ticks start by its catch-up policy."""
    record = get(store, name)
    now = store.now()
    if not record.paused:
        return info(record, now, store)
    latest = definition_of(record).timing.latest(now)
    cursor = latest if record.cursor is None else max(record.cursor, latest)
    store.put_schedule(attrs.evolve(record, paused=False, cursor=cursor))
    return info(get(store, name), now, store)


def remove(store: Any, name: str) -> None:
    """Delete schedule ``name`` (the runs it started stay)."""
    get(store, name)
    store.delete_schedule(name)
