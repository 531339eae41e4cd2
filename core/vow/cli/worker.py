"""``vow worker``: claim pending runs from the store and run them, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import os
import sys
import threading
import time

import click

from vow.cli.common import installed_plugins, load_apps, output_may_close, store_option, writable
from vow.events import Event, EventKind
from vow.retention import MAX_AGE, AutoPrune, describe_seconds, parse_age
from vow.stopping import stop_on_signals

# The client and the engine under it are imported inside the commands: `vow --help` imports this
# module to list its commands and must stay fast (tests/cli/test_run.py checks what it loads).


class WorkerLog:
    """Observer: one line when a run starts here and one when it settles.

    It is called on the engine thread, twice per run, so a line is only added to ``output``, which
    writes the lines in batches."""

    event_kinds = frozenset({EventKind.RESUMED, EventKind.SETTLED})

    def __init__(self, output: LogOutput) -> None:
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()
        self._say = output.say
        from vow.progress import printable  # here: `vow --help` lists this command without the view's module

        self._printable = printable

    def on_event(self, event: Event) -> None:
        if event.id != event.root:
            return
        if event.kind is EventKind.RESUMED:
            with self._lock:
                self._started[event.id] = event.time
            self._say(self._printable(f"run {event.id} ({event.func}) started"))
        elif event.kind is EventKind.SETTLED:
            with self._lock:
                began = self._started.pop(event.id, None)
            took = f" in {event.time - began:.2f}s" if began is not None else ""
            error = f": {event.error}" if event.error else ""
            self._say(self._printable(f"run {event.id} {event.state}{took}{error}"))  # an error's text is any text


class LogOutput:
    """The worker's log on stdout: each line after the time and the process id, written every
    ``every`` seconds in one write, from a thread of its own.

    A busy worker logs thousands of lines a second; a write (a system call when stdout is
    unbuffered, as with ``PYTHONUNBUFFERED=1``) per line took 7 % of the engine thread. A line is
    out within ``every`` seconds, or at once with ``now=True``; what a ``kill -9`` catches in the
    buffer is lost, as with any buffered log."""

    def __init__(self, every: float = 0.1) -> None:
        self._every = every
        self._lines: list[str] = []
        self._lock = threading.Lock()  # guards the list: a line added while it is written is kept
        self._prefix = (-1, "")  # (the second it is for, "HH:MM:SS [pid] ")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LogOutput:
        self._thread = threading.Thread(target=self._write_every, name="vow-worker-log", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()

    def say(self, text: str, *, now: bool = False) -> None:
        """Add a line; with ``now``, write it and the lines before it at once."""
        second = int(time.time())
        prefix = self._prefix
        if prefix[0] != second:
            prefix = self._prefix = (second, f"{time.strftime('%H:%M:%S', time.localtime(second))} "
                                              f"[{os.getpid()}] ")
        line = f"{prefix[1]}{text}\n"
        with self._lock:
            self._lines.append(line)
        if now:
            self.flush()

    def flush(self) -> None:
        """Write the lines said so far."""
        with self._lock:
            lines, self._lines = self._lines, []
            if lines:
                out = sys.stdout
                out.write("".join(lines))
                out.flush()

    def _write_every(self) -> None:
        while not self._stop.wait(self._every):
            self.flush()


def _finite(seconds: float) -> float:
    """``--poll`` is a wait: nan passes the range check (a wait of nan returns at once) and inf is too long."""
    from vow.config import check_finite  # here: `vow --help` lists this command without the converter

    try:
        check_finite(seconds)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return seconds


@click.command()
@store_option
@click.option("--app", "apps", multiple=True, metavar="MODULE[:ATTR]",
              help="Import a module whose Python workflows this worker runs too (pipelines always run).")
@click.option("--poll", default=0.2, show_default=True, type=click.FloatRange(min=0.01, max=MAX_AGE),
              callback=lambda ctx, param, value: _finite(value), help="Seconds between looks for new runs when idle.")
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

    keep = parse_age(retention, what="--retention") if retention is not None else None
    stop = threading.Event()
    stop_on_signals(stop)
    # A log nobody reads any more (`vow worker | head`, a closed terminal) stops the log, not the work.
    with output_may_close(), LogOutput() as output, \
            Vow(store, plugins=installed_plugins(), observers=[WorkerLog(output)]) as vow:
        writable(vow.store)
        load_apps(vow, apps)
        workflows = ", ".join(sorted(vow.registered()))
        output.say(f"worker on {vow.store.url} runs: {workflows}; stop with Ctrl-C or SIGTERM", now=True)
        pruner = AutoPrune(vow.store, keep).start() if keep is not None else None
        if keep is not None:
            output.say(f"retention: finished runs older than {describe_seconds(keep)} are deleted every hour",
                       now=True)
        try:
            vow.worker(stop=stop, poll_interval=poll, max_running=max_running)
        finally:
            if pruner is not None:
                pruner.stop()
        output.say("stopping: unfinished runs stay pending for the next worker", now=True)
