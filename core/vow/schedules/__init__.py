"""Schedules: pipelines and workflows that start on a cron expression or every N seconds.

A schedule lives in the store (:class:`~vow.schedules.record.ScheduleRecord`), so every worker on
every machine that shares the store sees it. ``vow worker`` fires each due tick as a run whose id
is derived from the schedule's name and the tick's time (``nightly/2025-06-01T02:00:00Z``): two
workers that fire the same tick create-or-get the same run, so a tick runs once however many
workers there are. After downtime, missed ticks fire by the schedule's ``catch_up`` policy.

* :mod:`~vow.schedules.timing` — when a cron expression or an interval ticks;
* :mod:`~vow.schedules.definition` — what a schedule starts, when, and how it catches up;
* :mod:`~vow.schedules.manage` — add, list, pause, resume and remove (``vow schedule``);
* :mod:`~vow.schedules.ticker` — what a worker does to fire due ticks.
"""

from vow.schedules.record import ScheduleRecord

__all__ = ["ScheduleRecord"]
