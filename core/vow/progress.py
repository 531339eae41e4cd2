"""The live per-branch view of one run: an observer fed by engine events, and two ways to show it.

:class:`Progress` is passed to ``Vow(observers=[...])``. It keeps one :class:`Row` per branch
(state, attempt, elapsed, last error) from the engine's events; :meth:`Progress.load` fills rows
from stored records, for a run that resumed, one that another process runs, or one that already
finished. ``on_event`` runs on the engine thread, so it only updates the rows under a lock.

:class:`PlainView` prints one line per change that matters (a retry, a settled branch) and suits
logs and pipes; :class:`RichView` redraws a table in place on a terminal.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, TextIO

import attrs

from vow.events import Event, EventKind
from vow.history import failure_text, held_back, is_backoff
from vow.records import PromiseRecord, State

SETTLED = {s.value for s in State if s is not State.PENDING}
WORDS = {"waiting": "waiting", "running": "running", "retrying": "retrying", "resolved": "ok",
         "rejected": "failed", "timedout": "timed out", "canceled": "canceled"}
"""How each state reads in the view."""


@attrs.define
class Row:
    """One branch (or the gate) of the run."""

    id: str  # the promise id
    name: str  # what the view calls it: the branch id
    kind: str = ""  # channel or provider name; "promise" for the gate
    state: str = "waiting"  # waiting, running, retrying, or a settled state
    attempt: int = 0
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    retry_at: float | None = None
    detail: str = ""  # what the result or error says, once settled
    failed: dict[int, str] = attrs.field(factory=dict)  # the error of each attempt that failed and was retried

    @property
    def settled(self) -> bool:
        return self.state in SETTLED

    def errors(self) -> list[tuple[int, str]]:
        """Every attempt's error, oldest first: the retried ones, then the last one if it failed too."""
        found = sorted(self.failed.items())
        if self.state not in ("waiting", "running", "retrying", "resolved") and self.error and (
                not found or found[-1][0] < self.attempt):
            found.append((self.attempt, self.error))
        return found

    def elapsed(self, now: float | None = None) -> float | None:
        """Seconds from the first attempt to the end (or to ``now`` while it runs)."""
        if self.started is None:
            return None
        end = self.finished if self.finished is not None else (now if now is not None else time.time())
        return max(0.0, end - self.started)


