"""The committer: every write of an engine round goes through it, and nothing acts before it.

During a round the engine records, per root workflow, the promises to create and settle, the
attempt counts to store, and the *actions* that may happen only once those writes are durable:
starting a leaf, arming a timer, answering a caller, telling observers. :meth:`Committer.commit`
writes every root's writes in one store transaction (a group commit: one commit per round, not
per promise), fenced with each root's lease token, and only then runs the actions of the roots
whose writes committed.

A root's writes are all or nothing. If the store refuses some roots — their lease moved on
(:class:`~vow.errors.LeaseLostError`) or one of their transitions lost to a change stored from
outside (:class:`~vow.errors.ConflictError`) — their writes and actions are dropped and the rest
is committed again. If the store fails for another reason, each root is tried on its own, so one
bad root fails alone. The caller learns which roots ended how from the :class:`CommitResult`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import attrs

from vow.errors import ConflictError, LeaseLostError
from vow.records import Batch, Lease, PromiseRecord, Settle, make_batch

__all__ = ["CommitResult", "Committer"]

_log = logging.getLogger("vow.engine")

Action = tuple[Callable[..., None], tuple[Any, ...]]


class RootWrites:
    """The writes and post-commit actions of one root in the round being built."""

    __slots__ = ("creates", "settles", "attempts", "actions", "leaves", "token")

    def __init__(self, token: int) -> None:
        self.creates: list[PromiseRecord] = []
        self.settles: list[Settle] = []
        self.attempts: dict[str, int] = {}
        self.actions: list[Action] = []
        self.leaves: list[Any] = []  # leaves to start once committed (the commonest action, kept lean)
        self.token = token


class CommitResult:
    """How a commit ended for the roots it did not simply store (a clean round has none)."""

    __slots__ = ("lost", "conflicts", "failed", "existing")

    def __init__(self) -> None:
        self.lost: list[str] = []  # another owner holds them, or they were settled outside
        self.conflicts: dict[str, dict[str, PromiseRecord]] = {}  # root -> records that won
        self.failed: dict[str, BaseException] = {}  # the store failed for these roots
        self.existing: dict[str, tuple[str, PromiseRecord]] = {}  # id -> (root that made it, the record
        # that was there already); "{root}\n{id}" when the record is another root's

    def refused(self, root: str) -> bool:
        """Whether nothing of ``root``'s writes was stored."""
        return root in self.conflicts or root in self.failed or root in self.lost

    def refuse(self, exc: LeaseLostError | ConflictError, roots: set[str]) -> None:
        """Record that ``exc`` refused ``roots``: lost to another owner, or beaten by stored outcomes."""
        if isinstance(exc, LeaseLostError):
            self.lost.extend(sorted(roots))
        else:
            for rid in roots:
                self.conflicts[rid] = {i: r for i, r in exc.records.items() if getattr(r, "root", rid) == rid}

    def merge(self, other: CommitResult | None) -> None:
        """Add how other roots ended."""
        if other is not None:
            self.lost.extend(other.lost)
            self.conflicts.update(other.conflicts)
            self.failed.update(other.failed)
            self.existing.update(other.existing)


