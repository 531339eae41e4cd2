"""Quick leaves on the engine's own thread, and moving the engine off a leaf that blocks.

Most leaves of a busy run are short: a lookup, a computation, a write that returns at once.
Handing each to a pool thread and its outcome back costs two thread wake-ups, which on a small
machine is more than the leaf and its commit together. So once a round is committed, the engine
runs the synchronous leaves that round started itself, one after another, and takes their outcomes
into the next round (one commit for all of them).

A leaf cannot be told in advance to be quick. If one is still running after ``stall`` seconds, a
watchdog thread moves the engine: it hands the leaves not run yet to the pool and the outcomes
collected so far to the engine's inbox, and starts a new engine thread (``relieve``). The thread
held by the slow leaf reports its outcome like a pool thread when the leaf returns, then ends.
A function whose attempts take ``slow`` seconds or more on average (a moving average) runs in the
pool from then on: a function that blocks costs one move, or a few if it blocks only a little
longer than ``stall``. Its attempts in the pool go on feeding the average, and once it falls below
half of ``slow`` the function runs here again: one pause of the whole process (a garbage
collection, a loaded machine) sends a quick function to the pool for a few dozen attempts, not for
the life of the process.

What is learnt of a function is kept by its code (:func:`~vow.naming.function_key`), so a closure
or a partial made afresh for each call shares what the earlier ones taught, and the table stays as
small as the program's code: a long-running worker does not keep every function it ever ran.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from vow.engine.model import PromiseNode
from vow.naming import MAX_KNOWN_FUNCTIONS

__all__ = ["InlineLeaves"]

Attempt = Callable[[PromiseNode], Any]  # runs the current attempt of a leaf's promise; returns its outcome

_WEIGHT = 0.1  # of the latest attempt in a function's moving average: one 20 ms attempt makes it slow
_forks = 0  # forks this process was made by, counted in the child (cheaper to compare than os.getpid())


def _count_fork() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_count_fork)


class InlineLeaves:
    """The queue of leaves the engine runs on its own thread, and the watchdog that moves it."""

    def __init__(self, attempt: Attempt, *, to_pool: Callable[[PromiseNode], None],
                 report: Callable[[Any], None], relieve: Callable[[], None], stall: float = 0.002,
                 slow: float = 0.001, budget: float = 0.01) -> None:
        self._attempt = attempt  # runs one attempt and returns its outcome (never raises)
        self._to_pool = to_pool
        self._report = report
        self._relieve = relieve
        self._stall = stall
        self._slow_after = slow
        self._budget = budget  # seconds of leaves per call of run(), so the inbox is read in between
        # promises whose leaf waits to run; its LeafContext is made when it runs, so a large
        # fan-out does not keep one per queued leaf (fewer objects for the garbage collector)
        self._queue: deque[tuple[PromiseNode, Any]] = deque()  # and its function_key
        self._outcomes: list[Any] = []
        self._lock = threading.Lock()
        self._generation = 0  # moves of the engine so far
        self._running: Any = None  # the function_key of the leaf running on the engine thread now
        self._started = 0  # leaves started on the engine thread, ever: the watchdog's clock
        self._cost: dict[Any, float] = {}  # function_key -> moving average of its attempts' seconds
        self._pooled: set[Any] = set()  # function_keys found slow: in the pool until their average halves
        self._watching = threading.Event()  # cleared while no leaf runs inline: the watchdog sleeps
        self._watchdog: threading.Thread | None = None
        self._closed = False

    def take(self, node: PromiseNode, key: Any) -> bool:
        """Queue the current attempt of ``node``'s leaf (``key`` is its function's
        :func:`~vow.naming.function_key`) for the engine thread's next :meth:`run`, unless its
        function proved slow here; whether it was queued."""
        cost = self._cost.get(key, 0.0)
        if key in self._pooled:
            if cost >= self._slow_after / 2:
                return False
            self._pooled.discard(key)
        elif cost >= self._slow_after:
            self._pooled.add(key)
            return False
        self._queue.append((node, key))
        return True

    def observe(self, key: Any, took: float) -> None:
        """Count an attempt of the function with :func:`~vow.naming.function_key` ``key`` that took ``took``
        seconds in the pool (on a pool thread).

        Only functions this engine thread has timed are followed. Two threads may update one
        average at once and one sample be lost: it is an estimate, not worth a lock per attempt."""
        cost = self._cost
        known = cost.get(key)  # one read: the engine thread may clear the table meanwhile
        if known is not None:
            cost[key] = known * (1 - _WEIGHT) + took * _WEIGHT

    def waiting(self) -> bool:
        """Whether attempts are queued."""
        return bool(self._queue)

    def run(self) -> list[Any] | None:
        """Run queued attempts on this (the engine) thread for up to ``budget`` seconds.

        Returns their outcomes, or ``None`` when this thread must stop being the engine: it moved
        to another thread while a leaf ran here (the outcome was reported to it), or a leaf forked
        and this is the child, which must not go on as its parent's engine."""
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="vow-inline-watchdog", daemon=True)
            self._watchdog.start()
        lock, queue, slow_after, cost, watching = self._lock, self._queue, self._slow_after, self._cost, self._watching
        attempt = self._attempt
        generation = self._generation
        forks = _forks
        clock = time.perf_counter
        now = clock()
        until = now + self._budget
        node: PromiseNode | None = None
        outcome: Any = None
        while True:
            # One pass of the lock per leaf: it hands in the outcome of the last leaf and takes the next.
            with lock:
                moved = node is not None and self._generation != generation
                if not moved:
                    if node is None:  # the first leaf: the watchdog watches until this call returns
                        if not watching.is_set():
                            watching.set()
                    else:
                        self._outcomes.append(outcome)
                    if not queue or now > until:
                        self._running = None
                        outcomes, self._outcomes = self._outcomes, []
                        return outcomes
                    node, key = queue.popleft()
                    self._running = key
                    self._started += 1
            if moved:
                self._report(outcome)
                return None
            assert node is not None  # taken under the lock above
            began = now
            outcome = attempt(node)
            if _forks != forks:  # the leaf forked and returned in the child: not the parent's engine
                return None
            now = clock()
            took = now - began
            known = cost.get(key)  # one read: after a move, the new engine thread may clear the table
            if known is not None:
                cost[key] = known * (1 - _WEIGHT) + took * _WEIGHT
            elif took > slow_after / 10:
                self._learn(key, took * _WEIGHT)

    def _watch(self) -> None:
        lock = self._lock
        while self._watching.wait() and not self._closed:
            with lock:
                seen, busy = self._started, self._running is not None
            time.sleep(self._stall)
            with lock:
                if not (busy and self._running is not None and self._started == seen and self._live()):
                    if self._running is None and self._started == seen and not self._closed:
                        self._watching.clear()  # nothing ran inline for a while: sleep until something does
                    continue
                leftover, outcomes = self._move()
            self._hand_over(leftover, outcomes)
            del leftover, outcomes  # not kept while this thread sleeps until the next stall

    def _hand_over(self, leftover: list[PromiseNode], outcomes: list[Any]) -> None:
        """Report the outcomes the stuck engine thread collected, pool the leaves it did not run yet, and
        start a new engine thread. Apart from :meth:`_watch`, which sleeps until the next stall: nothing
        handed over may stay in its frame (a leaf, its run, its client)."""
        for outcome in outcomes:
            self._report(outcome)
        for node in leftover:
            self._to_pool(node)
        self._relieve()

    def _learn(self, key: Any, cost: float) -> None:
        """Start timing the function with ``key`` (on the engine thread, or on a thread a leaf held
        when the engine moved: the others read the table once per update, so a clear loses a sample
        at most)."""
        if len(self._cost) >= MAX_KNOWN_FUNCTIONS:
            self._cost.clear()
            self._pooled.clear()
        self._cost[key] = cost

    def _live(self) -> bool:
        """Not closed, read now: :meth:`close` sets the flag from another thread while this one sleeps."""
        return not self._closed

    def _move(self) -> tuple[list[PromiseNode], list[Any]]:
        """Take the engine role from the thread stuck in a leaf (with the lock held)."""
        self._generation += 1
        self._running = None
        leftover = [node for node, _ in self._queue]
        self._queue.clear()
        outcomes, self._outcomes = self._outcomes, []
        return leftover, outcomes

    def close(self) -> None:
        """Stop the watchdog; attempts still queued are dropped (their runs resume from the store)."""
        with self._lock:  # so the watchdog, which clears the wake-up under the lock, cannot clear this one
            self._closed = True
            self._queue.clear()
            self._watching.set()
