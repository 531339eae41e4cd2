"""What a store keeps of a schedule: a name, its definition as JSON text, and two things that change.

Stores do not read the definition (when it ticks, what it starts, the catch-up policy): that is
:mod:`vow.schedules.definition`'s job. A store keeps the row and moves the cursor forward
(:meth:`vow.stores.base.Store.advance_schedule`), so every worker on every machine sharing the
store sees the same schedules and the same progress.
"""

from __future__ import annotations

import attrs


@attrs.frozen(slots=True)
class ScheduleRecord:
    """One stored schedule.

    ``definition`` is JSON text (see :class:`vow.schedules.definition.Definition`). ``paused``
    schedules fire nothing. ``cursor`` is the time (epoch seconds) of the last tick handled —
    fired, or skipped by the catch-up policy — or ``None`` before the first; it only moves
    forward. ``updated_at`` is when the row was last put (by the store's clock).
    """

    name: str
    definition: str
    paused: bool = False
    cursor: float | None = None
    updated_at: float = 0.0
