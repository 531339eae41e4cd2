"""The thread pool that runs synchronous leaves, sized for I/O.

Leaves are mostly blocking I/O (HTTP calls, SMTP, sleeps), so a fan-out of a thousand
blocking calls should run a thousand threads at once; but a burst of trivial leaves should not
pay for a thousand thread starts. The pool therefore grows in two ways:

* eagerly, one thread per queued job, up to ``eager`` threads (small fan-outs start at once);
* beyond that, a grower thread looks every millisecond while jobs wait: if the queue would take
  longer than a few milliseconds to drain at the rate it is draining, it starts a thread for
  each waiting job (up to ``max_threads``). Blocking jobs drain at rate zero and get their threads
  within about a millisecond; trivial jobs drain fast and get none.

Idle threads exit after ``idle_timeout`` seconds.
"""

from __future__ import annotations

import _thread
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

_log = logging.getLogger("vow.pool")

DEFAULT_MAX_THREADS = 1024


class ThreadPool:
    """A lazily growing pool of daemon threads running ``fn(*args)`` jobs."""

    def __init__(self, max_threads: int = DEFAULT_MAX_THREADS, *, eager: int = 16,
                 idle_timeout: float = 30.0, drain_budget: float = 0.004) -> None:
        if max_threads < 1:
            raise ValueError(f"max_threads must be >= 1, got {max_threads}")
        self.max_threads = max_threads
        self._eager = min(eager, max_threads)
        self._idle_timeout = idle_timeout
        self._drain_budget = drain_budget
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._backlog = 0
        self._done = 0
        self._grow = threading.Event()
        self._closed = False
        self._grower_started = False  # started on first need: most pools (quick leaves) never need it

    @property
    def threads(self) -> int:
        """Threads alive now."""
        return self._threads

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; exceptions it raises are logged, so wrap jobs that must report them."""
        self._jobs.put((fn, args))
        with self._lock:
            self._backlog += 1
            if self._backlog <= self._idle:
                return
            if self._threads < self._eager:
                self._threads += 1
                _thread.start_new_thread(self._work, ())
                return
            if not self._grower_started:
                self._grower_started = True
                _thread.start_new_thread(self._grower, ())
        self._grow.set()

    def _work(self) -> None:
        jobs, lock = self._jobs, self._lock
        while True:
            with lock:
                self._idle += 1
            idle = False
            try:
                job = jobs.get(timeout=self._idle_timeout)
            except queue.Empty:
                job, idle = None, True
            with lock:
                self._idle -= 1
                if idle or job is None or self._closed:
                    self._threads -= 1
                    return
                self._backlog -= 1
            fn, args = job
            try:
                fn(*args)
            except BaseException:  # noqa: BLE001 - a job's failure must not kill the thread
                _log.exception("job %r failed", fn)
            self._done += 1
            del job, fn, args  # an idle thread must not keep its last job (a leaf, its run, its client) alive

    def _grower(self) -> None:
        while not self._closed:
            self._grow.wait()
            self._grow.clear()
            done_before = self._done
            while not self._closed:
                time.sleep(0.001)
                with self._lock:
                    backlog, idle, threads = self._backlog, self._idle, self._threads
                if backlog <= idle:
                    break
                drained = self._done - done_before
                done_before = self._done
                if drained and backlog / (drained / 0.001) < self._drain_budget:
                    continue
                want = min(backlog - idle, self.max_threads - threads)
                for _ in range(max(0, want)):
                    with self._lock:
                        if self._threads >= self.max_threads or self._backlog <= self._idle:
                            break
                        self._threads += 1
                    _thread.start_new_thread(self._work, ())

    def close(self) -> None:
        """Let the threads finish their current job and exit."""
        self._closed = True
        self._grow.set()
        for _ in range(self._threads):
            self._jobs.put(None)
