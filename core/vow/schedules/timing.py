"""When a schedule ticks: a five-field cron expression in a time zone, or every N seconds.

Ticks are whole epoch seconds. A cron expression is read by `cronsim`_ in the schedule's time
zone (IANA name, default ``UTC``), with Debian cron's rules for daylight saving time: a job at
a local time that is skipped when clocks go forward runs at the first moment after, and one that
falls in the repeated hour when they go back runs once. An interval (``every: 30s``) ticks at
the multiples of its length since the epoch (UTC): ``every: 1h`` ticks on the hour, and the
ticks do not depend on when the schedule was added. They are the same instants in every time
zone, so ``timezone`` applies to cron only and is refused with ``every`` (anything but ``UTC``):
for "every day at 09:00 local time" use cron (``cron: "0 9 * * *"``, ``timezone: Europe/Paris``).

.. _cronsim: https://pypi.org/project/cronsim/
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from cronsim import CronSim, CronSimError

from vow.errors import ConfigError
from vow.retention import MAX_AGE, parse_duration

__all__ = ["Timing", "parse_every", "parse_tick_text", "stored_timing", "tick_text"]

MIN_EVERY = 1
"""The shortest interval, in seconds (ticks are whole seconds)."""
MAX_EVERY = int(MAX_AGE)
"""The longest interval, in seconds: the longest age a prune may reach back (``36500d``, about 100
years), so that every tick is a date."""


def parse_every(value: object, *, what: str = "every") -> int:
    """Seconds in ``"30s"``, ``"5m"``, ``"1h30m"``, ``"1d"`` (or a whole number of seconds)."""
    seconds = parse_duration(value, what=what)
    if not math.isfinite(seconds):
        raise ConfigError(f"{what}: {value!r} is not a finite number of seconds (30s, 5m, 1h30m, 1d, ...)")
    if seconds > MAX_EVERY:
        raise ConfigError(f"{what}: {value!r} is too long; at most 36500d (about 100 years)")
    if seconds < MIN_EVERY or seconds != int(seconds):
        raise ConfigError(f"{what}: {value!r} is not a whole number of seconds of at least {MIN_EVERY} "
                          "(30s, 5m, 1h30m, 1d, ...)")
    return int(seconds)


@attrs.frozen
class Timing:
    """Exactly one of ``cron`` (five fields; a sixth, leading field of seconds is allowed) and
    ``every`` (seconds), and the IANA time zone ``timezone`` the cron expression is read in."""

    cron: str | None = None
    every: int | None = None
    timezone: str = "UTC"

    def __attrs_post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ConfigError("a schedule needs exactly one of cron (a cron expression such as \"*/5 * * * *\") "
                              "or every (an interval such as 30s)")
        self.zone()  # check the name now
        if self.every is not None and self.timezone != "UTC":
            raise ConfigError(_EVERY_IN_A_ZONE.format(zone=self.timezone), path=("timezone",))
        if self.cron is not None and not isinstance(self.cron, str):
            raise ConfigError(f"{self.cron!r} is not a cron expression: write it as text, such as \"*/5 * * * *\"",
                              path=("cron",))
        if self.cron is not None:
            fields = self.cron.split()
            if len(fields) not in (5, 6):
                raise ConfigError(f"{self.cron!r} has {len(fields)} fields; expected 5 (minute hour "
                                  "day-of-month month day-of-week), or 6 with seconds first", path=("cron",))
            try:
                CronSim(self.cron, datetime(2000, 1, 1, tzinfo=UTC))
            except CronSimError as exc:
                raise ConfigError(f"{self.cron!r} is not a cron expression ({exc}); fields are minute "
                                  "hour day-of-month month day-of-week, such as \"*/5 * * * *\"",
                                  path=("cron",)) from None
        elif self.every is not None and (self.every < MIN_EVERY or int(self.every) != self.every):
            raise ConfigError(f"{self.every!r} is not a whole number of seconds of at least {MIN_EVERY}",
                              path=("every",))

    def zone(self) -> ZoneInfo:
        """The time zone, or a :class:`ConfigError` naming a bad one."""
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ConfigError(f"{self.timezone!r} is not a known IANA time zone (such as UTC, "
                              "Europe/Paris, America/New_York)", path=("timezone",)) from None

    def describe(self) -> str:
        """``cron "*/5 * * * *" (Europe/Paris)`` or ``every 30s``."""
        if self.cron is not None:
            return f'cron "{self.cron}"' + (f" ({self.timezone})" if self.timezone != "UTC" else "")
        return f"every {_seconds(self.every or 0)}"

    # -- ticks

    def latest(self, at: float) -> float:
        """The last tick at or before ``at``."""
        if self.every is not None:
            return float(math.floor(at / self.every) * self.every)
        second = math.floor(at)
        zone = self.zone()
        # cronsim's reverse iteration starts strictly before its datetime: start one second later.
        # Its ticks are not always the forward iteration's (after, between), which are the schedule's:
        # in the time repeated when clocks go back it gives the repeated pass's ticks, which forward
        # never gives (a job there runs once); it can miss the tick forward gave in that night's first
        # pass; and across a half-hour shift (Australia/Lord_Howe) it gives a tick forward skips. A
        # latest tick forward never reaches failed every look (due() took the ticks after the cursor
        # up to it: none, IndexError). So only start from the reverse iteration: from the second
        # newest of its ticks outside a repeated pass, carry on forward up to ``at``.
        outside = (c for c in self._cron(second + 1, reverse=True) if not datetime.fromtimestamp(c, zone).fold)
        next(outside)
        tick = next(outside)
        for following in self._cron(tick):
            if following > at:
                break
            tick = following
        return tick

    def after(self, at: float) -> float:
        """The first tick strictly after ``at``."""
        if self.every is not None:
            return float((math.floor(at / self.every) + 1) * self.every)
        return next(self._cron(math.floor(at)))

    def between(self, start: float, end: float, limit: int) -> list[float]:
        """Up to ``limit`` ticks ``t`` with ``start < t <= end``, oldest first."""
        ticks: list[float] = []
        tick = self.after(start)
        while tick <= end and len(ticks) < limit:
            ticks.append(tick)
            tick = self.after(tick)
        return ticks

    def period_after(self, tick: float) -> float:
        """Seconds from ``tick`` to the next tick."""
        return self.after(tick) - tick

    def _cron(self, second: float, reverse: bool = False) -> Iterator[float]:
        assert self.cron is not None
        start = datetime.fromtimestamp(second, self.zone())
        for moment in CronSim(self.cron, start, reverse=reverse):
            yield float(moment.timestamp())


_EVERY_IN_A_ZONE = (
    "applies to cron only (an interval ticks at multiples of its length since the epoch, the same instants "
    "in every time zone), got {zone!r} with every; drop timezone (or write UTC), or for a time of day in "
    "that zone use cron, such as cron: \"0 0 * * *\" with timezone: {zone} for every day at midnight there")


def stored_timing(data: dict[str, object]) -> Timing:
    """The :class:`Timing` of a stored definition's ``timing`` mapping. An interval stored with a time
    zone (earlier vows took the pair and ignored the zone) is read as it always ticked: in UTC."""
    fields = dict(data)
    if fields.get("every") is not None:
        fields["timezone"] = "UTC"
    return Timing(**fields)  # type: ignore[arg-type]  # stored JSON, of any type: Timing checks each field


def _seconds(n: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}s"


def tick_text(tick: float) -> str:
    """A tick as it appears in run ids: UTC, to the second, no dot (``2025-06-01T02:00:00Z``)."""
    return datetime.fromtimestamp(tick, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_tick_text(text: str) -> float:
    """The epoch seconds of :func:`tick_text`'s ``text``."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
