"""What the console's pages show, built from stored records: no web framework here.

:func:`run_rows` turns a page of runs into the rows of the runs list; :func:`timeline` turns one
run's promise tree into bars (one per promise, nested as the tree is) whose segments are the
attempts and the retry back-offs between them. Both are plain data for the templates, which
escape every value.

How a retry is read from the store (:mod:`vow.history`): when attempt ``n`` of a promise fails and
is retried, the engine stores a durable timer ``{id}.backoff.{n+1}`` created when attempt ``n``
failed, waking when attempt ``n+1`` may start, and settled when it starts. So attempt ``n`` runs
from the end of the back-off before it (or the promise's creation) to the start of the back-off
after it (or the promise's settling). The error of a failed attempt is the timer's ``args``; the
last attempt's error is the promise's own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from vow import progress
from vow.history import BACKOFF_FUNC, failure_text, held_back, is_backoff
from vow.images.pipeline import generate_image
from vow.records import Kind, PromiseRecord, State
from vow.stores.base import is_branch, run_name

IMAGE_LEAF = f"{generate_image.__module__}.{generate_image.__qualname__}"
"""The name stored for the leaf that writes an image run's images (its value names the file, its
arguments the folder)."""

MAX_BARS = 500
"""A run page draws at most this many promises (a fan-out of 100,000 stays a readable page)."""

MAX_OUTSIDE = 100
"""A run page offers Resolve / Reject for at most this many pending outside promises (the oldest);
the others get theirs as these settle (10,000 waiting branches had made a 7 MB page)."""

FAILED_STATES = (State.REJECTED, State.TIMEDOUT, State.CANCELED)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def when(ts: float | None) -> str:
    """Local time as ``2026-11-21 14:03:07`` (``-`` for none)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def seconds(value: float | None) -> str:
    """``0.29s``, ``12.3s``, ``2m05s`` (as the terminal views say it), and ``3h04m`` for long runs."""
    if value is not None and value >= 3600:
        return f"{int(value // 3600)}h{int(value % 3600 // 60):02d}m"
    return progress.seconds(value)


def error_text(value: str | None, state: State) -> str:
    """What a settled promise's stored error says: ``Type: message`` (never imports the type)."""
    if state is State.TIMEDOUT:
        return "timed out"
    if state is State.CANCELED:
        return "canceled"
    return failure_text(value)


def value_text(record: PromiseRecord, limit: int = 160) -> str:
    """A settled promise's value or error as one short line (a receipt or an image in a few words)."""
    if record.state is State.RESOLVED:
        text = progress.describe_outcome(record)  # the terminal views' words for receipts and images
    elif record.settled:
        text = error_text(record.value, record.state)
    else:
        return ""
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ---------------------------------------------------------------------------------- the runs list
@attrs.frozen
class RunRow:
    """One line of the runs list."""

    id: str
    state: str
    name: str
    started: float
    settled: float | None
    ok: int
    failed: int
    pending: int

    @property
    def duration(self) -> float | None:
        return None if self.settled is None else self.settled - self.started

    @property
    def cursor(self) -> str:
        """The ``before`` parameter of the page after this row."""
        return f"{self.started!r}:{self.id}"


def run_rows(runs: Sequence[PromiseRecord], counts: dict[str, dict[State, int]]) -> list[RunRow]:
    """The runs list's rows from ``Store.runs`` and ``Store.branch_counts``."""
    rows = []
    for r in runs:
        tally = counts.get(r.id, {})
        rows.append(RunRow(r.id, r.state.value, run_name(r), r.created_at, r.settled_at,
                           tally.get(State.RESOLVED, 0), sum(tally.get(s, 0) for s in FAILED_STATES),
                           tally.get(State.PENDING, 0)))
    return rows


def parse_cursor(text: str) -> tuple[float, str]:
    """``"1700000000.5:run/7"`` -> ``(1700000000.5, "run/7")``; :class:`ValueError` if malformed."""
    stamp, sep, rid = text.partition(":")
    if not sep or not rid:
        raise ValueError(f"not a page cursor: {text!r}")
    return float(stamp), rid


