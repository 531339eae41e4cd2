"""Fork and retry: a new run made from a stored one, reusing the results it already has.

``vow fork RUN --from PROMISE_ID`` is how a run continues after a bug fix: the new run gets the
original's arguments and a copy of every result stored *before* the chosen promise, and runs the
chosen promise and everything after it with the code you have now. ``vow retry RUN`` re-runs only
what failed in a failed run: every branch that succeeded keeps its stored result, and the failed
branches run again. Both work on the store alone and leave the original run as it was.

How the copy is made:

* Every promise id of a run starts with the run's id (``notify/A-1.email``,
  ``notify/A-1.3.backoff.2``); the copy replaces that prefix with the new run's id, and the new
  run — replayed from the top by the engine like any resumed run — meets each copied promise at
  the same place and takes its stored result instead of calling again. The copies keep their
  times, attempts and values, and a ``vow.copied_from`` tag naming the original promise.
* Only settled promises are copied, with everything settled under them. Not copied: the chosen
  promise (fork), a promise that failed (retry), anything created after that point (it may have
  been called with arguments that depended on it: a summary of the branches, a gallery), promises
  still pending, and the retry timers of promises that run again. Before and after are the order
  the run made and settled its promises in, which its stored times keep even when the wall clock
  steps back (the engine stamps each a microsecond after the run's last stored time then). A
  promise that runs again is a new call with a new id, so it gets a new idempotency key: a
  provider sees a new request.
* A promise whose id does not start with the run's id (given with ``.options(id="...")``) cannot
  be copied under the new run, and the new run would fail when it met the original. Fork and
  retry refuse such a run, naming those ids; give ids under ``ctx.id`` (``f"{ctx.id}.name"``).
* The new run's timeout is the original's (``vow.run(..., timeout=)``, a pipeline's ``timeout:``):
  the store keeps a run's deadline, and the new run gets as many seconds as the original had,
  counted from when it is stored (as for a submitted run).
* The new run's arguments are the original's. A step whose arguments contain the run's own id is
  called with other arguments in the new run and is reported as a change (``NonDeterminismError``):
  pass ids in ``.options(id=...)``, not in arguments.

The new run's id is ``RUN/fork-1`` or ``RUN/retry-1`` (the next free number; a fork of a fork
counts on: ``RUN/fork-2``), or the one you give. The new root is stored pending, like a submitted
run: a worker picks it up, or the command runs it at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import attrs

from vow.errors import ConfigError
from vow.naming import not_in_a_run_id
from vow.records import Batch, Kind, PromiseRecord, State
from vow.reserved import BACKOFF_FUNC, NEVER_STARTED

__all__ = ["COPIED_FROM", "Copy", "fork", "next_id", "retry"]

COPIED_FROM = "vow.copied_from"
"""The tag a copied promise carries: the id of the promise it was copied from."""
FORK_OF = "vow.fork_of"
"""The tag of a new run's root: the run it was made from (``fork`` or ``retry``)."""

FAILED_STATES = (State.REJECTED, State.TIMEDOUT, State.CANCELED)
# \Z, not $: "$" also matches before a final line break, which a run id from Python may end in.
_SUFFIX = re.compile(r"/(?:fork|retry)-(\d+)\Z")


