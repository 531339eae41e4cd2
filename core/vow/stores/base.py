"""The store contract: what every promise store does, written down once.

A store keeps promise records and the leases that say which worker runs which root workflow.
Writes go through :meth:`Store.apply`, one atomic commit per :class:`~vow.records.Batch`, so
the engine can group many creates and settles into a single transaction (a group commit).
The suite in :mod:`vow.testing` checks every rule below against any store.

Rules of ``apply`` (all of a batch or none of it):

* **Fences.** ``fences`` maps root id -> the lease token the writer holds. If any root's current
  token differs, or its root promise exists and is already settled (canceled from outside), the
  store raises :class:`~vow.errors.LeaseLostError` (``.roots`` lists them) and writes nothing.
  So a run stops at its next commit once it is no longer its to run.
* **Creates** are create-or-get: an id that exists is left as it is and its stored record is
  returned in ``BatchResult.existing``. A batch names each id once among its creates (the
  engine never makes one promise twice); what a store does with a repeated id is not defined.
* **Settles** move a pending promise to a settled state. Settling a promise already settled with
  the same state and value does nothing. With a different outcome it changes nothing and the
  stored record is returned in ``BatchResult.conflicts``. Settling an id that does not exist
  raises :class:`~vow.errors.PromiseNotFoundError` and writes nothing.
* **Deadlines belong to the store.** A pending promise that is not a sleep and whose ``timeout``
  has passed by the store's clock (:meth:`Store.now`) can no longer be resolved or rejected: a
  settle to ``resolved`` or ``rejected`` times it out instead, in the same transaction (state
  ``timedout``, value :func:`timeout_error_text`, ``settled_at`` the late settle's), and reports
  the timed-out record in ``conflicts``. Whoever touches it first after the deadline times it out.
* **Transitions are all or nothing per engine round.** A batch with ``fences`` (an engine's commit)
  settles each id once (the engine settles a promise once); what a store reports for a repeated one
  is not defined. In such a batch, a settle that conflicts (including by the deadline rule) or a
  create whose parent was already settled before the batch (a child workflow canceled from outside)
  raises :class:`~vow.errors.ConflictError` (``.roots``: the roots concerned, ``.records``: the
  stored records that won) and writes nothing — not even the timeout. The engine then drops those
  roots' writes, commits the rest, and replays those roots from the store, so a workflow never
  goes on from a transition that was not stored.
* ``attempts`` sets the attempt count of pending promises (settled ones are left alone).
* ``outside=True`` marks the writes of a client outside the engine (``resolve``, ``cancel``,
  ``submit``): every promise it actually creates or settles is appended to the **change feed**
  (:meth:`Store.changes`), which running engines and workers read to learn of them quickly.

Ids no store can keep (a lone surrogate, a NUL character: :func:`vow.naming.why_unstorable`):
the engine refuses them at the call, so none is ever stored. A lookup by one (``get``,
``get_many``, ``children``, ``tree(s)``, ``search``, ``branch_counts``, ``lease``, ``lease_free``)
finds nothing, as for any id that does not exist, and a write about one that cannot exist
(``release``, ``renew``, ``unpark``, ``delete_runs``) does nothing; a claim of one raises
:class:`~vow.errors.EncodeError` and claims nothing, and so does a write that would store one (an
``apply`` whose creates, settles or fences hold one, ``take_token``, ``hold_bucket``): it writes
nothing (:func:`refuse_unstorable_batch`).

Leases:

* A lease is claimed when it is free (never held, or released), held by an owner the store knows
  is dead, or expired by the store's clock while the store cannot tell whether its owner lives
  (see :meth:`Store.hold_owner`). A lease of an owner the store knows is alive is never taken,
  expired or not: a wall-clock step that makes every lease look expired takes nothing from a
  live process. When unsure, only expiry frees a lease — never a guess of "dead".
  Every new owner gets a larger token; claiming a lease you hold renews it; a released lease
  keeps its token, so tokens only grow.
* A claim that takes a lease over from another owner that never released it (a crash, a kill, an
  expiry) counts one **recovery** of that root; a release resets the count. With
  ``max_recoveries`` set, the claim that would exceed it **parks** the root instead: the lease is
  freed, ``parked`` holds the reason, and the root is no longer claimable until
  :meth:`Store.unpark` (``vow resume --force``). That stops a run whose resumption kills its
  process (a segfault, an OOM kill, ``os._exit``) from being resumed forever.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from vow.errors import (
    AlreadySettledError,
    ConflictError,
    LeaseLostError,
    PromiseNotFoundError,
    PromiseTimeoutError,
)
from vow.naming import refuse_unstorable, storable
from vow.records import Batch, BatchResult, Kind, Lease, PromiseRecord, Settle, State
from vow.reserved import INTERNAL_STEPS, PIPELINE_WORKFLOW
from vow.retention import FINISHED_STATES, prune_store
from vow.schedules.record import ScheduleRecord
from vow.stores.owners import new_owner_id

if TYPE_CHECKING:
    from vow.retention import PruneResult

__all__ = [
    "FORMAT_VERSION", "ChangeFeed", "CheckedOwnersStore", "ParkedLeasesStore", "PushingStore", "Store",
    "StoreOperations", "new_owner_id", "parked_reason", "same_outcome", "search_conditions", "timeout_error_text",
    "tree_holding",
]

FORMAT_VERSION = 3
"""The store format this vow writes; a store written by a newer format is refused.
(3: schedules and rate-limit buckets.)"""


@attrs.frozen(slots=True)
class ChangeFeed:
    """What :meth:`Store.changes` returns: outside writes after a sequence number.

    ``entries`` are ``(root id, promise id)`` pairs in commit order; ``seq`` is the sequence
    number to pass next time. ``complete`` is false when entries after ``after`` were already
    dropped from the feed (it keeps a bounded window): the reader must then re-read what it
    holds in memory instead of trusting the feed.
    """

    seq: int
    entries: list[tuple[str, str]] = attrs.field(factory=list)
    complete: bool = True


@runtime_checkable
class Store(Protocol):
    """The operations every store provides (see the module docstring for the rules)."""

    url: str

    def apply(self, batch: Batch) -> BatchResult:
        """Apply a batch atomically (fences, creates, settles, attempts)."""

    def create(self, record: PromiseRecord, *, outside: bool = False) -> tuple[PromiseRecord, bool]:
        """Create ``record`` unless its id exists; return ``(stored record, created)``."""

    def settle(self, id: str, state: State, value: str | None, *, settled_at: float | None = None,
               outside: bool = False) -> PromiseRecord:
        """Settle ``id``; raise :class:`~vow.errors.AlreadySettledError` if it settled otherwise first."""

    def get(self, id: str) -> PromiseRecord | None:
        """The record with ``id``, or ``None``."""

    def get_many(self, ids: Iterable[str]) -> dict[str, PromiseRecord]:
        """The records among ``ids`` that exist, by id."""

    def children(self, parent: str) -> list[PromiseRecord]:
        """Direct children of ``parent``, oldest first."""

    def tree(self, root: str) -> list[PromiseRecord]:
        """Every record whose root is ``root`` (the root included), oldest first."""

    def trees(self, roots: Sequence[str]) -> dict[str, list[PromiseRecord]]:
        """The trees of several roots at once (root id -> its records, oldest first; a root that does
        not exist is left out)."""

    def search(self, *, state: State | None = None, kind: Kind | None = None, root: str | None = None,
               roots_only: bool = False, tag: tuple[str, str] | None = None,
               limit: int = 1000) -> list[PromiseRecord]:
        """Records matching every given filter, newest first, at most ``limit``."""

    def now(self) -> float:
        """The store's clock, in epoch seconds: lease expiry and deadlines are judged by it."""

    def changes(self, after: int | None) -> ChangeFeed:
        """Outside writes committed after sequence number ``after`` (``0``: from the start of the
        window the feed keeps); ``None``: no entries, only the current sequence number."""

    def hold_owner(self, owner: str) -> bool:
        """Show that ``owner`` (a lease owner id of this process) is alive until :meth:`release_owner`.

        Returns whether the store can tell when this owner dies (a lock held by the process, a
        database session): if so, another worker takes its leases at once after it dies instead
        of waiting for them to expire. Call it before the owner's first claim.
        """

    def release_owner(self, owner: str) -> None:
        """``owner`` stops running anything; its leases may be taken at once."""

    def owner_alive(self, owner: str) -> bool | None:
        """Whether ``owner`` runs: ``True`` (it holds its liveness), ``False`` (it surely stopped), or
        ``None`` when the store cannot tell (an owner on another machine, an older vow)."""

    def claimable(self, *, limit: int = 100, now: float | None = None) -> list[PromiseRecord]:
        """Pending, unparked root workflows whose lease is free, expired or held by a dead owner; oldest first."""

    def claim(self, root: str, owner: str, ttl: float, *, now: float | None = None,
              max_recoveries: int | None = None) -> Lease | None:
        """Take (or renew) the lease on ``root`` for ``ttl`` seconds; ``None`` if held by another owner or parked."""

    def claim_many(self, roots: Sequence[str], owner: str, ttl: float, *, now: float | None = None,
                   max_recoveries: int | None = None) -> dict[str, Lease]:
        """:meth:`claim` for many roots at once (one transaction where the store has them); the ones taken."""

    def renew(self, leases: Sequence[Lease], ttl: float, *, now: float | None = None) -> list[Lease]:
        """Extend the leases still held (same owner and token); the ones lost are left out."""

    def release(self, lease: Lease) -> None:
        """Give up a lease if still held; its token is kept and its recovery count reset."""

    def release_many(self, leases: Sequence[Lease]) -> None:
        """:meth:`release` for many leases at once."""

    def lease(self, root: str) -> Lease | None:
        """The current lease row for ``root`` (held or not), or ``None``."""

    def lease_free(self, root: str) -> bool:
        """Whether ``root``'s lease may be claimed now (free, expired, a dead owner's; not parked)."""

    def unpark(self, root: str) -> bool:
        """Make a parked root claimable again with its recovery count reset; whether it was parked."""

    def close(self) -> None:
        """Release resources; the store is unusable afterwards."""

    # -- retention (added for `vow prune`; see vow.retention) ------------------------------------

    def delete_runs(self, roots: Sequence[str], *, settled_before: float) -> dict[str, int]:
        """Delete whole runs: of each root in ``roots`` whose promise is settled before
        ``settled_before``, every record whose root it is (itself included) and its lease, in
        one atomic write. A root that is pending, missing, not a root, or settled later is left
        whole. Returns the number of records deleted per run deleted."""

    def prune(self, *, before: float, states: Collection[State] = ..., dry_run: bool = False,
              compact: bool = False) -> PruneResult:
        """Delete every run whose root settled in ``states`` (default: all settled states) before
        ``before``, and give the space back where the store can do it without blocking writers.
        ``dry_run`` deletes nothing and reports what would go; ``compact`` lets a store rewrite
        its files to give back all free space (slow; writers wait meanwhile)."""
    # -- listings (runs and their branches, for `vow ls` and the web console) -------------------

    def runs(self, *, state: State | None = None, name: str | None = None, since: float | None = None,
             until: float | None = None, before: tuple[float, str] | None = None,
             limit: int = 50) -> list[PromiseRecord]:
        """Root workflows, newest first (see :meth:`StoreOperations.runs` for the filters)."""

    def branch_counts(self, roots: Iterable[str]) -> dict[str, dict[State, int]]:
        """Each root's branches counted by state (see :meth:`StoreOperations.branch_counts`)."""

    # -- schedules (added for `vow schedule`; see vow.schedules) ----------------------------------
    # A store keeps schedule rows and never interprets their definition. Every worker reads them
    # and fires each due tick as a run whose id is derived from the schedule and the tick, so two
    # workers that fire the same tick join one run: these methods need no locking beyond a row.

    def schedules(self) -> list[ScheduleRecord]:
        """Every stored schedule, ordered by name."""

    def put_schedule(self, schedule: ScheduleRecord) -> None:
        """Create the schedule ``schedule.name``, or replace every field of the stored one
        (``cursor`` included: the caller passes the one it read to keep it). ``updated_at`` is
        set to the store's clock."""

    def advance_schedule(self, name: str, cursor: float) -> bool:
        """Move schedule ``name``'s cursor forward to ``cursor``: only when the stored cursor is
        ``None`` or smaller (a cursor never moves back). Whether it moved; ``False`` for an
        unknown name."""

    def delete_schedule(self, name: str) -> bool:
        """Delete schedule ``name``; whether it existed. Runs it fired are left alone."""

    # -- rate limits (added for shared rate limits; see vow.ratelimit) ----------------------------
    # A token bucket per name, shared by every worker of the store. Tokens refill at
    # ``per_second`` up to ``burst``; time is the store's clock (``now`` overrides it in tests).
    # Each call is one atomic read-modify-write of the bucket's row.

    def take_token(self, bucket: str, per_second: float, burst: int, *, now: float | None = None) -> float:
        """Take one token from ``bucket`` if it has one: returns ``0.0``. Otherwise take nothing
        and return the seconds until a token will be there (or until the bucket's hold ends).
        A bucket never used before starts full (``burst`` tokens)."""

    def hold_bucket(self, bucket: str, seconds: float, *, now: float | None = None) -> None:
        """Give no token from ``bucket`` for ``seconds`` from now (a provider answered 429 with
        ``Retry-After``); when the hold ends the bucket has one token and refills from there. A
        hold never shortens a longer one already in place."""


