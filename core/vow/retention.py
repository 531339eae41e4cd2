"""Retention: deleting finished runs once they are old enough, and reporting what went.

A *run* is a root promise and every promise under it (its tree). A run may be pruned when its
root is settled (succeeded, failed or canceled) and settled before the cutoff; then the whole
tree goes, in one atomic delete per batch of runs, together with the run's lease. A pending run
is never touched, nor any part of one, however old its settled children are.

The store does the deleting (:meth:`vow.stores.base.Store.prune`); this module holds what every
store shares: the durations and state names users type, the report, the algorithm a store
without a faster one inherits (built on the store's reads and its ``delete_runs`` primitive),
and :class:`AutoPrune`, which prunes in the background for a client or a worker.
"""

from __future__ import annotations

import logging
import random
import re
import sys
import threading
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

import attrs

from vow.errors import ConfigError
from vow.records import PromiseRecord, State

if TYPE_CHECKING:
    from vow.stores.base import Store

_log = logging.getLogger("vow.retention")

FINISHED_STATES: frozenset[State] = frozenset(s for s in State if s.settled)
"""Every settled state: what ``prune`` removes unless told otherwise."""

STATE_NAMES: tuple[str, ...] = ("pending", "parked", "resolved", "rejected", "timedout", "canceled")
"""The states a user names (``vow ls --state``, ``vow prune --state``), as ``vow ls`` and every
``--json`` show them: the stored states, and ``parked`` (a pending run no worker may resume)."""

STATE_ALIASES: dict[str, tuple[str, ...]] = {
    "succeeded": (State.RESOLVED.value,),
    "failed": (State.REJECTED.value, State.TIMEDOUT.value),
    "cancelled": (State.CANCELED.value,),
}
"""Other words for some of :data:`STATE_NAMES`, accepted wherever those are."""

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")

MAX_AGE = 36500 * 86400.0
"""The longest age a prune or a retention may reach back (``36500d``, about 100 years): its cutoff
is a date the report can show. Nothing older can be in a store: every time in it is after 1970."""

BATCH_RUNS = 200
"""Runs deleted per transaction: each delete holds the write lock only briefly."""


def parse_duration(text: object, *, what: str = "duration") -> float:
    """Seconds in ``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"``, ``"1d12h"`` (or a number of seconds).

    A value that is neither text nor a number (YAML's ``true``, a list) is refused shown as it was
    written (``true``, not Python's ``True``)."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        from vow.config import describe  # on this error only: vow.config loads cattrs, and every store imports this

        raise ConfigError(f"{what}: expected a duration (a number of seconds, or text such as 30s, 5m, 1h30m or "
                          f"1d), got {describe(text)}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        raw = str(text).strip().lower()
        if not raw or _DURATION.sub("", raw):
            raise ConfigError(f"{what}: {text!r} is not a duration; write a number and a unit, "
                              "like 30d, 12h, 90m, 45s or 2w (or several: 1d12h)")
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(raw))
    if seconds < 0:
        raise ConfigError(f"{what}: {text!r} is negative")
    return seconds


def parse_age(text: str | float | int, *, what: str = "older_than") -> float:
    """Seconds in an age for a prune or a retention: a :func:`parse_duration`, at most :data:`MAX_AGE`."""
    seconds = parse_duration(text, what=what)
    if not seconds <= MAX_AGE:  # nan too
        raise ConfigError(f"{what}: {text!r} is too long; at most {describe_seconds(MAX_AGE)} (about 100 years)")
    return seconds


def parse_state_names(text: str | Iterable[str | State], *, what: str = "state",
                      settled_only: bool = False) -> frozenset[str]:
    """The :data:`STATE_NAMES` named in ``"failed,canceled"`` (or in a list), aliases
    (:data:`STATE_ALIASES`) replaced, in any case; ``settled_only``: pending and parked are refused."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else [
        n.value if isinstance(n, State) else str(n).strip() for n in text]
    allowed = [n for n in STATE_NAMES if not (settled_only and n in ("pending", "parked"))]
    aliases = {alias: states for alias, states in STATE_ALIASES.items() if set(states) <= set(allowed)}
    chosen: set[str] = set()
    for name in names:
        if not name:
            continue
        word = name.lower()
        if word in allowed or word in aliases:
            chosen.update(aliases.get(word, (word,)))
            continue
        why = " (a pending run is never pruned)" if word in STATE_NAMES else ""
        raise ConfigError(f"{what}: unknown state {name!r}{why}; allowed: {', '.join(allowed)} "
                          f"(or {', '.join(aliases)})")
    if not chosen:
        raise ConfigError(f"{what}: name at least one state ({', '.join(allowed)})")
    return frozenset(chosen)


def parse_states(text: str | Iterable[str | State] | None, *, what: str = "state") -> frozenset[State]:
    """The settled states named in ``"succeeded,failed"`` (see :func:`parse_state_names`); all of them for ``None``."""
    if text is None:
        return FINISHED_STATES
    return frozenset(State(name) for name in parse_state_names(text, what=what, settled_only=True))