class Progress:
    """Observer of one run: a row per branch, kept up to date from events and stored records.

    ``branches`` lists ``(promise id, name, kind)``; with none given, every step the root
    workflow starts gets a row. ``gate`` is the id of an outside promise the run waits for.
    """

    def __init__(self, root: str, branches: Sequence[tuple[str, str, str]] = (), gate: str | None = None) -> None:
        self.root = root
        self.fixed = bool(branches)
        self._rows: dict[str, Row] = {pid: Row(pid, name, kind) for pid, name, kind in branches}
        if gate:
            self._rows[gate] = Row(gate, gate.rsplit(".", 1)[-1], "promise")
        self.gate = gate
        self.resumed = False
        self.root_state: str | None = None
        self.stopped = False  # this process stopped running the run without settling it
        self.note: str | None = None  # what the view says about the run as a whole, once known
        self.changed = threading.Event()
        self._changes: list[tuple[str, Row]] = []
        self._notes: list[str] = []
        self._waiting_said: set[str] = set()  # gates whose "waiting for" line is out (once, from event or store)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the observer
    def on_event(self, event: Event) -> None:
        """Apply one engine event (engine thread)."""
        if event.root != self.root:
            return
        with self._lock:
            if event.id == self.root:
                if event.kind is EventKind.RESUMED:
                    self.resumed, self.stopped = True, False
                elif event.kind is EventKind.STOPPED:
                    self.stopped = True
                elif event.kind is EventKind.SETTLED:
                    self.root_state = event.state
            else:
                row = self._rows.get(event.id)
                if row is None and not self.fixed and event.parent == self.root and event.promise_kind == "step":
                    row = self._rows[event.id] = Row(event.id, event.id.rsplit(".", 1)[-1], event.func.rsplit(".",
                                                                                                              1)[-1])
                if row is not None:
                    self._apply(row, event)
        self.changed.set()

    def _apply(self, row: Row, event: Event) -> None:
        if row.settled:
            return
        kind = event.kind
        if kind is EventKind.CREATED and row.kind == "promise":
            row.started = event.time
            self._say_waiting(row)
        elif kind is EventKind.STARTED:
            row.state, row.attempt, row.retry_at = "running", event.attempt, None
            row.started = row.started if row.started is not None else event.time
        elif kind is EventKind.RETRY_SCHEDULED:
            row.state, row.attempt, row.error = "retrying", event.attempt, event.error
            row.failed[event.attempt] = event.error or ""
            row.retry_at = event.time + (event.delay or 0.0)
            self._changes.append(("retry", attrs.evolve(row)))
        elif kind is EventKind.SETTLED:
            row.state, row.finished, row.retry_at = event.state or "resolved", event.time, None
            row.attempt = max(row.attempt, event.attempt)
            row.started = row.started if row.started is not None else event.time
            if event.error:
                row.error = event.error
            self._changes.append(("settled", row))  # the detail is filled in from the store

    # ------------------------------------------------------------------ stored records
    def load(self, records: Iterable[PromiseRecord]) -> None:
        """Merge stored records into the rows (never moving a row back); fills settled details."""
        with self._lock:
            for record in records:
                if record.id == self.root:
                    if record.settled:
                        self.root_state = record.state.value
                    continue
                if is_backoff(record):  # holds the error of the attempt before the one it holds back
                    owner = self._rows.get(record.parent or "")
                    if owner is not None and record.args and held_back(record) > 1:
                        owner.failed.setdefault(held_back(record) - 1, failure_text(record.args))
                    continue
                row = self._rows.get(record.id)
                if row is None and not self.fixed and record.parent == self.root and record.kind.value == "step":
                    row = self._rows[record.id] = Row(record.id, record.id.rsplit(".", 1)[-1],
                                                      record.func.rsplit(".", 1)[-1])
                if row is None:
                    continue
                row.attempt = max(row.attempt, record.attempt if record.kind.value == "step" else 0)
                if row.started is None or record.created_at < row.started:
                    row.started = record.created_at
                    if row.kind == "promise" and not record.settled:
                        self._say_waiting(row)
                if record.settled:
                    if not row.settled:
                        row.state = record.state.value
                        self._changes.append(("settled", row))
                    row.finished = record.settled_at
                    row.detail = describe_outcome(record)
                    if record.state is State.REJECTED:
                        row.error = row.detail  # the stored failure of the attempt it ended on
        self.changed.set()

    def _say_waiting(self, row: Row) -> None:
        if row.id not in self._waiting_said:
            self._waiting_said.add(row.id)
            self._changes.append(("waiting", attrs.evolve(row)))

    def announce(self, text: str) -> None:
        """Say ``text`` about the run as a whole (canceled, taken over by another worker): a plain
        view prints it once, a live table shows it under the rows."""
        with self._lock:
            self.note = text
            self._notes.append(text)
        self.changed.set()

    def take_notes(self) -> list[str]:
        """The notes announced since the last call."""
        with self._lock:
            notes, self._notes = self._notes, []
            return notes

    def waiting_for_detail(self) -> list[str]:
        """Ids of settled rows whose result has not been read from the store yet."""
        with self._lock:
            return [r.id for r in self._rows.values() if r.settled and not r.detail]

    def rows(self) -> list[Row]:
        """A snapshot of every row, in order."""
        with self._lock:
            return [attrs.evolve(r) for r in self._rows.values()]

    def take_changes(self, *, final: bool = False) -> list[tuple[str, Row]]:
        """The changes since the last call: ``("waiting" | "retry" | "settled", row)``.

        A settled row waits until its result has been read from the store (:meth:`load`),
        unless ``final``.
        """
        with self._lock:
            ready: list[tuple[str, Row]] = []
            kept: list[tuple[str, Row]] = []
            for what, row in self._changes:
                (kept if what == "settled" and not row.detail and not final else ready).append((what, row))
            self._changes = kept
            return [(what, attrs.evolve(row)) for what, row in ready]


def describe_outcome(record: PromiseRecord) -> str:
    """One line about a settled record: a receipt, an image, a value, or the error."""
    if record.state is State.RESOLVED:
        value = json.loads(record.value) if record.value is not None else None
        if isinstance(value, dict) and "transport" in value and "message_id" in value:
            return f"{value['transport']} {value['message_id']}" + (" (duplicate)" if value.get("duplicate") else "")
        if isinstance(value, dict) and "path" in value and "sha256" in value:
            return f"{value['path']} {value.get('width')}x{value.get('height')}" + (
                " (from the provider's cache)" if value.get("duplicate") else "")
        text = json.dumps(value, default=str)
        return text if len(text) <= 70 else text[:67] + "..."
    if record.state is State.REJECTED:
        return failure_text(record.value)
    return str(WORDS.get(record.state.value, record.state.value))