# ---------------------------------------------------------------------------------- one run
@attrs.frozen
class Segment:
    """A stretch of a bar: an attempt (``kind="attempt"``) or the back-off before a retry."""

    kind: str
    number: int  # the attempt number; for a back-off, the attempt it holds back
    start: float
    end: float | None  # None: still going
    outcome: str  # attempt: ok, failed, running, canceled ...; back-off: waiting, done
    error: str = ""
    left: float = 0.0  # percent of the run's span
    width: float = 0.0


@attrs.frozen
class Bar:
    """One promise of the run on the timeline."""

    record: PromiseRecord
    depth: int
    label: str
    internal: bool
    segments: tuple[Segment, ...]
    detail: str
    image: bool

    @property
    def attempts(self) -> int:
        return sum(1 for s in self.segments if s.kind == "attempt")

    @property
    def retries(self) -> tuple[Segment, ...]:
        """The attempts that failed and were retried (every attempt but the last)."""
        tried = [s for s in self.segments if s.kind == "attempt"]
        return tuple(tried[:-1]) if self.segments and self.segments[-1].kind == "attempt" else tuple(tried)


@attrs.frozen
class Timeline:
    """A run's page: the root, its bars on a shared time axis, and what can be done."""

    root: PromiseRecord
    name: str
    start: float
    end: float
    bars: tuple[Bar, ...]
    hidden: int  # promises beyond MAX_BARS, not drawn
    outside: tuple[PromiseRecord, ...]  # pending outside promises (Resolve / Reject)
    counts: dict[str, int]
    images: tuple[Bar, ...]
    more_outside: int = 0  # pending outside promises beyond MAX_OUTSIDE, not offered

    @property
    def span(self) -> float:
        return max(self.end - self.start, 1e-6)


def timeline(tree: Iterable[PromiseRecord], root_id: str, now: float | None = None) -> Timeline | None:
    """The timeline of run ``root_id`` from its stored tree (``Store.tree``); ``None`` if no root."""
    now = time.time() if now is None else now
    records = list(tree)
    by_id = {r.id: r for r in records}
    root = by_id.get(root_id)
    if root is None:
        return None
    children: dict[str, list[PromiseRecord]] = {}
    backoffs: dict[str, list[PromiseRecord]] = {}
    for r in records:
        if r.parent is None:
            continue
        if is_backoff(r):
            backoffs.setdefault(r.parent, []).append(r)
        else:
            children.setdefault(r.parent, []).append(r)
    start = root.created_at
    end = max([root.settled_at or now] + [r.settled_at or r.created_at for r in records])
    span = max(end - start, 1e-6)

    def place(seg: Segment) -> Segment:
        stop = seg.end if seg.end is not None else end
        left = max(0.0, (seg.start - start) / span * 100)
        width = max(0.4, (stop - seg.start) / span * 100)
        return attrs.evolve(seg, left=round(left, 3), width=round(min(width, 100 - left), 3))

    bars: list[Bar] = []
    hidden = 0
    stack: list[tuple[PromiseRecord, int]] = [(c, 0) for c in reversed(children.get(root_id, []))]
    bars.append(Bar(root, 0, "the run", False, tuple(place(s) for s in segments(root, backoffs.get(root.id, []), now)),
                    value_text(root), False))
    while stack:
        record, depth = stack.pop()
        if len(bars) >= MAX_BARS:
            hidden += 1  # and its children, counted as they come off the stack
            stack.extend((c, depth + 1) for c in children.get(record.id, []))
            continue
        internal = record.parent == root_id and not is_branch(record) and record.kind is Kind.STEP
        label = record.id[len(record.parent) + 1:] if record.parent and record.id.startswith(record.parent + ".") \
            else record.id
        image = (record.state is State.RESOLVED and record.func == IMAGE_LEAF and image_path(record) is not None)
        bars.append(Bar(record, depth + 1, label, internal,
                        tuple(place(s) for s in segments(record, backoffs.get(record.id, []), now)),
                        value_text(record), image))
        stack.extend((c, depth + 1) for c in reversed(children.get(record.id, [])))
    waiting = sorted((r for r in records if r.kind is Kind.PROMISE and not r.settled), key=lambda r: r.created_at)
    outside = tuple(waiting[:MAX_OUTSIDE])
    branch_states = [r.state for r in children.get(root_id, []) if is_branch(r)]
    counts = {"ok": sum(1 for s in branch_states if s is State.RESOLVED),
              "failed": sum(1 for s in branch_states if s in FAILED_STATES),
              "pending": sum(1 for s in branch_states if s is State.PENDING)}
    return Timeline(root, run_name(root), start, end, tuple(bars), hidden, outside, counts,
                    tuple(b for b in bars if b.image), len(waiting) - len(outside))


