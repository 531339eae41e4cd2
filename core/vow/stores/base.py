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
from typing import TYPE_CHECKING, Collection, Iterable, Protocol, Sequence, runtime_checkable

from vow.errors import AlreadySettledError, PromiseNotFoundError
from vow.records import Batch, BatchResult, Kind, Lease, PromiseRecord, Settle, State
from vow.retention import FINISHED_STATES, prune_store

if TYPE_CHECKING:
    from vow.retention import PruneResult

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

    # -- retention (added for `vow prune`; see vow.retention) ------------------------------------

    def delete_runs(self, roots: Sequence[str], *, settled_before: float) -> dict[str, int]:
        """Delete whole runs: of each root in ``roots`` whose promise is settled before
        ``settled_before``, every record whose root it is (itself included) and its lease, in
        one atomic write. A root that is pending, missing, not a root, or settled later is left
        whole. Returns the number of records deleted per run deleted."""

    def prune(self, *, before: float, states: Collection[State] = ..., dry_run: bool = False,
              compact: bool = False) -> "PruneResult":
        """Delete every run whose root settled in ``states`` (default: all settled states) before
        ``before``, and give the space back where the store can do it without blocking writers.
        ``dry_run`` deletes nothing and reports what would go; ``compact`` lets a store rewrite
        its files to give back all free space (slow; writers wait meanwhile)."""


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

    # -- retention (added for `vow prune`; see vow.retention) ------------------------------------

    def prune(self, *, before: float, states: Collection[State] = FINISHED_STATES, dry_run: bool = False,
              compact: bool = False) -> "PruneResult":
        """Prune through :meth:`Store.search`, :meth:`Store.tree` and :meth:`Store.delete_runs`
        (:func:`vow.retention.prune_store`); a store with a query language should do it there."""
        return prune_store(self, before=before, states=states, dry_run=dry_run)  # type: ignore[arg-type]


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
