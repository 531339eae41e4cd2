"""Stopping a long-running loop, such as :meth:`vow.Vow.worker`, when the process gets a signal.

The obvious handler, ``signal.signal(SIGTERM, lambda *_: stop.set())``, can hang the process for
good: Python runs handlers in the main thread between two bytecodes, and when the main thread is
inside ``stop.wait()`` at that moment it may hold the event's internal lock, which ``set()`` then
waits for, forever (about one SIGTERM in a hundred, for a loop that waits on ``stop`` all the time).
:func:`stop_on_signals` sets the event from a thread of its own instead.
"""

from __future__ import annotations

import _thread
import signal
import threading
from collections.abc import Iterable
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals(stop: threading.Event, signals: Iterable[signal.Signals] = STOP_SIGNALS) -> None:
    """Set ``stop`` when one of ``signals`` (SIGTERM and SIGINT by default) arrives.

    Call it from the main thread (Python installs signal handlers there only). The handler takes
    no lock: it starts a bare thread that calls ``stop.set()``, so it cannot wait on a lock that
    the main thread, interrupted, holds.
    """
    def handler(signum: int, frame: FrameType | None) -> None:
        # Not threading.Thread: starting one takes locks of the threading module that the
        # interrupted main thread may hold too (it may be starting a thread itself).
        _thread.start_new_thread(stop.set, ())

    for sig in signals:
        signal.signal(sig, handler)