def segments(record: PromiseRecord, timers: Sequence[PromiseRecord], now: float) -> list[Segment]:
    """A promise's attempts and the back-offs between them (see the module docstring)."""
    if record.kind in (Kind.SLEEP, Kind.PROMISE):  # one stretch: waiting, then settled
        outcome = "ok" if record.state is State.RESOLVED else record.state.value if record.settled else "waiting"
        return [Segment("wait", 1, record.created_at, record.settled_at, outcome,
                        value_text(record) if record.settled and record.state is not State.RESOLVED else "")]

    found: list[Segment] = []
    began: float | None = record.created_at
    attempt = 1
    for timer in sorted(timers, key=held_back):
        n = held_back(timer)
        if n <= attempt:
            continue
        error = error_text(timer.args, State.REJECTED) if timer.args else ""  # the attempt's failure
        if began is not None:
            found.append(Segment("attempt", attempt, began, timer.created_at, "failed", error))
        wait_end = timer.settled_at or (timer.timeout if record.settled else None)
        found.append(Segment("backoff", n, timer.created_at, wait_end, "done" if timer.settled else "waiting"))
        attempt = n
        began = timer.settled_at
        if not timer.settled and not record.settled:
            return found  # the next attempt has not started yet
    if began is not None:
        if record.state is State.RESOLVED:
            outcome = "ok"
        elif record.settled:
            outcome = "failed" if record.state is State.REJECTED else record.state.value
        else:
            outcome = "running"
        error = value_text(record) if record.settled and record.state is not State.RESOLVED else ""
        found.append(Segment("attempt", attempt, began, record.settled_at, outcome, error))
    return found


def image_path(record: PromiseRecord) -> Path | None:
    """The file an image leaf wrote: its value's ``path`` inside its ``out_dir`` argument.

    ``None`` when the record is not a resolved image leaf, or names a file outside its folder.
    """
    if record.func != IMAGE_LEAF or record.state is not State.RESOLVED:
        return None
    try:
        value = json.loads(record.value or "null")
        args = json.loads(record.args or "[]")
    except ValueError:
        return None
    if isinstance(args, dict):
        args = args.get("args", [])
    if not (isinstance(value, dict) and isinstance(value.get("path"), str) and isinstance(args, list)
            and len(args) >= 3 and isinstance(args[2], str)):
        return None
    folder = Path(args[2]).expanduser().absolute()
    name: str = value["path"]
    path = (folder / name).absolute()
    if path.parent != folder or path.suffix.lower() != ".png":
        return None  # only the PNG the leaf wrote into its own folder, nothing a crafted value points at
    return path


def image_alt(record: PromiseRecord) -> str:
    """The style (or file name) of an image leaf, for the gallery's captions."""
    try:
        value = json.loads(record.value or "null")
    except ValueError:
        return record.id
    if isinstance(value, dict):
        return str(value.get("style") or value.get("path") or record.id)
    return record.id


def fingerprint(records: Iterable[PromiseRecord]) -> tuple[Any, ...]:
    """What a page's live update compares: ids, states and attempts (not the clock)."""
    return tuple((r.id, r.state.value, r.attempt) for r in records)


__all__ = ["BACKOFF_FUNC", "Bar", "RunRow", "Segment", "Timeline", "error_text", "fingerprint", "image_alt",
           "image_path", "parse_cursor", "run_rows", "seconds", "timeline", "value_text", "when"]
