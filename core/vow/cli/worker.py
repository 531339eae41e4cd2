"""``vow worker``: claim pending runs from the store and run them, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import click

from vow.cli.common import installed_plugins, load_apps, store_option
from vow.events import Event, EventKind
from vow.retention import AutoPrune, describe_seconds, parse_duration

# The client and the engine under it are imported inside the commands: `vow --help` imports this
# module to list its commands and must stay fast (tests/cli/test_run.py checks what it loads).


class WorkerLog:
    """Observer: one line when a run starts here and one when it settles.

    It is called on the engine thread, twice per run: a line costs one write and no more (the
    prefix is made once a second; ``click.echo`` would ask the terminal about colours per line)."""

    event_kinds = frozenset({EventKind.RESUMED, EventKind.SETTLED})

    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def on_event(self, event: Event) -> None:
        if event.id != event.root:
            return
        if event.kind is EventKind.RESUMED:
            with self._lock:
                self._started[event.id] = event.time
            say(f"run {event.id} ({event.func}) started")
        elif event.kind is EventKind.SETTLED:
            with self._lock:
                began = self._started.pop(event.id, None)
            took = f" in {event.time - began:.2f}s" if began is not None else ""
            error = f": {event.error}" if event.error else ""
            say(f"run {event.id} {event.state}{took}{error}")


_prefix = (-1, "")  # (the second it is for, "HH:MM:SS [pid] ")


def say(text: str) -> None:
    """Write one line of the worker's log to stdout, after the time and the process id."""
    global _prefix
    second = int(time.time())
    if _prefix[0] != second:
        _prefix = (second, f"{time.strftime('%H:%M:%S', time.localtime(second))} [{os.getpid()}] ")
    out = sys.stdout
    out.write(f"{_prefix[1]}{text}\n")
    out.flush()


@click.command()
@store_option
@click.option("--app", "apps", multiple=True, metavar="MODULE[:ATTR]",
              help="Import a module whose Python workflows this worker runs too (pipelines always run).")
@click.option("--poll", default=0.2, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds between looks for new runs when idle.")
@click.option("--max-running", default=256, show_default=True, type=click.IntRange(min=1),
              help="At most this many runs at once in this worker.")
@click.option("--retention", metavar="AGE", default=None,
              help="Delete finished runs older than AGE (30d, 12h, ...) now and every hour while the worker runs "
                   "(like `vow prune --older-than AGE`).")
def worker(store: str | None, apps: tuple[str, ...], poll: float, max_running: int, retention: str | None) -> None:
    """Claim and run pending runs (`vow run --detach`, `Vow.submit`) until stopped, and start the
    runs of due schedule ticks (`vow schedule`).

    Several workers may share one store: each run is leased to one worker at a time, and the run
    of a worker that died is taken over (at once when it ran on this machine). SIGTERM or Ctrl-C
    stops the worker; runs it had not finished stay pending and are resumed by the next worker.
    """
    from vow.client import Vow

    keep = parse_duration(retention, what="--retention") if retention is not None else None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with Vow(store, plugins=installed_plugins(), observers=[WorkerLog()]) as vow:
        load_apps(vow, apps)
        workflows = ", ".join(sorted(vow.registered()))
        say(f"worker on {vow.store.url} runs: {workflows}; stop with Ctrl-C or SIGTERM")
        pruner = AutoPrune(vow.store, keep).start() if keep is not None else None
        if keep is not None:
            say(f"retention: finished runs older than {describe_seconds(keep)} are deleted every hour")
        try:
            vow.worker(stop=stop, poll_interval=poll, max_running=max_running)
        finally:
            if pruner is not None:
                pruner.stop()
        say("stopping: unfinished runs stay pending for the next worker")
