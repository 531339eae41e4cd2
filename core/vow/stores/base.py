"""The store contract: what every promise store does, written down once.

A store keeps promise records and the leases that say which worker runs which root workflow.
Writes go through :meth:`Store.apply`, one atomic commit per :class:`~vow.records.Batch`, so
the engine can group many creates and settles into a single transaction (a group commit).
The suite in :mod:`vow.testing` checks every rule below against any store.

Rules:

* ``apply`` is atomic: all of a batch or none of it. It first checks ``fences`` (root id ->
  lease token); if any root's current token differs, or its root promise exists and is already
  settled (canceled from outside), it raises :class:`~vow.errors.LeaseLostError` (``.roots``
  lists them) and writes nothing. So a run stops at its next commit once it is no longer its to run.
* Creates are create-or-get: an id that exists is left as it is and its stored record is
  returned in ``BatchResult.existing``.
* Settles move a pending promise to a settled state. Settling a promise already settled with
  the same state and value does nothing; with a different outcome it changes nothing and the
  stored record is returned in ``BatchResult.conflicts``. Settling an id that does not exist
  raises :class:`~vow.errors.PromiseNotFoundError` and writes nothing.
* ``attempts`` sets the attempt count of pending promises (settled ones are left alone).
* A lease is claimed when it is free, expired, or held by a process on this host that no
  longer exists; every new owner gets a larger token. Claiming a lease you hold renews it.
  A released lease keeps its token, so tokens only grow.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Iterable, Protocol, Sequence, runtime_checkable

from vow.errors import AlreadySettledError, PromiseNotFoundError
from vow.records import Batch, BatchResult, Kind, Lease, PromiseRecord, Settle, State

FORMAT_VERSION = 1
"""The store format this vow writes; a store written by a newer format is refused."""


@runtime_checkable
class Store(Protocol):
    """The operations every store provides (see the module docstring for the rules)."""

    url: str

    def apply(self, batch: Batch) -> BatchResult:
        """Apply a batch atomically (fences, creates, settles, attempts)."""

    def get(self, id: str) -> PromiseRecord | None:
        """The record with ``id``, or ``None``."""

    def get_many(self, ids: Iterable[str]) -> dict[str, PromiseRecord]:
        """The records among ``ids`` that exist, by id."""

    def children(self, parent: str) -> list[PromiseRecord]:
        """Direct children of ``parent``, oldest first."""

    def tree(self, root: str) -> list[PromiseRecord]:
        """Every record whose root is ``root`` (the root included), oldest first."""

    def search(self, *, state: State | None = None, kind: Kind | None = None, root: str | None = None,
               roots_only: bool = False, tag: tuple[str, str] | None = None,
               limit: int = 1000) -> list[PromiseRecord]:
        """Records matching every given filter, newest first, at most ``limit``."""

    def claimable(self, *, limit: int = 100, now: float | None = None) -> list[PromiseRecord]:
        """Pending root workflows whose lease is free, expired or held by a dead local process."""

    def claim(self, root: str, owner: str, ttl: float, *, now: float | None = None) -> Lease | None:
        """Take (or renew) the lease on ``root`` for ``ttl`` seconds; ``None`` if another live owner holds it."""

    def claim_many(self, roots: Sequence[str], owner: str, ttl: float, *,
                   now: float | None = None) -> dict[str, Lease]:
        """:meth:`claim` for many roots at once (one transaction where the store has them); the ones taken."""

    def renew(self, leases: Sequence[Lease], ttl: float, *, now: float | None = None) -> list[Lease]:
        """Extend the leases still held (same owner and token); the ones lost are left out."""

    def release(self, lease: Lease) -> None:
        """Give up a lease if still held; its token is kept."""

    def release_many(self, leases: Sequence[Lease]) -> None:
        """:meth:`release` for many leases at once."""

    def lease(self, root: str) -> Lease | None:
        """The current lease row for ``root`` (held or not), or ``None``."""

    def close(self) -> None:
        """Release resources; the store is unusable afterwards."""

    # -- listings (runs and their branches, for `vow ls` and the web console) -------------------

    def runs(self, *, state: State | None = None, name: str | None = None, since: float | None = None,
             until: float | None = None, before: tuple[float, str] | None = None,
             limit: int = 50) -> list[PromiseRecord]:
        """Root workflows, newest first (see :meth:`StoreOperations.runs` for the filters)."""

    def branch_counts(self, roots: Iterable[str]) -> dict[str, dict[State, int]]:
        """Each root's branches counted by state (see :meth:`StoreOperations.branch_counts`)."""


