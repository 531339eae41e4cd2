"""The memory and SQLite stores answer every operation the same way (a hypothesis state machine).

Each step applies one operation to both stores — a batch of creates, settles, attempt changes and
fences; get, get_many, children, tree, search, claimable; claim, claim_many, renew, release,
release_many, lease — and
requires the same answer from both: the same records in the same order, the same
:class:`~vow.records.BatchResult`, or the same error (type, and the lost roots of a
:class:`~vow.errors.LeaseLostError`). After every step both stores must hold the same records
and leases. Ids, creation times (with ties), owners (live, dead and remote) and clock values
come from small pools, so conflicts, duplicates, ties and takeovers are frequent.

``VOW_HEAVY=1`` runs 300 machines of 50 steps instead of 30 of 25.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.durability.support import HEAVY
from vow.errors import ConflictError, LeaseLostError
from vow.records import Batch, Kind, Lease, PromiseRecord, Settle, State
from vow.stores.base import new_owner_id
from vow.stores.memory import MemoryStore
from vow.stores.sqlite import SQLiteStore

ROOTS = ["r1", "r2", "r3"]
IDS = ROOTS + ["r1.1", "r1.2", "r1.1.1", "r2.1", "r2.2"]
SETTLED = [State.RESOLVED, State.REJECTED, State.CANCELED, State.TIMEDOUT]
ALIVE = [new_owner_id(), new_owner_id()]  # held by this process (two clients)
DEAD = new_owner_id()  # held, then gone
UNKNOWN = "elsewhere:1234:0123456789abcdef"  # never held here (another machine): only expiry frees it
OWNERS = [*ALIVE, DEAD, UNKNOWN]
CLOCK = st.sampled_from([100.0, 105.0, 110.0, 120.0])
VALUES = st.sampled_from([None, "1", '"a"', '{"k":[1,2]}'])


@st.composite
def records(draw: Callable[..., Any]) -> PromiseRecord:
    pid = draw(st.sampled_from(IDS))
    state = draw(st.sampled_from([State.PENDING] * 4 + SETTLED))
    settled = state is not State.PENDING
    return PromiseRecord(
        id=pid, state=state,
        kind=draw(st.sampled_from([Kind.WORKFLOW, Kind.WORKFLOW, Kind.STEP])) if "." not in pid
        else draw(st.sampled_from(list(Kind))),
        root=pid.split(".")[0], func=draw(st.sampled_from(["", "f", "mod.g"])),
        args=draw(st.sampled_from(["", "[1]", '{"args":[],"kwargs":{"x":1}}'])),
        value=draw(VALUES) if settled else None,
        parent=pid.rsplit(".", 1)[0] if "." in pid else None,
        timeout=draw(st.sampled_from([None, 150.0])), idempotency_key=draw(st.sampled_from(["", pid, "key"])),
        attempt=draw(st.integers(0, 3)), created_at=draw(st.sampled_from([1.0, 2.0, 3.0])),
        settled_at=draw(st.sampled_from([10.0, 11.0])) if settled else None,
        tags=draw(st.sampled_from([{}, {"team": "a"}, {"team": "b", "x": "1"}])))


settles = st.builds(Settle, st.sampled_from(IDS * 3 + ["missing"]), st.sampled_from(SETTLED), VALUES,
                    st.sampled_from([10.0, 12.0]))
batches = st.builds(
    Batch,
    creates=st.lists(records(), max_size=4, unique_by=lambda r: r.id),  # each id once (the contract)
    settles=st.lists(settles, max_size=3),
    attempts=st.dictionaries(st.sampled_from(IDS + ["missing"]), st.integers(1, 5), max_size=2),
)


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """``("ok", value)`` or ``("error", type name and what identifies the error)``."""
    try:
        return "ok", call()
    except LeaseLostError as exc:
        return "error", ("LeaseLostError", sorted(exc.roots))
    except ConflictError as exc:
        return "error", ("ConflictError", sorted(exc.roots), sorted(exc.records.items()))
    except Exception as exc:  # noqa: BLE001 - the point is to compare them
        return "error", type(exc).__name__


class SameAnswers(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="vow-equivalence-")
        self.memory = MemoryStore()
        self.sqlite = SQLiteStore(Path(self.dir) / "vow.sqlite")
        for store in (self.memory, self.sqlite):
            for owner in ALIVE + [DEAD]:
                assert store.hold_owner(owner)
            store.release_owner(DEAD)

    def teardown(self) -> None:
        self.memory.close()
        self.sqlite.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def same(self, op: Callable[[Any], Any]) -> Any:
        mem, sql = outcome(lambda: op(self.memory)), outcome(lambda: op(self.sqlite))
        assert mem == sql, f"memory answered {mem!r}\nsqlite answered {sql!r}"
        return mem

    # -- writes
    @rule(creates=st.lists(records(), min_size=1, max_size=4, unique_by=lambda r: r.id))
    def create(self, creates: list[PromiseRecord]) -> None:
        self.same(lambda s: s.apply(Batch(creates=creates)))

    @rule(batch=st.builds(Batch, settles=st.lists(settles, min_size=1, max_size=3),
                          attempts=st.dictionaries(st.sampled_from(IDS), st.integers(1, 5), max_size=2)))
    def settle(self, batch: Batch) -> None:
        self.same(lambda s: s.apply(batch))

    @rule(batch=batches)
    def outside_apply(self, batch: Batch) -> None:
        """A client's write (resolve, cancel, submit), recorded in the change feed."""
        batch.outside = True
        self.same(lambda s: s.apply(batch))

    @rule(batch=st.builds(Batch, creates=st.lists(records(), max_size=4, unique_by=lambda r: r.id),
                          settles=st.lists(settles, max_size=3, unique_by=lambda s: s.id),
                          attempts=st.dictionaries(st.sampled_from(IDS + ["missing"]), st.integers(1, 5),
                                                   max_size=2)),
          data=st.data())
    def fenced_apply(self, batch: Batch, data: st.DataObject) -> None:
        """A batch fenced with each root's current token, or one off (a lost lease). It settles each
        id once, as the engine does (what a store reports for a repeated one is not defined: the
        stores differed in the records of the ConflictError it raised)."""
        for root in data.draw(st.lists(st.sampled_from(ROOTS), max_size=2, unique=True)):
            lease = self.memory.lease(root)
            token = lease.token if lease is not None else 1
            batch.fences[root] = token + data.draw(st.sampled_from([0, 0, 0, -1, 1]))
        self.same(lambda s: s.apply(batch))

    @rule(root=st.sampled_from(ROOTS), owner=st.sampled_from(OWNERS), ttl=st.sampled_from([1.0, 10.0]), now=CLOCK)
    def claim(self, root: str, owner: str, ttl: float, now: float) -> None:
        self.same(lambda s: s.claim(root, owner, ttl, now=now))

    @rule(root=st.sampled_from(ROOTS), owner=st.sampled_from(OWNERS), now=CLOCK,
          limit=st.sampled_from([None, 0, 1, 2]))
    def claim_limited(self, root: str, owner: str, now: float, limit: int | None) -> None:
        """A claim with ``max_recoveries``: a root taken over too often is parked."""
        self.same(lambda s: s.claim(root, owner, 10.0, now=now, max_recoveries=limit))

    @rule(root=st.sampled_from(ROOTS))
    def unpark(self, root: str) -> None:
        self.same(lambda s: s.unpark(root))

    @rule(roots=st.lists(st.sampled_from(ROOTS), max_size=4), owner=st.sampled_from(OWNERS),
          ttl=st.sampled_from([1.0, 10.0]), now=CLOCK)
    def claim_many(self, roots: list[str], owner: str, ttl: float, now: float) -> None:
        self.same(lambda s: s.claim_many(roots, owner, ttl, now=now))

    @rule(roots=st.lists(st.sampled_from(ROOTS), max_size=3), stale=st.lists(st.booleans(), min_size=3, max_size=3))
    def release_many(self, roots: list[str], stale: list[bool]) -> None:
        leases = [lease for r in roots if (lease := self.memory.lease(r)) is not None]
        leases = [Lease(x.root, x.owner, x.token - 1, x.expires_at) if old else x for x, old in zip(leases, stale)]
        self.same(lambda s: s.release_many(leases))

    @rule(roots=st.lists(st.sampled_from(ROOTS), max_size=3), ttl=st.sampled_from([1.0, 10.0]), now=CLOCK,
          stale=st.booleans())
    def renew(self, roots: list[str], ttl: float, now: float, stale: bool) -> None:
        leases = [lease for r in roots if (lease := self.memory.lease(r)) is not None]
        if stale:  # a worker holding an older token than the store's
            leases = [Lease(x.root, x.owner, x.token - 1, x.expires_at) for x in leases]
        self.same(lambda s: s.renew(leases, ttl, now=now))

    @rule(root=st.sampled_from(ROOTS), stale=st.booleans())
    def release(self, root: str, stale: bool) -> None:
        lease = self.memory.lease(root)
        if lease is not None:
            if stale:
                lease = Lease(lease.root, lease.owner, lease.token - 1, lease.expires_at)
            self.same(lambda s: s.release(lease))

    # -- reads
    @rule(pid=st.sampled_from(IDS + ["missing"]))
    def get(self, pid: str) -> None:
        self.same(lambda s: s.get(pid))

    @rule(ids=st.lists(st.sampled_from(IDS + ["missing"]), max_size=5))
    def get_many(self, ids: list[str]) -> None:
        self.same(lambda s: s.get_many(ids))

    @rule(parent=st.sampled_from(IDS))
    def children(self, parent: str) -> None:
        self.same(lambda s: s.children(parent))

    @rule(root=st.sampled_from(ROOTS))
    def tree(self, root: str) -> None:
        self.same(lambda s: s.tree(root))

    @rule(state=st.sampled_from([None, State.PENDING, *SETTLED]), kind=st.sampled_from([None, *Kind]),
          root=st.sampled_from([None, *ROOTS]), roots_only=st.booleans(),
          tag=st.sampled_from([None, ("team", "a"), ("team", "b"), ("x", "1")]), limit=st.integers(0, 10))
    def search(self, state: State | None, kind: Kind | None, root: str | None, roots_only: bool,
               tag: tuple[str, str] | None, limit: int) -> None:
        self.same(lambda s: s.search(state=state, kind=kind, root=root, roots_only=roots_only, tag=tag,
                                     limit=limit))

    @rule(limit=st.integers(0, 4), now=CLOCK)
    def claimable(self, limit: int, now: float) -> None:
        self.same(lambda s: s.claimable(limit=limit, now=now))

    @rule(root=st.sampled_from(ROOTS))
    def lease(self, root: str) -> None:
        self.same(lambda s: s.lease(root))

    @rule(after=st.sampled_from([None, 0, 1, 3]))
    def changes(self, after: int | None) -> None:
        self.same(lambda s: s.changes(after))

    # -- after every step
    @invariant()
    def hold_the_same_records_and_leases(self) -> None:
        self.same(lambda s: (s.search(limit=1000), [s.lease(r) for r in ROOTS]))


SameAnswers.TestCase.settings = settings(
    max_examples=300 if HEAVY else 30, stateful_step_count=50 if HEAVY else 25, deadline=None,
    database=None, suppress_health_check=[HealthCheck.too_slow])
TestSameAnswers = SameAnswers.TestCase