class Committer:
    """Collects a round's writes per root and commits them in one fenced transaction."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._roots: dict[str, RootWrites] = {}
        self._releases: list[Lease] = []

    def writes(self, root: str, token: int) -> RootWrites:
        """The writes of ``root`` in the round being built (append to its lists directly in hot paths)."""
        writes = self._roots.get(root)
        if writes is None:
            writes = self._roots[root] = RootWrites(token)
        return writes

    def create(self, root: str, token: int, record: PromiseRecord) -> None:
        """Store ``record`` in this round's commit."""
        self.writes(root, token).creates.append(record)

    def settle(self, root: str, token: int, settle: Settle) -> None:
        """Settle a promise in this round's commit."""
        self.writes(root, token).settles.append(settle)

    def attempt(self, root: str, token: int, id: str, attempt: int) -> None:
        """Store the attempt number of a pending promise in this round's commit."""
        self.writes(root, token).attempts[id] = attempt

    def after(self, root: str, token: int, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` once this round's writes of ``root`` are committed (never if they are not)."""
        self.writes(root, token).actions.append((fn, args))

    def release(self, lease: Lease) -> None:
        """Give ``lease`` back after this round's commit."""
        self._releases.append(lease)

    def drop(self, root: str) -> None:
        """Forget ``root``'s writes and actions in the round being built (it stops here)."""
        self._roots.pop(root, None)

    def pending(self) -> bool:
        """Whether anything waits for a commit."""
        return bool(self._roots or self._releases)

    # -- committing

    def commit(self) -> tuple[CommitResult | None, list[Action], list[Any]]:
        """Commit the round; returns how the roots ended that were not simply stored (``None`` when
        every one was), the actions now allowed to run, and the leaves now allowed to start (after
        the actions)."""
        roots, self._roots = self._roots, {}
        releases, self._releases = self._releases, []
        if len(roots) == 1:  # the usual round of a single run: no dict to build
            writing = roots if _writes_anything(next(iter(roots.values()))) else {}
        else:
            writing = {rid: w for rid, w in roots.items() if _writes_anything(w)}
        result = self._apply(writing) if writing else None
        if len(roots) == 1 and result is None:  # ... and no lists to gather
            [writes] = roots.values()
            actions, leaves = writes.actions, writes.leaves
        else:
            actions, leaves = [], []
            for rid, writes in roots.items():
                if result is None or not result.refused(rid):
                    actions.extend(writes.actions)
                    leaves.extend(writes.leaves)
        if releases:
            try:
                self._store.release_many(releases)
            except Exception:  # noqa: BLE001 - an unreleased lease only delays a takeover until it expires
                _log.warning("could not release the leases on %s", [x.root for x in releases], exc_info=True)
        return result, actions, leaves

    def _apply(self, writing: dict[str, RootWrites]) -> CommitResult | None:
        """Apply ``writing`` in one transaction, dropping the roots the store refuses and committing the
        rest again; how the refused roots ended (``None`` when every root was stored as it was)."""
        result: CommitResult | None = None
        left = writing
        while left:
            try:
                stored = self._store.apply(_merge(left))
            except (LeaseLostError, ConflictError) as exc:
                result = result or CommitResult()
                refused = _refused(exc, left)
                if not refused:  # the store named no root of this batch: give every root its chance alone
                    return self._one_by_one(left, result)
                result.refuse(exc, refused)
                left = {rid: w for rid, w in left.items() if rid not in refused}
                continue
            except Exception as exc:  # noqa: BLE001 - the store failed: nothing of this batch is durable
                result = result or CommitResult()
                if len(left) == 1:
                    [rid] = left
                    result.failed[rid] = exc
                    return result
                _log.warning("a group commit of %d roots failed (%s); committing them one by one", len(left), exc)
                return self._one_by_one(left, result)
            if stored.existing:
                result = result or CommitResult()
                for rid, writes in left.items():
                    for record in writes.creates:
                        found = stored.existing.get(record.id)
                        if found is not None:
                            # Another run of this batch may have created the id first: keyed apart, each
                            # run that gave it hears of it (by id alone, only the last one did).
                            result.existing[record.id if found.root == rid else f"{rid}\n{record.id}"] = (rid, found)
                _settle_existing(result.existing, left)
            return result
        return result

    def _one_by_one(self, left: dict[str, RootWrites], result: CommitResult) -> CommitResult:
        for rid, writes in left.items():
            result.merge(self._apply({rid: writes}))
        return result


def _settle_existing(existing: dict[str, tuple[str, PromiseRecord]], batch: dict[str, RootWrites]) -> None:
    """Give each pending record in ``existing`` the outcome ``batch`` stored for it.

    The store reads the records it found already there before it applies the batch's settles. A call
    whose id was used again in the round that settled the first call (the workflow goes on at once)
    found the id pending, and its leaf was started a second time."""
    pending = {id for id, (_, record) in existing.items() if not record.settled}
    if not pending:
        return
    for writes in batch.values():
        for settle in writes.settles:
            if settle.id in pending:
                pending.discard(settle.id)  # the first settle of an id is the one stored
                rid, record = existing[settle.id]
                existing[settle.id] = (rid, attrs.evolve(record, state=settle.state, value=settle.value,
                                                         settled_at=settle.settled_at))


def _writes_anything(writes: RootWrites) -> bool:
    """Whether ``writes`` holds anything to store (not only actions to run after the commit)."""
    return bool(writes.creates or writes.settles or writes.attempts)


def _refused(exc: LeaseLostError | ConflictError, left: dict[str, RootWrites]) -> set[str]:
    """The roots of the batch ``left`` that ``exc`` refuses: those it names (every one, for a lost lease
    that names none); the only root of a batch of one, whatever it names; none when it names no root
    of a larger batch."""
    named = exc.roots or (list(left) if isinstance(exc, LeaseLostError) else [])
    refused = set(named) & left.keys()
    return refused or (set(left) if len(left) == 1 else set())


def _merge(roots: dict[str, RootWrites]) -> Batch:
    """One batch of every root's writes, each fenced with its token."""
    if len(roots) == 1:
        [(rid, w)] = roots.items()
        return make_batch(w.creates, w.settles, w.attempts, {rid: w.token}, False)
    batch = Batch()
    for rid, w in roots.items():
        batch.creates.extend(w.creates)
        batch.settles.extend(w.settles)
        batch.attempts.update(w.attempts)
        batch.fences[rid] = w.token
    return batch