@runtime_checkable
class PushingStore(Protocol):
    """A store that can tell a waiting engine about outside writes as they commit (PostgreSQL's
    ``LISTEN/NOTIFY``); engines poll the change feed of stores that cannot."""

    def subscribe(self, on_change: Callable[[], None]) -> Callable[[], None]:
        """Call ``on_change()`` (from any thread) after each outside write; returns an unsubscribe function."""


@runtime_checkable
class SubtreeStore(Protocol):
    """A store that reads a promise's subtree without the rest of its run (SQLite: through its index of
    parents; PostgreSQL: the server follows the parents and sends the branch alone); ``vow show`` and
    :meth:`Vow.cancel <vow.Vow.cancel>` of a branch read the run's whole tree from other stores."""

    def subtree(self, id: str) -> list[PromiseRecord]:
        """``id``'s record and every record under it, oldest first (``[]`` when there is no ``id``)."""


@runtime_checkable
class ParkedLeasesStore(Protocol):
    """A store that reads its parked leases alone, through an index of them (SQLite, PostgreSQL):
    ``vow ls --state parked`` reads the parked runs, not the lease of every pending run in turn."""

    def parked_leases(self) -> list[Lease]:
        """Every parked lease (``parked`` holds the reason), ordered by root."""


@runtime_checkable
class CheckedOwnersStore(Protocol):
    """A store whose showing an owner alive can end while the process lives (PostgreSQL: a server
    restart ends the session holding the owners' locks). The lease keeper asks it to check every
    renewal interval from the moment its owner is shown alive, leases held or not."""

    def check_owners(self) -> None:
        """Show the owners this process holds alive again if what showed them ended."""


