"""The engine that runs workflows, in parts (each module says what it does):

* :mod:`~vow.engine.core` — the engine thread: its loop, roots, starts, settling, replays;
* :mod:`~vow.engine.stepper` — advances generators, turns yields into promises, checks replays;
* :mod:`~vow.engine.committer` — one fenced commit per round; nothing acts before it;
* :mod:`~vow.engine.leaves` — runs leaf calls on the engine thread, in a pool and in an event loop;
* :mod:`~vow.engine.inline` — quick leaves on the engine thread, and moving the engine off one that blocks;
* :mod:`~vow.engine.retries` — retries and their durable back-off timers;
* :mod:`~vow.engine.leases` — the owner identity and lease renewal on its own thread;
* :mod:`~vow.engine.watcher` — outside changes and remote roots, on its own thread;
* :mod:`~vow.engine.timers` — timers on the monotonic clock;
* :mod:`~vow.engine.model` — what the engine keeps in memory;
* :mod:`~vow.engine.catalog` — a client's workflows and observers, held only while the engine is busy;
* :mod:`~vow.engine.starts` — start requests and the "same run?" rule.
"""

from vow.engine.core import Engine
from vow.engine.retries import BACKOFF_FUNC, backoff_id
from vow.engine.starts import StartRequest, same_run_error

__all__ = ["BACKOFF_FUNC", "Engine", "StartRequest", "backoff_id", "same_run_error"]