def printable(text: str) -> str:
    """``text`` for a terminal: each character Python does not print as itself in a string (a control
    character, a format character such as a right-to-left override or a zero-width space, a line or
    paragraph separator, a space other than ' ') written as its escape (``\\n``, ``\\x1b``, ``\\u202e``),
    as Python writes it in a string. A provider's error message is shown as it came, and a newline in it
    broke the one line a branch gets, an escape sequence retitled, cleared or recoloured the terminal
    showing it; a run id with a right-to-left override read backwards."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def cells(text: str) -> int:
    """How many terminal columns ``text`` (:func:`printable`) takes: two for a wide character (CJK), none
    for a combining one (an accent written after its letter), one for any other."""
    if text.isascii():
        return len(text)
    import unicodedata

    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, width: int) -> str:
    """``text`` followed by spaces to fill ``width`` terminal columns (:func:`cells`), for a table column."""
    return text + " " * (width - cells(text))


def seconds(value: float | None) -> str:
    """``0.29s``, ``12.3s``, ``2m05s``; ``never`` for an infinite wait (a ``Retry-After`` of inf)."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "never"
    if value < 10:
        return f"{value:.2f}s"
    if value < 60:
        return f"{value:.1f}s"
    return f"{int(value // 60)}m{int(value % 60):02d}s"


class PlainView:
    """Prints a line per retry and per settled branch: for logs, pipes and CI."""

    def __init__(self, progress: Progress, out: TextIO) -> None:
        self.progress = progress
        self.out = out
        self.width = max([len(r.name) for r in progress.rows()] or [6])

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.update(final=True)

    def update(self, *, final: bool = False) -> None:
        """Print what changed since the last call."""
        for what, row in self.progress.take_changes(final=final):
            self.out.write(self.line(what, row) + "\n")
        for note in self.progress.take_notes():
            self.out.write(f"  {note}\n")
        self.out.flush()

    def line(self, what: str, row: Row) -> str:
        """The line for one change."""
        return format_line(what, row, self.width)


def format_line(what: str, row: Row, width: int = 0) -> str:
    """One plain line about ``row``: ``waiting`` (a gate), ``retry``, or ``settled``."""
    name = row.name.ljust(width)
    if what == "waiting":
        return (f"  {name}  waiting for {row.id}: resolve it with  vow resolve {row.id} VALUE  "
                f"(or  vow reject {row.id} REASON)")
    if what == "retry":
        delay = max(0.0, (row.retry_at or 0) - time.time()) if row.retry_at else 0.0
        return f"  {name}  attempt {row.attempt} failed: {printable(row.error or '')}; retrying in {seconds(delay)}"
    word = WORDS.get(row.state, row.state)
    attempt = f"attempt {row.attempt}" if row.attempt else ""
    detail = printable(row.detail or (row.error or ""))
    return f"  {name}  {word:<8}  {attempt:<9}  {seconds(row.elapsed()):>6}  {detail}".rstrip()


class RichView:
    """A table redrawn in place (rich) while the run goes on: for terminals."""

    def __init__(self, progress: Progress, console: Any) -> None:
        from rich.live import Live

        self.progress = progress
        self.console = console
        self.live = Live(self.table(), console=console, refresh_per_second=12, transient=False)

    def __enter__(self) -> RichView:
        self.live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.update(final=True)
        self.live.__exit__(kind, error, trace)

    def update(self, *, final: bool = False) -> None:
        """Redraw with the current rows."""
        self.progress.take_changes(final=final)
        self.progress.take_notes()  # shown as the table's caption
        self.live.update(self.table())

    _STYLES = {"waiting": "dim", "running": "cyan", "retrying": "yellow", "resolved": "green",
               "rejected": "bold red", "timedout": "red", "canceled": "magenta"}

    def table(self) -> Any:
        """The table of rows as it is now."""
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold dim",
                      caption=self.progress.note, caption_justify="left", caption_style="magenta")
        for column in ("branch", "state", "attempt", "elapsed", ""):
            table.add_column(column, no_wrap=column != "")
        now = time.time()
        for row in self.progress.rows():
            style = self._STYLES.get(row.state, "")
            state: Any = Text(WORDS.get(row.state, row.state), style=style)
            if row.state in ("running", "retrying"):
                state = Spinner("dots", text=state, style=style)
            if row.kind == "promise" and not row.settled:
                detail = Text(f"vow resolve {row.id} VALUE", style="bold")
            elif row.state == "retrying":
                wait = max(0.0, (row.retry_at or now) - now)
                detail = Text(f"{printable(row.error or '')} (next attempt in {seconds(wait)})", style="yellow")
            else:
                detail = Text(printable(row.detail or row.error or ""), style="red" if row.state in ("rejected",
                                                                                          "timedout") else "dim")
            table.add_row(Text(row.name, style="bold"), state, str(row.attempt or ""), seconds(row.elapsed(now)),
                          detail)
        return table