class StoreOperations:
    """Conveniences built on the protocol; mix into a store class."""

    def create(self: Store, record: PromiseRecord, *, outside: bool = False) -> tuple[PromiseRecord, bool]:
        """Create ``record`` unless its id exists; return ``(stored record, created)``."""
        result = self.apply(Batch(creates=[record], outside=outside))
        existing = result.existing.get(record.id)
        return (existing, False) if existing is not None else (record, True)

    def settle(self: Store, id: str, state: State, value: str | None, *, settled_at: float | None = None,
               outside: bool = False) -> PromiseRecord:
        """Settle ``id``; a different outcome than the stored one raises :class:`AlreadySettledError`,
        and a resolve or reject after the promise's deadline raises :class:`PromiseTimeoutError`."""
        when = settled_at if settled_at is not None else self.now()
        result = self.apply(Batch(settles=[Settle(id, state, value, when)], outside=outside))
        conflict = result.conflicts.get(id)
        if conflict is not None:
            if conflict.state is State.TIMEDOUT and state in (State.RESOLVED, State.REJECTED):
                raise PromiseTimeoutError(
                    f"promise {id!r} timed out (its deadline passed before this {state.value} arrived); "
                    "it can no longer be settled")
            raise AlreadySettledError(
                f"promise {id!r} is already {conflict.state.value}; cannot settle it as {state.value} "
                "with a different value"
            )
        record = self.get(id)
        if record is None:
            raise PromiseNotFoundError(f"no promise with id {id!r}")
        return record

    def trees(self: Store, roots: Sequence[str]) -> dict[str, list[PromiseRecord]]:
        """One :meth:`tree` per root; stores that can read them in one query override this."""
        found = {root: self.tree(root) for root in roots}
        return {root: tree for root, tree in found.items() if tree}

    def now(self: Store) -> float:
        """The store's clock: this machine's wall clock (override for a database server's)."""
        return time.time()

    def lease_free(self: Store, root: str) -> bool:
        """Whether ``root``'s lease may be claimed now (free, expired, a dead owner's; not parked)."""
        return storable(root) and lease_claimable(self.lease(root), "", self.now(), self.owner_alive)

    def claim_many(self: Store, roots: Sequence[str], owner: str, ttl: float, *, now: float | None = None,
                   max_recoveries: int | None = None) -> dict[str, Lease]:
        """Claim each root in turn; a store with transactions should do it in one."""
        refuse_unstorable(roots, LEASE_ROOT)  # all checked first: no root is claimed when one is refused
        taken = {}
        for root in roots:
            lease = self.claim(root, owner, ttl, now=now, max_recoveries=max_recoveries)
            if lease is not None:
                taken[root] = lease
        return taken

    def release_many(self: Store, leases: Sequence[Lease]) -> None:
        """Release each lease in turn; a store with transactions should do it in one."""
        for lease in leases:
            self.release(lease)

    # -- retention (added for `vow prune`; see vow.retention) ------------------------------------

    def prune(self: Store, *, before: float, states: Collection[State] = FINISHED_STATES, dry_run: bool = False,
              compact: bool = False) -> PruneResult:
        """Prune through :meth:`Store.search`, :meth:`Store.tree` and :meth:`Store.delete_runs`
        (:func:`vow.retention.prune_store`); a store with a query language should do it there."""
        return prune_store(self, before=before, states=states, dry_run=dry_run)


    # -- listings: runs and their branches (for `vow ls` and the web console) --------------------
    # These defaults are built on the protocol's reads, so every store has them; the shipped
    # stores override them with one indexed query each.

    def runs(self: Store, *, state: State | None = None, name: str | None = None, since: float | None = None,
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
            found = self.search(state=wanted, kind=Kind.WORKFLOW, roots_only=True, limit=fetch)
            complete = len(found) < fetch
            if not complete:  # the cut may split records that share the oldest created_at: keep whole groups
                oldest = found[-1].created_at
                found = [r for r in found if r.created_at > oldest]
            matching = sorted((r for r in found if run_matches(r, name, since, until, before)),
                              key=run_key, reverse=True)
            if complete or len(matching) >= limit:
                return matching[:limit]
            fetch *= 4

    def branch_counts(self: Store, roots: Iterable[str]) -> dict[str, dict[State, int]]:
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
            for child in self.children(root):
                if is_branch(child):
                    tally[child.state] = tally.get(child.state, 0) + 1
            counts[root] = tally
        return counts

    # -- schedules (see Store.schedules and vow.schedules) ---------------------------------------

    def schedule(self: Store, name: str) -> ScheduleRecord | None:
        """The stored schedule ``name``, or ``None`` (built on :meth:`Store.schedules`)."""
        return next((s for s in self.schedules() if s.name == name), None)


LEASE_ROOT = "the root id of a lease"
"""What a claim of a root id no store can keep names (see :func:`vow.naming.refuse_unstorable`)."""
BUCKET = "a rate limit's bucket name"
"""What a take or hold of a bucket name no store can keep names."""


def tree_holding(store: Store, record: PromiseRecord) -> list[PromiseRecord]:
    """Records holding ``record`` and every promise under it, oldest first (``tree()``'s order): a branch
    of a run of 100,000 is read alone where the store can (:class:`SubtreeStore`), else with its whole
    run in one query (not a level at a time: PostgreSQL's children() reads the run's tree, each time)."""
    if record.parent is not None and isinstance(store, SubtreeStore):
        return store.subtree(record.id)
    return store.tree(record.root)


def refuse_unstorable_batch(batch: Batch) -> None:
    """Raise :class:`~vow.errors.EncodeError` when ``batch`` holds a text no store can keep (an id, a
    root, a parent, an idempotency key, a function name or a tag of a create; the id of a settle; a
    fenced root): :meth:`Store.apply` writes nothing then.

    Every commit of the engine passes here, so the usual batch (plain ASCII, no NUL) costs one test
    of each record's texts joined (:func:`vow.naming.storable`); the culprit is looked for only when one fails."""
    for r in batch.creates:
        if not storable(r.id + r.root + r.idempotency_key + r.func + (r.parent or "")) or (
                r.tags and not storable("".join((*r.tags, *r.tags.values())))):
            refuse_unstorable([r.id, r.root, r.idempotency_key, r.func, r.parent or "", *r.tags, *r.tags.values()],
                              f"promise {r.id!r}: its id, root, parent, key, function or a tag")
    for s in batch.settles:
        if not storable(s.id):
            refuse_unstorable([s.id], "the id of a settled promise")
    for root in batch.fences:
        if not storable(root):
            refuse_unstorable([root], LEASE_ROOT)


def bucket_after_take(tokens: float, stamp: float, per_second: float, burst: int,
                      now: float) -> tuple[float, float, float]:
    """The token-bucket rule of :meth:`Store.take_token`, shared by the stores that keep a bucket as
    ``(tokens, stamp)``: ``tokens`` were there at ``stamp``, or, when ``tokens`` is negative, the
    bucket is held until ``stamp`` by a hold ``-tokens`` seconds long (:func:`bucket_after_hold`).

    Returns ``(wait, tokens, stamp)`` to store: ``wait`` is ``0.0`` when a token was taken.

    A stamp is read on the wall clock, which can step back (a clock set right, a VM restored). A
    bucket's stamp then lies ahead of ``now``: no time is counted as passed since it, instead of
    waiting for the clock to catch up (an hour for an hour's step); a hold lasts at most its own
    length from ``now``."""
    if tokens < 0.0:  # held
        length = -tokens
        if now < stamp:
            stamp = min(stamp, now + length)
            return stamp - now, tokens, stamp
        tokens = 1.0  # the hold is over: one token at its end, refilling from there
    elif now < stamp:
        stamp = now
    available = min(float(burst), tokens + (now - stamp) * per_second)
    if available >= 1.0 - 1e-9:
        return 0.0, max(0.0, available - 1.0), now
    return (1.0 - available) / per_second, available, now


def bucket_after_hold(tokens: float, stamp: float, seconds: float, now: float) -> tuple[float, float]:
    """The ``(tokens, stamp)`` of a bucket held for ``seconds`` from ``now`` (see :meth:`Store.hold_bucket`):
    ``(-seconds, now + seconds)``, the hold's length kept so that a wall clock stepped back never
    makes it longer; a longer hold in place stays, and a hold of no time changes nothing."""
    if not seconds > 0.0:
        return tokens, stamp
    if tokens < 0.0 and min(stamp, now - tokens) >= now + seconds:
        return tokens, min(stamp, now - tokens)
    return -seconds, now + seconds


def lease_lost_error(roots: list[str]) -> LeaseLostError:
    """The error a fenced batch raises when ``roots`` are no longer the writer's to run."""
    return LeaseLostError(f"lease lost on {', '.join(map(repr, roots))}: another worker took over, "
                          "or the workflow was settled (canceled) from outside", roots=roots)


def conflict_error(won: dict[str, PromiseRecord]) -> ConflictError:
    """The error a fenced batch raises when ``won`` (stored records, by id) settled otherwise first."""
    roots = sorted({record.root for record in won.values()})
    return ConflictError(f"{', '.join(map(repr, sorted(won)))} settled otherwise first (from outside, or by "
                         "its deadline); nothing of this batch was written", roots=roots, records=dict(won))


def search_conditions(mark: str, *, state: State | None, kind: Kind | None, root: str | None,
                      roots_only: bool) -> tuple[list[str], list[Any]]:
    """The ``WHERE`` conditions and parameters of :meth:`StoreOperations.search`'s column filters, with
    ``mark`` as the driver's placeholder (``?``, ``%s``); a store adds its own tag condition."""
    where: list[str] = []
    params: list[Any] = []
    if state is not None:
        where.append(f"state = {mark}")
        params.append(State(state).value)
    if kind is not None:
        where.append(f"kind = {mark}")
        params.append(Kind(kind).value)
    if root is not None:
        where.append(f"root = {mark}")
        params.append(root)
    if roots_only:
        where.append("parent IS NULL")
    return where, params


def same_outcome(record: PromiseRecord, settle: Settle) -> bool:
    """Whether ``settle`` repeats the outcome already stored in ``record``."""
    return record.state is settle.state and record.value == settle.value


def past_deadline(record: PromiseRecord, settle: Settle, now: float) -> bool:
    """Whether ``settle`` tries to resolve or reject ``record`` after its deadline (the store times it out)."""
    return (record.timeout is not None and record.kind is not Kind.SLEEP and record.timeout <= now
            and settle.state in (State.RESOLVED, State.REJECTED))


def timeout_error_text(record: PromiseRecord) -> str:
    """The stored error of a promise the store timed out (the same text the engine stores)."""
    name = record.func or record.kind.value
    return json.dumps({"type": "vow.errors.PromiseTimeoutError", "message": f"{name} ({record.id}) timed out"},
                      separators=(",", ":"), sort_keys=True)


def parked_reason(root: str, recoveries: int) -> str:
    """Why a root was parked after ``recoveries`` takeovers in a row."""
    return (f"run {root!r} was taken over {recoveries} times in a row from a process that died while "
            "running it (a crash, kill -9, an OOM kill, os._exit in a leaf); it is parked so it does not "
            f"kill every worker that resumes it. Fix the cause, then `vow resume --force {root}`")


def lease_takeover(current: Lease | None, owner: str) -> bool:
    """Whether claiming ``current`` for ``owner`` takes it from another owner that never released it."""
    return current is not None and bool(current.owner) and current.owner != owner


def lease_claimable(current: Lease | None, owner: str, now: float,
                    owner_alive: Callable[[str], bool | None]) -> bool:
    """Whether ``owner`` may take ``current``: none, released, its own, a dead owner's, or expired
    while its owner's liveness is unknown; never a parked one, never a live owner's."""
    if current is None:
        return True
    if current.parked:
        return False
    if not current.owner or current.owner == owner:
        return True
    alive = owner_alive(current.owner)
    return alive is False or (alive is None and current.expires_at <= now)


# -- listings: what a run and a branch are (shared by every store's listing methods) ----------


BRANCH_KINDS = (Kind.STEP, Kind.WORKFLOW)
"""The kinds of promise that are a run's branches (sleeps and outside promises are not)."""


def pipeline_workflow() -> str:
    """The registered name of the workflow YAML pipelines run as (``vow.pipeline``)."""
    return PIPELINE_WORKFLOW


def run_name(record: PromiseRecord) -> str:
    """A run's name: its pipeline's name for a YAML pipeline run, else its workflow's name (``func``)."""
    if record.func == pipeline_workflow():
        try:
            args = json.loads(record.args)
        except ValueError:
            return record.func
        # A pipeline's one argument, its spec, is stored as ``[spec]`` (see vow.encoding.encode_args).
        if isinstance(args, list) and args and isinstance(args[0], dict) and isinstance(args[0].get("name"), str):
            return str(args[0]["name"])
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