@attrs.frozen
class Copy:
    """What :func:`fork` or :func:`retry` stored: the new run, and which promises it reuses."""

    source: str
    run_id: str
    copied: tuple[str, ...]
    """Ids of the original promises whose results the new run reuses."""
    rerun: tuple[str, ...]
    """Ids of the original's direct branches (children of the root) that will run again."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        return {"source": self.source, "run_id": self.run_id, "copied": list(self.copied),
                "rerun": list(self.rerun)}


def fork(store: Any, run: str, from_id: str, *, new_id: str | None = None) -> Copy:
    """Store a new run of ``run``'s workflow and arguments that reuses every result stored before
    promise ``from_id`` and runs ``from_id`` and all after it again (``from_id == run``: nothing
    reused). Returns what was stored; the new run is pending until a worker or the caller runs it."""
    root = _root(store, run)
    tree = store.tree(run)
    order = {r.id: i for i, r in enumerate(tree)}
    if from_id not in order:
        raise ConfigError(f"{from_id!r} is not a promise of run {run!r} (vow show {run} lists them)")
    cut = order[from_id]
    by_id = {r.id: r for r in tree}
    ancestors = set()
    parent = by_id[from_id].parent
    while parent is not None:
        ancestors.add(parent)
        parent = by_id[parent].parent if parent in by_id else None
    return _copy(store, root, tree, new_id or next_id(store, run, "fork"), "fork",
                 lambda r: r.settled and order[r.id] < cut and r.id not in ancestors)


def retry(store: Any, run: str, *, new_id: str | None = None) -> Copy:
    """Store a new run of failed run ``run`` that reuses every result that succeeded before its first
    failure settled, so only the failed branches (and what came after them) run again."""
    root = _root(store, run)
    if not root.settled:
        raise ConfigError(f"run {run!r} is still pending: wait for it to finish, or cancel it "
                          f"(vow cancel {run}), before retrying it")
    if root.state is State.RESOLVED:
        raise ConfigError(f"run {run!r} succeeded, so there is nothing to retry; to run some of it again "
                          f"with the current code use vow fork {run} --from PROMISE_ID")
    tree = store.tree(run)
    failures = [r.settled_at or 0.0 for r in tree if r.id != run and r.state in FAILED_STATES]
    first_failure = min(failures) if failures else float("inf")
    return _copy(store, root, tree, new_id or next_id(store, run, "retry"), "retry",
                 lambda r: r.state is State.RESOLVED and r.created_at < first_failure)


def next_id(store: Any, run: str, word: str) -> str:
    """``{run}/{word}-N`` with the first N not taken (``run`` itself a fork or retry: counting on from it)."""
    match = _SUFFIX.search(run)
    base, n = (run[:match.start()], int(match.group(1)) + 1) if match else (run, 1)
    while store.get(f"{base}/{word}-{n}") is not None:
        n += 1
    return f"{base}/{word}-{n}"


def _root(store: Any, run: str) -> PromiseRecord:
    record: PromiseRecord | None = store.get(run)
    if record is None:
        raise ConfigError(f"no run with id {run!r} in {store.url} (vow ls lists the runs)")
    if record.parent is not None or record.kind is not Kind.WORKFLOW:
        raise ConfigError(f"{run!r} is a promise of run {record.root!r}, not a run; give the run's id")
    if record.tags.get(NEVER_STARTED):
        raise ConfigError(f"run {run!r} never started: its schedule's tick could not be planned "
                          f"({_error_text(record)}), so there is nothing to run again; fix the cause (the "
                          "schedule's next ticks start as usual), or start this one by hand with vow run FILE --id")
    return record


def _error_text(record: PromiseRecord) -> str:
    """The message of a failed record's stored error (its type's name and message, as stored)."""
    try:
        payload = json.loads(record.value or "")
        return f"{payload['type'].rsplit('.', 1)[-1]}: {payload['message']}"
    except (ValueError, TypeError, KeyError, AttributeError):
        return "its error cannot be read"


def _deadline(root: PromiseRecord, now: float) -> float | None:
    """The new run's deadline: the original's timeout as a duration from ``now``. The original's
    absolute deadline has passed for a run that timed out, and would be too soon for any other."""
    if root.timeout is None or root.timeout <= root.created_at:
        return None
    return now + (root.timeout - root.created_at)


def _copy(store: Any, root: PromiseRecord, tree: list[PromiseRecord], new_id: str, how: str,
          reusable: Callable[[PromiseRecord], bool]) -> Copy:
    run = root.id
    prefix = run + "."
    foreign = [r.id for r in tree if r.id != run and not r.id.startswith(prefix)]
    if foreign:
        shown = ", ".join(map(repr, foreign[:5])) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ConfigError(f"run {run!r} has promises whose ids do not start with {prefix!r} ({shown}): a {how} "
                          "cannot give the new run its own copy of them. Give ids under the run's id "
                          "(.options(id=f\"{ctx.id}.name\")) to make runs that can be forked and retried")
    if not new_id or any(map(not_in_a_run_id, new_id)):
        raise ConfigError(f"{new_id!r} is not a usable run id (no spaces, control characters or lone surrogates)")
    if new_id == run or new_id.startswith(prefix):
        raise ConfigError(f"the new run's id {new_id!r} must not be {run!r} or start with {prefix!r}")
    if store.get(new_id) is not None:
        raise ConfigError(f"a promise with id {new_id!r} exists already; give the new run another id (--id)")

    def rename(pid: str) -> str:
        return new_id + pid[len(run):]

    by_id = {r.id: r for r in tree}
    kept: dict[str, PromiseRecord] = {}
    for record in tree:  # oldest first: a parent comes before its children
        if record.id == run:
            continue
        parent = record.parent or run
        if parent in kept:  # inside a settled promise that is reused: all of it is history
            if record.settled:
                kept[record.id] = record
            continue
        if record.func == BACKOFF_FUNC:
            continue  # the retry timer of a promise that runs again
        above = by_id.get(parent)
        if parent != run and (above is None or above.kind is not Kind.WORKFLOW):
            continue  # under a call that runs again
        if reusable(record):
            kept[record.id] = record
    now = store.now()
    new_root = PromiseRecord(new_id, State.PENDING, Kind.WORKFLOW, new_id, root.func, root.args, None, None,
                             _deadline(root, now), new_id, 1, now, None, {**root.tags, FORK_OF: run})
    copies = [attrs.evolve(r, id=rename(r.id), root=new_id, parent=rename(r.parent or run),
                           idempotency_key=rename(r.idempotency_key) if r.idempotency_key.startswith(prefix)
                           else r.idempotency_key, tags={**r.tags, COPIED_FROM: r.id})
              for r in kept.values()]
    result = store.apply(Batch(creates=[new_root, *copies], outside=True))
    if new_id in result.existing:
        raise ConfigError(f"a promise with id {new_id!r} was stored meanwhile; give the new run another id (--id)")
    rerun = tuple(r.id for r in tree if r.parent == run and r.id not in kept and r.kind in (Kind.STEP, Kind.WORKFLOW))
    return Copy(run, new_id, tuple(kept), rerun)