@attrs.frozen
class PrunedRun:
    """A run that was (or, in a dry run, would be) deleted."""

    id: str
    state: State
    func: str
    settled_at: float
    promises: int
    """How many promises the run held, its root included."""


@attrs.frozen
class PruneResult:
    """What a prune removed (``dry_run``: would remove) and what it did to the store's files.

    ``bytes_before``/``bytes_after``: the store's size on disk (database and log), ``None`` for a
    store without files. ``free_bytes``: space the deleted promises left inside the file, kept
    for reuse rather than given back (a SQLite file made before incremental vacuum was on; see
    ``compact``). ``compacted``: the file was rewritten to give every free page back.
    """

    runs: tuple[PrunedRun, ...] = ()
    dry_run: bool = False
    bytes_before: int | None = None
    bytes_after: int | None = None
    free_bytes: int | None = None
    compacted: bool = False
    wal_truncated: bool | None = None

    @property
    def promises(self) -> int:
        """Promises removed, over every run."""
        return sum(run.promises for run in self.runs)

    def by_state(self) -> dict[str, int]:
        """Runs removed per root state."""
        counts: dict[str, int] = {}
        for run in self.runs:
            counts[run.state.value] = counts.get(run.state.value, 0) + 1
        return counts

    def to_json(self) -> dict[str, object]:
        """A JSON-able report."""
        return {
            "dry_run": self.dry_run, "runs": len(self.runs), "promises": self.promises,
            "by_state": self.by_state(), "bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
            "free_bytes": self.free_bytes, "compacted": self.compacted, "wal_truncated": self.wal_truncated,
            "removed": [{"id": r.id, "state": r.state.value, "workflow": r.func, "settled_at": r.settled_at,
                         "promises": r.promises} for r in self.runs],
        }


def is_prunable(record: PromiseRecord | None, before: float, states: Collection[State]) -> bool:
    """Whether ``record`` is the root of a run that may go: a root, settled in ``states`` before ``before``."""
    return (record is not None and record.parent is None and record.settled and record.state in states
            and record.settled_at is not None and record.settled_at < before)


def prune_store(store: Store, *, before: float, states: Collection[State] = FINISHED_STATES,
                dry_run: bool = False) -> PruneResult:
    """Prune ``store`` through its reads and its ``delete_runs`` primitive (any store's default).

    Finds the roots settled in ``states`` before ``before`` with ``search``, counts their trees,
    and deletes them :data:`BATCH_RUNS` at a time; ``delete_runs`` checks each root again inside
    its own atomic write, so a run is deleted whole or not at all.
    """
    states = frozenset(states)
    candidates: list[PromiseRecord] = []
    for state in sorted(states, key=lambda s: s.value):
        candidates += [r for r in store.search(state=state, roots_only=True, limit=sys.maxsize)
                       if is_prunable(r, before, states)]
    candidates.sort(key=lambda r: (r.settled_at or 0.0, r.id))
    removed: list[PrunedRun] = []
    for start in range(0, len(candidates), BATCH_RUNS):
        chunk = candidates[start:start + BATCH_RUNS]
        if dry_run:
            counts = {r.id: len(store.tree(r.id)) for r in chunk}
        else:
            counts = store.delete_runs([r.id for r in chunk], settled_before=before)
        removed += [PrunedRun(r.id, r.state, r.func, r.settled_at or 0.0, counts[r.id])
                    for r in chunk if r.id in counts]
    return PruneResult(tuple(removed), dry_run)


class AutoPrune:
    """Prunes finished runs older than ``keep`` seconds from ``store`` in a background thread.

    The first prune runs at :meth:`start`, then one every ``every`` seconds (±10 %, so several
    workers on one store spread out). It never rewrites a store's files (no ``compact``): it
    only deletes, and gives space back where the store can do it without blocking writers.
    A prune that fails is logged and tried again at the next turn.
    """

    def __init__(self, store: Store, keep: float | str, *, every: float = 3600.0,
                 states: Collection[State] = FINISHED_STATES) -> None:
        self.store = store
        self.keep = parse_age(keep, what="retention")
        if every <= 0:
            raise ConfigError(f"retention interval must be > 0 seconds, got {every}")
        self.every = every
        self.states = frozenset(states)
        self.last: PruneResult | None = None
        self.turns = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> AutoPrune:
        """Start the background thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="vow-retention", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread, waiting up to ``timeout`` seconds for a prune in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_once(self) -> PruneResult | None:
        """One prune now (what the thread does each turn); ``None`` if it failed."""
        try:
            result = self.store.prune(before=self.store.now() - self.keep, states=self.states)
        except Exception as exc:  # noqa: BLE001 - a busy or failing store: try again next turn
            _log.warning("retention: pruning %s failed: %s", getattr(self.store, "url", self.store), exc)
            return None
        finally:
            self.turns += 1
        self.last = result
        if result.runs:
            _log.info("retention: removed %d finished runs (%d promises) older than %s",
                      len(result.runs), result.promises, describe_seconds(self.keep))
        return result

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.every * random.uniform(0.9, 1.1))


def describe_seconds(seconds: float) -> str:
    """``30d``, ``12h``, ``90m`` — the largest unit that divides ``seconds``."""
    for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
