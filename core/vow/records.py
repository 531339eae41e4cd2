"""The data a store keeps: promise records, their states, leases, and the write batch.

A record is immutable; every change is a new record written through :class:`Batch`, which is
how the engine groups many creates and settles into one commit.
"""

from __future__ import annotations

import enum

import attrs

from vow.frozen import quick_constructor


class State(str, enum.Enum):
    """A promise's state. It moves only from ``PENDING`` to one of the settled states."""

    PENDING = "pending"
    RESOLVED = "resolved"
    REJECTED = "rejected"
    CANCELED = "canceled"
    TIMEDOUT = "timedout"

    @property
    def settled(self) -> bool:
        return self is not State.PENDING

    def __str__(self) -> str:
        return self.value


class Kind(str, enum.Enum):
    """What a promise stands for."""

    WORKFLOW = "workflow"  # a generator function, root or child
    STEP = "step"  # a leaf function (sync or async)
    SLEEP = "sleep"  # a durable timer; ``timeout`` holds the wake-up time
    PROMISE = "promise"  # settled from outside (an approval, a webhook)

    def __str__(self) -> str:
        return self.value


@attrs.frozen(slots=True)
class PromiseRecord:
    """One durable promise as the store keeps it. ``args`` and ``value`` are encoded JSON text."""

    id: str
    state: State
    kind: Kind
    root: str
    func: str = ""
    args: str = ""
    value: str | None = None
    parent: str | None = None
    timeout: float | None = None  # absolute epoch seconds; for a sleep, when it wakes
    idempotency_key: str = ""
    attempt: int = 0
    created_at: float = 0.0
    settled_at: float | None = None
    tags: dict[str, str] = attrs.field(factory=dict)

    @property
    def settled(self) -> bool:
        return self.state is not State.PENDING


make_record = quick_constructor(PromiseRecord)
"""``make_record(id, state, kind, root, func, args, value, parent, timeout, idempotency_key, attempt,
created_at, settled_at, tags)``: a :class:`PromiseRecord` of every field, built fast (the engine
makes one per promise; see :mod:`vow.frozen`)."""


@attrs.frozen(slots=True)
class Settle:
    """Settle ``id`` as ``state`` with encoded ``value`` (a result, or an encoded error)."""

    id: str
    state: State
    value: str | None
    settled_at: float


make_settle = quick_constructor(Settle)
"""``make_settle(id, state, value, settled_at)``: a :class:`Settle`, built fast."""


@attrs.frozen(slots=True)
class Lease:
    """Ownership of a root workflow: ``token`` grows with every new owner (a fencing token).

    ``owner`` is empty once released; ``recoveries`` counts takeovers in a row from owners that
    never released it; ``parked`` is the reason a root is no longer claimable (too many
    recoveries), or ``None``.
    """

    root: str
    owner: str
    token: int
    expires_at: float
    recoveries: int = 0
    parked: str | None = None


@attrs.define(slots=True)
class Batch:
    """Writes applied in one atomic commit.

    ``fences`` maps a root id to the lease token the writer holds; if any fence no longer
    matches the store, nothing in the batch is applied and :class:`~vow.errors.LeaseLostError`
    names the roots that were lost. ``outside`` marks a client's writes (resolve, cancel,
    submit) that the store records in its change feed. See :mod:`vow.stores.base` for every rule.
    """

    creates: list[PromiseRecord] = attrs.field(factory=list)
    settles: list[Settle] = attrs.field(factory=list)
    attempts: dict[str, int] = attrs.field(factory=dict)
    fences: dict[str, int] = attrs.field(factory=dict)
    outside: bool = False

    def __bool__(self) -> bool:
        return bool(self.creates or self.settles or self.attempts)


make_batch = quick_constructor(Batch)
"""``make_batch(creates, settles, attempts, fences, outside)``: a :class:`Batch`, built fast (the
engine makes one per commit)."""


@attrs.frozen(slots=True)
class BatchResult:
    """What a commit did.

    ``existing`` holds the stored record for every create whose id was already there
    (create-or-get). ``conflicts`` holds the stored record for every settle that met a promise
    already settled with another outcome; such a settle changes nothing.
    """

    existing: dict[str, PromiseRecord] = attrs.field(factory=dict)
    conflicts: dict[str, PromiseRecord] = attrs.field(factory=dict)


make_batch_result = quick_constructor(BatchResult)
"""``make_batch_result(existing, conflicts)``: a :class:`BatchResult`, built fast (a store returns
one per commit)."""