class StoreOperations:
    """Single-record conveniences built on :meth:`Store.apply`; mix into a store class."""

    def create(self, record: PromiseRecord) -> tuple[PromiseRecord, bool]:
        """Create ``record`` unless its id exists; return ``(stored record, created)``."""
        result = self.apply(Batch(creates=[record]))  # type: ignore[attr-defined]
        existing = result.existing.get(record.id)
        return (existing, False) if existing is not None else (record, True)

    def settle(self, id: str, state: State, value: str | None, *, settled_at: float | None = None) -> PromiseRecord:
        """Settle ``id``; a different outcome than the stored one raises :class:`AlreadySettledError`."""
        result = self.apply(Batch(settles=[Settle(id, state, value, settled_at or time.time())]))  # type: ignore[attr-defined]
        conflict = result.conflicts.get(id)
        if conflict is not None:
            raise AlreadySettledError(
                f"promise {id!r} is already {conflict.state.value}; cannot settle it as {state.value} "
                "with a different value"
            )
        record = self.get(id)  # type: ignore[attr-defined]
        if record is None:
            raise PromiseNotFoundError(f"no promise with id {id!r}")
        return record


    def claim_many(self, roots: Sequence[str], owner: str, ttl: float, *,
                   now: float | None = None) -> dict[str, Lease]:
        """Claim each root in turn; a store with transactions should do it in one."""
        taken = {}
        for root in roots:
            lease = self.claim(root, owner, ttl, now=now)  # type: ignore[attr-defined]
            if lease is not None:
                taken[root] = lease
        return taken

    def release_many(self, leases: Sequence[Lease]) -> None:
        """Release each lease in turn; a store with transactions should do it in one."""
        for lease in leases:
            self.release(lease)  # type: ignore[attr-defined]


    # -- listings: runs and their branches (for `vow ls` and the web console) --------------------
    # These defaults are built on the protocol's reads, so every store has them; the shipped
    # stores override them with one indexed query each.

    def runs(self, *, state: State | None = None, name: str | None = None, since: float | None = None,
             until: float | None = None, before: tuple[float, str] | None = None,
             limit: int = 50) -> list[PromiseRecord]:
        """Root workflows (runs), newest first: ordered by ``(created_at, id)`` descending.

        ``state``: only runs in this state. ``name``: only runs of this name (:func:`run_name`:
        a YAML pipeline run's is its pipeline's name, any other run's its workflow's). ``since`` / ``until``:
        started at or after / before these epoch seconds. ``before``: a keyset cursor, the
        ``(created_at, id)`` of the last run of the previous page; only runs strictly older are
        returned. At most ``limit`` runs.
        """
        if limit <= 0:
            return []
        wanted = State(state) if state is not None else None
        fetch = max(limit * 4, 256)
        while True:
            found = self.search(state=wanted, kind=Kind.WORKFLOW, roots_only=True, limit=fetch)  # type: ignore[attr-defined]
            complete = len(found) < fetch
            if not complete:  # the cut may split records that share the oldest created_at: keep whole groups
                oldest = found[-1].created_at
                found = [r for r in found if r.created_at > oldest]
            matching = sorted((r for r in found if run_matches(r, name, since, until, before)),
                              key=run_key, reverse=True)
            if complete or len(matching) >= limit:
                return matching[:limit]
            fetch *= 4

    def branch_counts(self, roots: Iterable[str]) -> dict[str, dict[State, int]]:
        """Each root's branches counted by state: ``{root: {state: n}}`` (states with none left out).

        A run's branches are its root's direct children that are steps or child workflows: what
        the root fans out. Not counted: sleeps and outside promises (a gate is not a branch),
        the back-off timers of retries (sleeps), and the bookkeeping steps of vow's own workflows
        (:data:`INTERNAL_STEPS`). A child workflow counts as one branch, in its own state; its
        leaves are its business. Every root asked for is in the answer (an unknown one with ``{}``).
        """
        counts: dict[str, dict[State, int]] = {}
        for root in dict.fromkeys(roots):
            tally: dict[State, int] = {}
            for child in self.children(root):  # type: ignore[attr-defined]
                if is_branch(child):
                    tally[child.state] = tally.get(child.state, 0) + 1
            counts[root] = tally
        return counts


