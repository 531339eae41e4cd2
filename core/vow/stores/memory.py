"""The ``memory`` store: promises and leases in dicts, for tests and throwaway runs.

Everything lives in this process and is gone when it exits. Writes take one lock, so the
store is safe to share between threads; single-record reads do not need it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence

import attrs

from vow.errors import PromiseNotFoundError, StoreError
from vow.hookspecs import Register, hookimpl
from vow.naming import refuse_unstorable
from vow.records import Batch, BatchResult, Kind, Lease, PromiseRecord, State
from vow.retention import FINISHED_STATES, is_prunable
from vow.schedules.record import ScheduleRecord
from vow.stores.base import (  # listings
    BUCKET,
    LEASE_ROOT,
    ChangeFeed,
    StoreOperations,
    bucket_after_hold,
    bucket_after_take,
    conflict_error,
    is_branch,
    lease_claimable,
    lease_lost_error,
    lease_takeover,
    parked_reason,
    past_deadline,
    refuse_unstorable_batch,
    run_key,
    run_matches,
    same_outcome,
    timeout_error_text,
)

_PENDING = State.PENDING
FEED_WINDOW = 10_000
"""How many outside writes the change feed keeps."""


def _with(record: PromiseRecord, *, state: State | None = None, value: str | None = None,
          settled_at: float | None = None, attempt: int | None = None) -> PromiseRecord:
    """A copy of ``record`` with a new outcome or attempt count (positional args: cheaper than evolve)."""
    r = record
    if state is not None:
        return PromiseRecord(r.id, state, r.kind, r.root, r.func, r.args, value, r.parent, r.timeout,
                             r.idempotency_key, r.attempt, r.created_at, settled_at, r.tags)
    return PromiseRecord(r.id, r.state, r.kind, r.root, r.func, r.args, r.value, r.parent, r.timeout,
                         r.idempotency_key, r.attempt if attempt is None else attempt, r.created_at, r.settled_at,
                         r.tags)


def _oldest_first(records: list[PromiseRecord]) -> list[PromiseRecord]:
    # The lists are in insertion order and sort is stable: ties stay in insertion order.
    records.sort(key=lambda r: r.created_at)
    return records


class MemoryStore(StoreOperations):
    """Promises and leases in memory; thread-safe; obeys every rule of :mod:`vow.stores.base`."""

    url = "memory:"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, PromiseRecord] = {}  # insertion order = creation order
        self._children: dict[str, list[str]] = {}
        self._trees: dict[str, list[str]] = {}
        self._leases: dict[str, Lease] = {}
        self._live_owners: set[str] = set()
        self._dead_owners: set[str] = set()
        self._feed: list[tuple[int, str, str]] = []  # (seq, root, id) of outside writes
        self._seq = 0
        self._closed = False
        self._schedules: dict[str, ScheduleRecord] = {}  # schedules and rate limits: see the end of the class
        self._buckets: dict[str, tuple[float, float]] = {}  # bucket -> (tokens, stamp)

    def __repr__(self) -> str:
        return f"<MemoryStore {len(self._records)} promises>"

    # -- writes

    def apply(self, batch: Batch) -> BatchResult:
        """Apply ``batch`` atomically: everything is checked before anything is written."""
        refuse_unstorable_batch(batch)
        with self._lock:
            self._check_open()
            records = self._records
            fenced = bool(batch.fences)
            if fenced:
                lost = sorted(root for root, token in batch.fences.items()
                              if (lease := self._leases.get(root)) is None or lease.token != token
                              or ((stored := records.get(root)) is not None and stored.settled))
                if lost:
                    raise lease_lost_error(lost)
            now = time.time()
            created: dict[str, PromiseRecord] = {}
            existing: dict[str, PromiseRecord] = {}
            for record in batch.creates:
                current = created.get(record.id) or records.get(record.id)
                if current is None:
                    created[record.id] = record
                else:
                    existing[record.id] = current
            changed: dict[str, PromiseRecord] = {}
            conflicts: dict[str, PromiseRecord] = {}
            for settle in batch.settles:
                sid = settle.id
                current = changed.get(sid) or created.get(sid) or records.get(sid)
                if current is None:
                    raise PromiseNotFoundError(f"cannot settle {sid!r}: no promise with that id")
                if settle.state is _PENDING:
                    raise ValueError(f"cannot settle {sid!r} as pending")
                if current.state is _PENDING:
                    if past_deadline(current, settle, now):
                        timed_out = changed[sid] = _with(current, state=State.TIMEDOUT,
                                                         value=timeout_error_text(current),
                                                         settled_at=settle.settled_at)
                        conflicts[sid] = timed_out
                    else:
                        changed[sid] = _with(current, state=settle.state, value=settle.value,
                                             settled_at=settle.settled_at)
                elif not same_outcome(current, settle):
                    conflicts[sid] = current
            if fenced:  # a parent settled before this batch (from outside): its subtree stops here
                for record in created.values():
                    parent = record.parent
                    if parent is None:
                        continue
                    stored = records.get(parent)
                    if stored is not None and stored.settled:
                        conflicts[parent] = stored
                if conflicts:
                    raise conflict_error(conflicts)
            for aid, attempt in batch.attempts.items():
                current = changed.get(aid) or created.get(aid) or records.get(aid)
                if current is not None and current.state is _PENDING:
                    changed[aid] = _with(current, attempt=attempt)
            # Nothing can fail past this point: write.
            for rid, record in created.items():
                records[rid] = record
                if record.parent is not None:
                    self._children.setdefault(record.parent, []).append(rid)
                self._trees.setdefault(record.root, []).append(rid)
            records.update(changed)
            if batch.outside:
                self._announce([r for r in created.values()] +
                               [r for sid, r in changed.items() if r.settled and sid not in conflicts])
            return BatchResult(existing, conflicts)

    def _announce(self, records: list[PromiseRecord]) -> None:
        feed = self._feed
        for record in {r.id: r for r in records}.values():
            self._seq += 1
            feed.append((self._seq, record.root, record.id))
        if len(feed) > FEED_WINDOW:
            del feed[:len(feed) - FEED_WINDOW]

    def changes(self, after: int | None) -> ChangeFeed:
        """Outside writes after sequence number ``after`` (the last :data:`FEED_WINDOW` are kept);
        ``None``: no entries, just the current number."""
        with self._lock:
            self._check_open()
            if after is None:
                return ChangeFeed(self._seq)
            entries = [(seq, root, pid) for seq, root, pid in self._feed if seq > after]
            if not entries:
                return ChangeFeed(after)
            return ChangeFeed(entries[-1][0], [(root, pid) for _, root, pid in entries],
                              entries[0][0] == after + 1)

    # -- reads

    def get(self, id: str) -> PromiseRecord | None:
        """The record with ``id``, or ``None``."""
        self._check_open()
        return self._records.get(id)

    def get_many(self, ids: Iterable[str]) -> dict[str, PromiseRecord]:
        """The records among ``ids`` that exist, by id."""
        self._check_open()
        records = self._records
        return {i: r for i in ids if (r := records.get(i)) is not None}

    def children(self, parent: str) -> list[PromiseRecord]:
        """Direct children of ``parent``, oldest first."""
        with self._lock:
            self._check_open()
            return _oldest_first([self._records[i] for i in self._children.get(parent, ())])

    def tree(self, root: str) -> list[PromiseRecord]:
        """Every record whose root is ``root``, oldest first."""
        with self._lock:
            self._check_open()
            return _oldest_first([self._records[i] for i in self._trees.get(root, ())])

    def search(self, *, state: State | None = None, kind: Kind | None = None, root: str | None = None,
               roots_only: bool = False, tag: tuple[str, str] | None = None,
               limit: int = 1000) -> list[PromiseRecord]:
        """Records matching every given filter, newest first, at most ``limit``."""
        if limit <= 0:
            return []
        with self._lock:
            self._check_open()
            if root is not None:
                candidates = [self._records[i] for i in self._trees.get(root, ())]
            else:
                candidates = list(self._records.values())
        found = [r for r in candidates
                 if (state is None or r.state == state) and (kind is None or r.kind == kind)
                 and (not roots_only or r.parent is None)
                 and (tag is None or r.tags.get(tag[0]) == tag[1])]
        # Reverse first so that, after a stable sort, ties come newest-inserted first.
        found.reverse()
        found.sort(key=lambda r: r.created_at, reverse=True)
        return found[:limit]

    # -- leases

    def hold_owner(self, owner: str) -> bool:
        """Mark ``owner`` alive; the memory store lives in one process, so it always knows."""
        with self._lock:
            self._live_owners.add(owner)
            self._dead_owners.discard(owner)
        return True

    def release_owner(self, owner: str) -> None:
        """``owner`` is gone: its leases may be taken at once."""
        with self._lock:
            self._live_owners.discard(owner)
            self._dead_owners.add(owner)

    def owner_alive(self, owner: str) -> bool | None:
        """Known for the owners that held their liveness here (this process); unknown for others."""
        if owner in self._live_owners:
            return True
        return False if owner in self._dead_owners else None

    def claimable(self, *, limit: int = 100, now: float | None = None) -> list[PromiseRecord]:
        """Pending, unparked root workflows whose lease is free, expired or held by a dead owner."""
        now = time.time() if now is None else now
        with self._lock:
            self._check_open()
            roots = [r for r in self._records.values()
                     if r.parent is None and r.state is _PENDING and r.kind is Kind.WORKFLOW]
            leases = dict(self._leases)
            found = [r for r in roots if lease_claimable(leases.get(r.id), "", now, self.owner_alive)]
        found.sort(key=lambda r: r.created_at)
        return found[:max(limit, 0)]

    def claim(self, root: str, owner: str, ttl: float, *, now: float | None = None,
              max_recoveries: int | None = None) -> Lease | None:
        """Take (or renew) the lease on ``root``; ``None`` if another owner holds it or it is parked."""
        if not owner:
            raise ValueError("a lease owner must not be empty")
        refuse_unstorable([root], LEASE_ROOT)
        now = time.time() if now is None else now
        with self._lock:
            self._check_open()
            current = self._leases.get(root)
            if not lease_claimable(current, owner, now, self.owner_alive):
                return None
            if current is None:
                lease = Lease(root, owner, 1, now + ttl)
            elif current.owner == owner:
                lease = Lease(root, owner, current.token, now + ttl, current.recoveries)
            else:
                recoveries = current.recoveries + 1 if lease_takeover(current, owner) else current.recoveries
                if max_recoveries is not None and recoveries > max_recoveries:
                    self._leases[root] = Lease(root, "", current.token, 0.0, recoveries,
                                               parked_reason(root, recoveries))
                    return None
                lease = Lease(root, owner, current.token + 1, now + ttl, recoveries)
            self._leases[root] = lease
            return lease

    def renew(self, leases: Sequence[Lease], ttl: float, *, now: float | None = None) -> list[Lease]:
        """Extend the leases still held (same owner and token); the lost ones are left out."""
        now = time.time() if now is None else now
        kept = []
        with self._lock:
            self._check_open()
            for lease in leases:
                current = self._leases.get(lease.root)
                if (current is not None and current.owner and current.owner == lease.owner
                        and current.token == lease.token):
                    renewed = self._leases[lease.root] = attrs.evolve(current, expires_at=now + ttl)
                    kept.append(renewed)
        return kept

    def release(self, lease: Lease) -> None:
        """Give up ``lease`` if still held; its token is kept so tokens only grow."""
        with self._lock:
            self._check_open()
            current = self._leases.get(lease.root)
            if (current is not None and current.owner and current.owner == lease.owner
                    and current.token == lease.token):
                self._leases[lease.root] = Lease(lease.root, "", lease.token, 0.0)

    def lease(self, root: str) -> Lease | None:
        """The current lease row for ``root`` (held or not), or ``None``."""
        self._check_open()
        return self._leases.get(root)

    def unpark(self, root: str) -> bool:
        """Make a parked root claimable again, its recovery count reset."""
        with self._lock:
            self._check_open()
            current = self._leases.get(root)
            if current is None or not current.parked:
                return False
            self._leases[root] = Lease(root, "", current.token, 0.0)
            return True

    def close(self) -> None:
        """Drop everything; the store is unusable afterwards."""
        with self._lock:
            self._closed = True
            self._records, self._children, self._trees, self._leases = {}, {}, {}, {}

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the memory store is closed")

    # -- retention (added for `vow prune`; see vow.retention) ------------------------------------

    def delete_runs(self, roots: Sequence[str], *, settled_before: float) -> dict[str, int]:
        """Delete each run whose root promise settled before ``settled_before``: its whole tree and its lease."""
        deleted: dict[str, int] = {}
        with self._lock:
            self._check_open()
            for root in dict.fromkeys(roots):
                record = self._records.get(root)
                if not is_prunable(record, settled_before, FINISHED_STATES):
                    continue
                ids = self._trees.pop(root, [])
                for pid in ids:
                    del self._records[pid]
                    self._children.pop(pid, None)
                self._leases.pop(root, None)
                deleted[root] = len(ids)
        return deleted


    # -- listings: runs and their branches (see StoreOperations.runs and .branch_counts) ----------

    def runs(self, *, state: State | None = None, name: str | None = None, since: float | None = None,
             until: float | None = None, before: tuple[float, str] | None = None,
             limit: int = 50) -> list[PromiseRecord]:
        """Root workflows, newest first; looks at the roots only, not at every record."""
        if limit <= 0:
            return []
        wanted = State(state) if state is not None else None
        with self._lock:
            self._check_open()
            records = self._records
            roots = [r for rid in self._trees if (r := records.get(rid)) is not None
                     and r.parent is None and r.kind is Kind.WORKFLOW]
        found = [r for r in roots if (wanted is None or r.state is wanted)
                 and run_matches(r, name, since, until, before)]
        found.sort(key=run_key, reverse=True)
        return found[:limit]

    def branch_counts(self, roots: Iterable[str]) -> dict[str, dict[State, int]]:
        """Each root's branches by state, from the children index."""
        counts: dict[str, dict[State, int]] = {}
        with self._lock:
            self._check_open()
            for root in roots:
                tally: dict[State, int] = {}
                for cid in self._children.get(root, ()):
                    child = self._records[cid]
                    if is_branch(child):
                        tally[child.state] = tally.get(child.state, 0) + 1
                counts[root] = tally
        return counts


    # -- schedules (see Store.schedules and vow.schedules) ---------------------------------------

    def schedules(self) -> list[ScheduleRecord]:
        """Every stored schedule, ordered by name."""
        with self._lock:
            self._check_open()
            return [self._schedules[name] for name in sorted(self._schedules)]

    def put_schedule(self, schedule: ScheduleRecord) -> None:
        """Create or replace schedule ``schedule.name``."""
        with self._lock:
            self._check_open()
            self._schedules[schedule.name] = attrs.evolve(schedule, updated_at=time.time())

    def advance_schedule(self, name: str, cursor: float) -> bool:
        """Move the cursor of ``name`` forward to ``cursor`` (never back)."""
        with self._lock:
            self._check_open()
            current = self._schedules.get(name)
            if current is None or (current.cursor is not None and current.cursor >= cursor):
                return False
            self._schedules[name] = attrs.evolve(current, cursor=cursor)
            return True

    def delete_schedule(self, name: str) -> bool:
        """Delete schedule ``name``; whether it existed."""
        with self._lock:
            self._check_open()
            return self._schedules.pop(name, None) is not None

    # -- rate limits (see Store.take_token and vow.ratelimit) ------------------------------------

    def take_token(self, bucket: str, per_second: float, burst: int, *, now: float | None = None) -> float:
        """Take a token from ``bucket``, or say how long until there is one."""
        refuse_unstorable([bucket], BUCKET)
        now = time.time() if now is None else now
        with self._lock:
            self._check_open()
            tokens, stamp = self._buckets.get(bucket, (float(burst), now))
            wait, tokens, stamp = bucket_after_take(tokens, stamp, per_second, burst, now)
            self._buckets[bucket] = (tokens, stamp)
            return wait

    def hold_bucket(self, bucket: str, seconds: float, *, now: float | None = None) -> None:
        """Give no token from ``bucket`` for ``seconds``."""
        refuse_unstorable([bucket], BUCKET)
        now = time.time() if now is None else now
        with self._lock:
            self._check_open()
            tokens, stamp = self._buckets.get(bucket, (0.0, now))
            self._buckets[bucket] = bucket_after_hold(tokens, stamp, seconds, now)


@hookimpl
def vow_register_stores(register: Register) -> None:
    """Register the ``memory`` store (no options)."""
    register("memory", MemoryStore, None, "promises in memory, gone when the process exits (tests, throwaway runs)")
