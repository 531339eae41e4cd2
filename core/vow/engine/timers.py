"""Timers of the engine thread, on the monotonic clock.

Deadlines are stored in wall-clock seconds (they must survive a restart) and judged by the
store's clock. Waiting in the process is on the monotonic clock: a stored deadline is turned into
"so many seconds from now" once, when its timer is armed (a sleep this process made, when it was
made: :meth:`Timers.at`). A wall-clock step while a timer runs
(an NTP correction, a suspended VM waking up, a clock set by hand) therefore neither wakes a sleep
early nor late. What a step *can* do is documented in the README ("Clocks").
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Timer", "Timers"]

MAX_WAIT = 3600.0
"""The longest the engine waits in one go (seconds). A timer due later (a sleep of years, an
infinite back-off) is waited for an hour at a time: a thread can wait only so long at once
(``threading.TIMEOUT_MAX``, about 292 years), and a longer wait raises ``OverflowError``."""


class Timer:
    """A handle on one armed timer; :meth:`cancel` it when it is no longer wanted."""

    __slots__ = ("due", "fn", "arg", "live")

    def __init__(self, due: float, fn: Callable[[Any], None], arg: Any) -> None:
        self.due = due
        self.fn = fn
        self.arg = arg
        self.live = True

    def cancel(self) -> None:
        self.live = False
        self.fn = self.arg = None  # type: ignore[assignment]  # let go of what it held


class Timers:
    """A heap of callbacks due at monotonic times. ``wall()`` is the store's clock."""

    def __init__(self, wall: Callable[[], float]) -> None:
        self._wall = wall
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._canceled = 0

    def after(self, seconds: float, fn: Callable[[Any], None], arg: Any = None) -> Timer:
        """Call ``fn(arg)`` on the engine thread in ``seconds``."""
        return self.at(time.monotonic() + max(0.0, seconds), fn, arg)

    def at(self, due: float, fn: Callable[[Any], None], arg: Any = None) -> Timer:
        """Call ``fn(arg)`` on the engine thread at the monotonic time ``due``."""
        timer = Timer(due, fn, arg)
        heapq.heappush(self._heap, (due, next(self._seq), timer))
        return timer

    def at_wall(self, deadline: float, fn: Callable[[Any], None], arg: Any = None, *,
                due: float | None = None) -> Timer:
        """Call ``fn(arg)`` when the stored wall-clock ``deadline`` comes (by the store's clock, read now);
        or at the monotonic time ``due``, when this process chose the wait and noted when it falls due
        (a wall-clock step between the wait's commit and this call then moves nothing)."""
        if due is not None:
            return self.at(due, fn, arg)
        return self.after(deadline - self._wall(), fn, arg)

    def cancel(self, timer: Timer | None) -> None:
        """Forget ``timer``; the heap is compacted when most of it is canceled."""
        if timer is None or not timer.live:
            return
        timer.cancel()
        self._canceled += 1
        if self._canceled > 64 and self._canceled * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if entry[2].live]
            heapq.heapify(self._heap)
            self._canceled = 0

    def timeout(self) -> float | None:
        """Seconds until the next timer is due (0 if one is due), or ``None`` when none is armed."""
        heap = self._heap
        while heap and not heap[0][2].live:
            heapq.heappop(heap)
            self._canceled -= 1
        if not heap:
            return None
        return min(MAX_WAIT, max(0.0, heap[0][0] - time.monotonic()))

    def fire_due(self) -> None:
        """Call every timer that is due."""
        heap = self._heap
        if not heap:
            return
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            if not timer.live:
                self._canceled -= 1
                continue
            fn, arg = timer.fn, timer.arg
            timer.cancel()
            fn(arg)

    def __len__(self) -> int:
        return len(self._heap) - self._canceled