def same_outcome(record: PromiseRecord, settle: Settle) -> bool:
    """Whether ``settle`` repeats the outcome already stored in ``record``."""
    return record.state is settle.state and record.value == settle.value


# -- lease owners -----------------------------------------------------------------------------

def _process_start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return "0"


_HOST = socket.gethostname()


def new_owner_id() -> str:
    """A lease owner id: ``host:pid:process-start-time:random``, so a dead local owner can be detected."""
    pid = os.getpid()
    return f"{_HOST}:{pid}:{_process_start_time(pid)}:{uuid.uuid4().hex[:12]}"


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` ran on this host in a process that no longer exists (or was replaced)."""
    parts = owner.split(":")
    if len(parts) != 4 or parts[0] != _HOST:
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _process_start_time(pid) != parts[2]


def lease_is_free(lease: Lease | None, owner: str, now: float) -> bool:
    """Whether ``owner`` may take ``lease``: none, released, expired, its own, or a dead local owner's."""
    return (lease is None or not lease.owner or lease.owner == owner or lease.expires_at <= now
            or owner_is_dead(lease.owner))


# -- listings: what a run and a branch are (shared by every store's listing methods) ----------

INTERNAL_STEPS = ("started", "gallery", "result")
"""Bookkeeping steps vow's own workflows make under a run (``{run}.started`` and so on): not branches.
The same names that :data:`vow.pipeline.workflow.RESERVED` keeps branches from using."""

BRANCH_KINDS = (Kind.STEP, Kind.WORKFLOW)
"""The kinds of promise that are a run's branches (sleeps and outside promises are not)."""


def pipeline_workflow() -> str:
    """The registered name of the workflow YAML pipelines run as (``vow.pipeline``)."""
    from vow.pipeline.workflow import NAME

    return NAME


def run_name(record: PromiseRecord) -> str:
    """A run's name: its pipeline's name for a YAML pipeline run, else its workflow's name (``func``)."""
    if record.func == pipeline_workflow():
        import json

        try:
            args = json.loads(record.args)
        except ValueError:
            return record.func
        # A pipeline's one argument, its spec, is stored as ``[spec]`` (see vow.encoding.encode_args).
        if isinstance(args, list) and args and isinstance(args[0], dict) and isinstance(args[0].get("name"), str):
            return args[0]["name"]
    return record.func


def run_key(record: PromiseRecord) -> tuple[float, str]:
    """The order of :meth:`StoreOperations.runs` (newest first = descending) and its cursor."""
    return (record.created_at, record.id)


def run_matches(record: PromiseRecord, name: str | None, since: float | None, until: float | None,
                before: tuple[float, str] | None) -> bool:
    """Whether a root passes the ``name``, time and cursor filters of :meth:`StoreOperations.runs`."""
    if since is not None and record.created_at < since:
        return False
    if until is not None and record.created_at >= until:
        return False
    if before is not None and run_key(record) >= (float(before[0]), str(before[1])):
        return False
    return name is None or run_name(record) == name


def is_branch(record: PromiseRecord) -> bool:
    """Whether a direct child of a run's root is one of its branches (see :meth:`StoreOperations.branch_counts`)."""
    if record.kind not in BRANCH_KINDS or record.parent is None:
        return False
    return not (record.id.startswith(record.parent + ".") and record.id[len(record.parent) + 1:] in INTERNAL_STEPS)
