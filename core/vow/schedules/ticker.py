"""What a worker does to fire schedules: look at the store a few times a second and start due ticks.

``Vow.worker`` calls :meth:`Ticker.look` on every turn of its loop. A look reads every schedule,
works out which ticks are due by the schedule's catch-up policy
(:func:`vow.schedules.definition.due`), stores each tick's run as a pending root — the same
create-or-get as :meth:`vow.Vow.submit` — and moves the schedule's cursor forward. The worker's
own loop, or any other worker's, then claims the run like any submitted one.

Exactly once, across any number of workers: a tick's run id is derived from the schedule and the
tick, so two workers that start the same tick create-or-get one run, and a worker that looks
again after another moved the cursor finds nothing due. A tick is never lost to a crash between
starting its run and moving the cursor: the next look starts it again, which joins the run.
A tick whose workflow is not registered in this worker is left due for a worker that has it, and
said once in the log. A pipeline tick that cannot be planned here (a template or an input refused
for that tick, a secret this machine lacks) is left for a worker that can start it for
:data:`LEFT_FOR` seconds; if none has by then, it is stored as a failed run (its id the tick's run
id, its error the planner's), said in the log, and the schedule goes on with its next ticks, so
one tick that fails wherever it is planned does not hold back every later one (``catch_up: all``).
The minute counts from the first tick of the schedule that failed here since one last started: the
next ticks that fail as well are stored as failed at once. Any other error in one schedule is said
once in the log and leaves that schedule out of the look: the others, and the worker, go on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from vow import encoding
from vow.errors import ArgumentMismatchError, ConfigError, StoreError, VowError
from vow.records import Kind, PromiseRecord, State
from vow.reserved import NEVER_STARTED
from vow.schedules.definition import Definition, PipelineTarget, due, run_id
from vow.schedules.record import ScheduleRecord
from vow.schedules.timing import tick_text

__all__ = ["LEFT_FOR", "LOOK_EVERY", "Ticker"]

_log = logging.getLogger("vow.schedules")

LOOK_EVERY = 0.2
"""Seconds between two looks at the schedules (a tick starts at most about this late)."""
LEFT_FOR = 60.0
"""Seconds a pipeline tick that cannot be planned here is left for another worker (one that has the
secret it needs) before this worker stores it as a failed run and goes on with the next ticks;
counted from the first tick of the schedule that failed here since one last started, here or by
another worker (which moves the schedule's cursor on)."""


class Ticker:
    """Fires the due ticks of the schedules in ``vow``'s store, for one worker."""

    def __init__(self, vow: Any, *, every: float = LOOK_EVERY, clock: Callable[[], float] | None = None) -> None:
        self._vow = vow
        self._every = every
        self._clock = clock or vow.store.now
        self._next_look = 0.0
        self._said: set[tuple[str, str]] = set()
        # schedule name -> when a tick of it first could not be planned here, since the last one that started
        self._failing: dict[str, float] = {}
        self._left_at: dict[str, float | None] = {}  # schedule name -> the cursor this worker's last look left

    def look(self) -> int:
        """Start the ticks that are due now (at most one look per ``every`` seconds); how many runs
        this look created or joined. Store errors are logged, never raised: the next look tries again."""
        if time.monotonic() < self._next_look:
            return 0
        self._next_look = time.monotonic() + self._every
        try:
            return self._look()
        except VowError as exc:
            _log.warning("schedules: could not look at the schedules: %s", exc)
            return 0

    def _look(self) -> int:
        store = self._vow.store
        started = 0
        now = self._clock()
        for record in store.schedules():
            try:
                started += self._look_at(store, record, now)
            except StoreError:
                raise  # the store's: look() says it, and the next look tries again
            except Exception as exc:  # noqa: BLE001 - one schedule's bug must stop neither the others nor the worker
                self._say_once(record.name, f"schedule {record.name}: left out of this look: {type(exc).__name__}: "
                                            f"{exc}")
        return started

    def _look_at(self, store: Any, record: ScheduleRecord, now: float) -> int:
        """Start the due ticks of schedule ``record``; how many."""
        if record.paused:
            return 0
        started = 0
        if self._left_at.get(record.name, record.cursor) != record.cursor:
            self._failing.pop(record.name, None)  # another worker went on with the schedule: it can start ticks
        try:
            definition = Definition.from_json(record.definition)
        except ConfigError as exc:
            self._say_once(record.name, f"schedule {record.name}: {exc}")
            return 0
        ticks, cursor = due(definition, record.cursor, now)
        if definition.catch_up != "all" and record.cursor is not None and ticks and \
                definition.timing.after(record.cursor) < ticks[0]:
            _log.warning("schedule %s: ticks after %s were missed (no worker looked); catch_up: %s starts "
                         "only %s", record.name, tick_text(record.cursor), definition.catch_up,
                         tick_text(ticks[0]))
        handled = record.cursor
        for tick in ticks:
            if not self._start(record.name, definition, tick, now):
                cursor = handled if handled is not None else cursor
                break
            started += 1
            handled = tick
        if record.cursor is None or cursor > record.cursor:
            store.advance_schedule(record.name, cursor)
        self._left_at[record.name] = cursor if record.cursor is None or cursor > record.cursor else record.cursor
        return started

    def _start(self, name: str, definition: Definition, tick: float, now: float) -> bool:
        """Create (or join) the run of ``tick``, or store it as failed (see :data:`LEFT_FOR`); whether
        the tick counts as handled."""
        vow = self._vow
        rid = run_id(name, tick)
        if vow.store.get(rid) is not None:
            self._failing.pop(name, None)
            return True  # another worker started it first
        target = definition.target
        try:
            if isinstance(target, PipelineTarget):
                from vow.pipeline.plan import make_plan
                from vow.pipeline.source import parse
                from vow.pipeline.workflow import NAME

                plan = make_plan(parse(target.text, target.file), input=target.input, run_id=rid,
                                 plugins=vow.plugins, tick={"name": name, "tick": tick_text(tick), "time": tick},
                                 base_dir=target.base_dir)
                vow.submit(rid, NAME, plan.spec, timeout=plan.timeout)
            else:
                if target.workflow not in vow.registered():
                    self._say_once(name, f"schedule {name}: workflow {target.workflow!r} is not registered in this "
                                         "worker; its ticks are left for a worker that has it (vow worker --app)")
                    return False
                args, kwargs = encoding.decode_args(target.args)
                vow.submit(rid, target.workflow, *args, **kwargs)
        except ArgumentMismatchError:
            return True  # the tick's run exists, made from an earlier definition: it was started
        except StoreError:
            raise  # not this tick's fault: the next look tries again
        except Exception as exc:  # noqa: BLE001 - a bad input, a plugin's bug: this tick cannot start, later ones may
            first = self._failing.setdefault(name, now)
            if now - first < LEFT_FOR:
                self._say_once(name, f"schedule {name}: tick {tick_text(tick)} cannot start here: {exc} (left "
                                     f"{LEFT_FOR:.0f}s for a worker that can, then stored as a failed run)")
                return False
            self._failed(rid, definition, exc)  # and the next ticks that fail too, until one starts
            _log.error("schedule %s: tick %s stored as failed run %s: no worker could start it: %s; the schedule "
                       "goes on with its next ticks", name, tick_text(tick), rid, exc)
            return True
        self._failing.pop(name, None)
        _log.info("schedule %s: started %s", name, rid)
        return True

    def _failed(self, rid: str, definition: Definition, error: BaseException) -> None:
        """Store the run of a tick that cannot start as failed with ``error`` (``vow ls``, ``vow show``
        list it); a run another worker stored meanwhile is kept as it is."""
        from vow.pipeline.workflow import NAME

        vow = self._vow
        now = vow.store.now()
        target = definition.target
        func = NAME if isinstance(target, PipelineTarget) else target.workflow
        vow.store.create(PromiseRecord(rid, State.REJECTED, Kind.WORKFLOW, rid, func, "", vow.codec.encode(error),
                                       None, None, rid, 1, now, now, {NEVER_STARTED: "1"}), outside=True)

    def _say_once(self, name: str, text: str) -> None:
        if (name, text) not in self._said:
            self._said.add((name, text))
            _log.warning("%s", text)
