"""The store contract suite: every rule of :mod:`vow.stores.base`, as tests any store must pass.

Use it through :mod:`vow.testing` (which makes pytest rewrite the asserts here, so a failure
shows the values compared)::

    from vow.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            store = MyStore(tmp_path / "promises")
            yield store
            store.close()
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import attrs
import pytest

from vow.errors import (
    AlreadySettledError,
    ConflictError,
    EncodeError,
    LeaseLostError,
    PromiseNotFoundError,
    PromiseTimeoutError,
)
from vow.records import Batch, Kind, Lease, PromiseRecord, Settle, State
from vow.stores.base import Store, new_owner_id

_clock = itertools.count(1_700_000_000)


def make_record(id: str, *, parent: str | None = None, root: str | None = None, state: State = State.PENDING,
                kind: Kind = Kind.STEP, created_at: float | None = None, **fields: Any) -> PromiseRecord:
    """A record for tests: ``root`` defaults to the part of ``id`` before the first dot, and
    ``created_at`` to a clock that grows by one second per record made."""
    return PromiseRecord(
        id=id, state=state, kind=kind, root=root if root is not None else id.split(".", 1)[0],
        parent=parent, created_at=float(next(_clock)) if created_at is None else created_at, **fields)


def _workflow(id: str, **fields: Any) -> PromiseRecord:
    """A pending root workflow."""
    return make_record(id, kind=Kind.WORKFLOW, **fields)


def _ids(records: list[PromiseRecord]) -> list[str]:
    return [r.id for r in records]


class StoreContract:
    """The rules every store obeys (see :mod:`vow.stores.base`); subclass and provide ``store``."""

    @pytest.fixture
    def store(self) -> Store:
        """Override in the subclass: yield a fresh, empty store (and close it afterwards)."""
        pytest.fail(f"{type(self).__name__} must define a `store` fixture that yields a fresh store")

    # -- the protocol ---------------------------------------------------------------------------

    def test_store_provides_the_protocol(self, store: Store) -> None:
        assert isinstance(store, Store)
        assert isinstance(store.url, str) and store.url

    # -- create-or-get --------------------------------------------------------------------------

    def test_create_then_get(self, store: Store) -> None:
        record = make_record("a")
        result = store.apply(Batch(creates=[record]))
        assert result.existing == {} and result.conflicts == {}
        assert store.get("a") == record

    def test_create_of_an_existing_id_keeps_the_stored_record_and_returns_it(self, store: Store) -> None:
        first = make_record("a", func="first", args="[1]")
        store.apply(Batch(creates=[first]))
        second = make_record("a", func="second", args="[2]")
        result = store.apply(Batch(creates=[second, make_record("b")]))
        assert result.existing == {"a": first}
        assert store.get("a") == first
        assert store.get("b") is not None

    def test_create_of_the_same_record_again_reports_it_existing(self, store: Store) -> None:
        record = make_record("a")
        store.apply(Batch(creates=[record]))
        assert store.apply(Batch(creates=[record])).existing == {"a": record}

    def test_a_duplicate_id_within_one_batch_keeps_the_first(self, store: Store) -> None:
        first, second = make_record("a", func="first"), make_record("a", func="second")
        result = store.apply(Batch(creates=[first, second]))
        assert result.existing == {"a": first}
        assert store.get("a") == first

    def test_create_helper_says_whether_it_created(self, store: Store) -> None:
        record = make_record("a")
        assert store.create(record) == (record, True)
        assert store.create(make_record("a", func="other")) == (record, False)

    def test_an_existing_record_is_returned_as_stored_not_as_settled_later_in_the_batch(self, store: Store) -> None:
        record = make_record("a")
        store.apply(Batch(creates=[record]))
        result = store.apply(Batch(creates=[record], settles=[Settle("a", State.RESOLVED, "1", 5.0)]))
        assert result.existing["a"].state is State.PENDING
        assert store.get("a").state is State.RESOLVED

    # -- settle ---------------------------------------------------------------------------------

    def test_settle_moves_a_pending_promise_to_its_settled_state(self, store: Store) -> None:
        store.apply(Batch(creates=[make_record("a", attempt=2)]))
        result = store.apply(Batch(settles=[Settle("a", State.REJECTED, '{"error": "boom"}', 1234.5)]))
        assert result.conflicts == {}
        stored = store.get("a")
        assert (stored.state, stored.value, stored.settled_at, stored.attempt) == (
            State.REJECTED, '{"error": "boom"}', 1234.5, 2)

    @pytest.mark.parametrize("state", [State.RESOLVED, State.REJECTED, State.CANCELED, State.TIMEDOUT])
    def test_every_settled_state_is_stored(self, store: Store, state: State) -> None:
        store.apply(Batch(creates=[make_record("a")]))
        store.apply(Batch(settles=[Settle("a", state, None, 1.0)]))
        assert store.get("a").state is state and store.get("a").value is None

    def test_settling_again_with_the_same_outcome_does_nothing(self, store: Store) -> None:
        store.apply(Batch(creates=[make_record("a")]))
        store.apply(Batch(settles=[Settle("a", State.RESOLVED, '"ok"', 10.0)]))
        result = store.apply(Batch(settles=[Settle("a", State.RESOLVED, '"ok"', 99.0)]))
        assert result.conflicts == {}
        assert store.get("a").settled_at == 10.0  # the first settle stands

    @pytest.mark.parametrize("again", [Settle("a", State.RESOLVED, '"other"', 99.0),
                                       Settle("a", State.REJECTED, '"ok"', 99.0),
                                       Settle("a", State.CANCELED, None, 99.0)])
    def test_settling_with_another_outcome_is_a_conflict_and_changes_nothing(self, store: Store, again: Settle) -> None:
        store.apply(Batch(creates=[make_record("a")]))
        store.apply(Batch(settles=[Settle("a", State.RESOLVED, '"ok"', 10.0)]))
        before = store.get("a")
        result = store.apply(Batch(settles=[again]))
        assert result.conflicts == {"a": before}
        assert store.get("a") == before

    def test_settle_helper_raises_on_a_conflict(self, store: Store) -> None:
        store.apply(Batch(creates=[make_record("a")]))
        settled = store.settle("a", State.RESOLVED, "1", settled_at=3.0)
        assert settled.state is State.RESOLVED and settled.value == "1"
        assert store.settle("a", State.RESOLVED, "1").settled_at == 3.0
        with pytest.raises(AlreadySettledError):
            store.settle("a", State.RESOLVED, "2")

    def test_settling_a_missing_id_raises_and_writes_nothing(self, store: Store) -> None:
        store.apply(Batch(creates=[make_record("a")]))
        batch = Batch(creates=[make_record("b"), make_record("c")],
                      settles=[Settle("a", State.RESOLVED, "1", 1.0), Settle("missing", State.RESOLVED, "1", 1.0)],
                      attempts={"a": 7})
        with pytest.raises(PromiseNotFoundError, match="missing"):
            store.apply(batch)
        assert store.get_many(["a", "b", "c"]).keys() == {"a"}
        assert store.get("a").state is State.PENDING and store.get("a").attempt == 0
        # The store is still usable after the failed batch.
        store.apply(Batch(creates=[make_record("b")], settles=[Settle("a", State.RESOLVED, "1", 1.0)]))
        assert store.get("b") is not None and store.get("a").state is State.RESOLVED

    def test_a_settle_may_target_a_promise_created_in_the_same_batch(self, store: Store) -> None:
        result = store.apply(Batch(creates=[make_record("a")], settles=[Settle("a", State.RESOLVED, "1", 2.0)]))
        assert result == type(result)()
        assert (store.get("a").state, store.get("a").value) == (State.RESOLVED, "1")

    def test_of_two_settles_in_one_batch_the_first_wins(self, store: Store) -> None:
        store.apply(Batch(creates=[make_record("a")]))
        result = store.apply(Batch(settles=[Settle("a", State.RESOLVED, "1", 1.0),
                                            Settle("a", State.RESOLVED, "1", 2.0),
                                            Settle("a", State.REJECTED, "2", 3.0)]))
        assert (store.get("a").state, store.get("a").value, store.get("a").settled_at) == (State.RESOLVED, "1", 1.0)
        assert result.conflicts == {"a": store.get("a")}

    def test_many_creates_and_settles_in_one_batch(self, store: Store) -> None:
        records = [make_record(f"r.{i}", parent="r") for i in range(1200)]
        store.apply(Batch(creates=records))
        settles = [Settle(f"r.{i}", State.RESOLVED, str(i), 1.0) for i in range(0, 1200, 2)]
        settles.append(Settle("r.0", State.REJECTED, "x", 1.0))  # a conflict among many
        result = store.apply(Batch(creates=records[:700] + [make_record("r.new", parent="r")], settles=settles))
        assert result.existing.keys() == {f"r.{i}" for i in range(700)}
        assert list(result.conflicts) == ["r.0"]
        stored = store.get_many(f"r.{i}" for i in range(1200))
        assert len(stored) == 1200
        assert all(stored[f"r.{i}"].settled == (i % 2 == 0) for i in range(1200))

    # -- fences ---------------------------------------------------------------------------------

    def test_a_batch_fenced_with_the_current_token_applies(self, store: Store) -> None:
        lease = store.claim("wf", new_owner_id(), 30, now=100.0)
        store.apply(Batch(creates=[make_record("wf")], fences={"wf": lease.token}))
        assert store.get("wf") is not None

    def test_an_expired_lease_still_fences_until_someone_else_claims(self, store: Store) -> None:
        lease = store.claim("wf", new_owner_id(), 1, now=100.0)
        store.apply(Batch(creates=[make_record("wf")], fences={"wf": lease.token}))  # long expired by now
        assert store.get("wf") is not None

    def test_a_fence_on_a_root_settled_from_outside_raises_lease_lost(self, store: Store) -> None:
        mine = store.claim("wf", new_owner_id(), 30)
        store.apply(Batch(creates=[_workflow("wf")]))
        store.apply(Batch(settles=[Settle("wf", State.CANCELED, None, 5.0)]))  # `vow cancel` elsewhere
        with pytest.raises(LeaseLostError) as caught:
            store.apply(Batch(creates=[make_record("wf.1", root="wf", parent="wf")], fences={"wf": mine.token}))
        assert caught.value.roots == ["wf"]
        assert store.get("wf.1") is None

    def test_a_stale_fence_raises_lease_lost_and_writes_nothing(self, store: Store) -> None:
        store.apply(Batch(creates=[make_record("wf"), make_record("other")]))
        before = store.get("wf")
        mine = store.claim("wf", new_owner_id(), 10, now=100.0)
        held = store.claim("other", new_owner_id(), 10, now=100.0)
        theirs = store.claim("wf", new_owner_id(), 10, now=200.0)  # mine expired: taken over
        assert theirs.token > mine.token
        batch = Batch(creates=[make_record("wf.1", parent="wf")], settles=[Settle("wf", State.RESOLVED, "1", 1.0)],
                      attempts={"wf": 3}, fences={"other": held.token, "wf": mine.token, "never": 1})
        with pytest.raises(LeaseLostError) as caught:
            store.apply(batch)
        assert sorted(caught.value.roots) == ["never", "wf"]
        assert store.get("wf.1") is None
        assert store.get("wf") == before

    # -- attempts -------------------------------------------------------------------------------

    def test_attempts_change_pending_promises_only(self, store: Store) -> None:
        store.apply(Batch(creates=[make_record("p"), make_record("s")],
                          settles=[Settle("s", State.RESOLVED, "1", 1.0)]))
        store.apply(Batch(attempts={"p": 3, "s": 9, "missing": 2}))
        assert store.get("p").attempt == 3
        assert store.get("s").attempt == 0
        assert store.get("missing") is None

    def test_attempts_apply_to_a_promise_created_in_the_same_batch(self, store: Store) -> None:
        store.apply(Batch(creates=[make_record("p")], attempts={"p": 2}))
        assert store.get("p").attempt == 2

    # -- reads ----------------------------------------------------------------------------------

    def test_get_of_a_missing_id_is_none(self, store: Store) -> None:
        assert store.get("nope") is None

    def test_get_many_returns_the_ids_that_exist(self, store: Store) -> None:
        store.apply(Batch(creates=[make_record(f"x{i}") for i in range(3)]))
        assert store.get_many([]) == {}
        found = store.get_many(iter(["x0", "nope", "x2", "x0"]))
        assert found == {"x0": store.get("x0"), "x2": store.get("x2")}
        many = store.get_many(f"x{i % 3}" if i % 2 else f"none{i}" for i in range(2000))
        assert many.keys() == {"x0", "x1", "x2"}

    def test_children_are_the_direct_children_oldest_first(self, store: Store) -> None:
        store.apply(Batch(creates=[
            make_record("r"),
            make_record("r.b", parent="r", created_at=20.0),
            make_record("r.a", parent="r", created_at=10.0),
            make_record("r.a.1", parent="r.a", created_at=15.0),
            make_record("r.tie1", parent="r", created_at=30.0),
            make_record("r.tie2", parent="r", created_at=30.0),
            make_record("q.1", parent="q", root="q", created_at=1.0),
        ]))
        assert _ids(store.children("r")) == ["r.a", "r.b", "r.tie1", "r.tie2"]
        assert _ids(store.children("r.a")) == ["r.a.1"]
        assert store.children("r.b") == [] and store.children("nope") == []

    def test_tree_is_every_record_of_a_root_oldest_first(self, store: Store) -> None:
        store.apply(Batch(creates=[
            make_record("r", created_at=1.0),
            make_record("r.2", parent="r", created_at=3.0),
            make_record("r.1", parent="r", created_at=2.0),
            make_record("r.1.1", parent="r.1", created_at=2.5),
            make_record("q", created_at=0.0),
            make_record("q.1", parent="q", created_at=2.2),
        ]))
        store.apply(Batch(creates=[make_record("r.3", parent="r", created_at=4.0)],
                          settles=[Settle("r.1", State.RESOLVED, "1", 9.0)]))
        assert _ids(store.tree("r")) == ["r", "r.1", "r.1.1", "r.2", "r.3"]
        assert _ids(store.tree("q")) == ["q", "q.1"]
        assert store.tree("r")[1].state is State.RESOLVED
        assert store.tree("nope") == []
        trees = store.trees(["q", "nope", "r"])
        assert sorted(trees) == ["q", "r"]  # a root that does not exist is left out
        assert _ids(trees["r"]) == _ids(store.tree("r")) and _ids(trees["q"]) == ["q", "q.1"]
        assert store.trees([]) == {}

    # An id no store can hold as text (a lone surrogate: not UTF-8; a NUL: PostgreSQL's text holds
    # none) was never stored, so a lookup by it finds nothing, as for any id that does not exist;
    # a write that would store it is refused with the EncodeError the engine gives such an id.

    @pytest.mark.parametrize("bad", ["a\udc80", "a\x00b"], ids=["lone-surrogate", "nul"])
    def test_a_lookup_by_an_id_no_store_can_hold_finds_nothing(self, store: Store, bad: str) -> None:
        store.apply(Batch(creates=[_workflow("a"), make_record("a.1", parent="a")]))
        assert store.get(bad) is None
        assert store.get_many([bad, "a"]).keys() == {"a"}
        assert store.children(bad) == [] and store.tree(bad) == []
        assert store.trees([bad, "a"]).keys() == {"a"}
        assert store.search(root=bad) == [] and store.search(tag=("k", bad)) == []
        assert store.branch_counts([bad, "a"]) == {bad: {}, "a": {State.PENDING: 1}}
        assert store.lease(bad) is None and store.lease_free(bad) is False
        assert store.unpark(bad) is False
        store.release(Lease(bad, "o", 1, 0.0))  # nothing held by that id: nothing to do
        assert store.renew([Lease(bad, "o", 1, 0.0)], 10.0) == []
        assert store.delete_runs([bad], settled_before=time.time()) == {}

    @pytest.mark.parametrize("bad", ["a\udc80", "a\x00b"], ids=["lone-surrogate", "nul"])
    def test_a_claim_of_an_id_no_store_can_hold_is_refused_and_claims_nothing(self, store: Store, bad: str) -> None:
        store.apply(Batch(creates=[_workflow("a")]))
        owner = new_owner_id()
        with pytest.raises(EncodeError, match="cannot be stored"):
            store.claim(bad, owner, 10.0)
        with pytest.raises(EncodeError, match="cannot be stored"):
            store.claim_many(["a", bad], owner, 10.0)
        assert store.lease("a") is None  # nothing half-written: "a" was not claimed either
        assert store.lease(bad) is None

    @pytest.mark.parametrize("bad", ["a\udc80", "a\x00b"], ids=["lone-surrogate", "nul"])
    @pytest.mark.parametrize("where", ["id", "parent", "idempotency_key", "tag", "settle", "fence", "take_token",
                                       "hold_bucket"])
    def test_a_write_of_a_text_no_store_can_hold_is_refused_and_writes_nothing(
            self, store: Store, bad: str, where: str) -> None:
        store.apply(Batch(creates=[_workflow("a"), make_record("a.1", parent="a")]))
        good = make_record("a.2", parent="a")
        batches = {
            "id": Batch(creates=[good, make_record(f"a.{bad}", parent="a")]),
            "parent": Batch(creates=[good, make_record("a.3", parent=bad, root="a")]),
            "idempotency_key": Batch(creates=[good, make_record("a.3", parent="a", idempotency_key=bad)]),
            "tag": Batch(creates=[good, make_record("a.3", parent="a", tags={"k": bad})]),
            "settle": Batch(creates=[good], settles=[Settle("a.1", State.RESOLVED, "1", 1.0),
                                                     Settle(bad, State.RESOLVED, "1", 1.0)]),
            "fence": Batch(creates=[good], fences={bad: 1}),
        }
        with pytest.raises(EncodeError, match="cannot be stored"):
            if where == "take_token":
                store.take_token(bad, 1.0, 1)
            elif where == "hold_bucket":
                store.hold_bucket(bad, 1.0)
            else:
                store.apply(batches[where])
        assert store.get("a.2") is None and store.get("a.1").state is State.PENDING  # nothing half-written

    def _searchable(self, store: Store) -> None:
        store.apply(Batch(creates=[
            make_record("a", kind=Kind.WORKFLOW, created_at=1.0, tags={"env": "prod"}),
            make_record("a.1", parent="a", created_at=2.0, tags={"channel": "email", "env": "prod"}),
            make_record("a.2", parent="a", kind=Kind.SLEEP, created_at=3.0, tags={"channel": "sms"}),
            make_record("b", kind=Kind.WORKFLOW, created_at=4.0, tags={"env": "dev"}),
            make_record("b.1", parent="b", kind=Kind.PROMISE, created_at=5.0, tags={"channel": "email"}),
            make_record("c", kind=Kind.WORKFLOW, created_at=5.0),
        ]))
        store.apply(Batch(settles=[Settle("a.1", State.RESOLVED, "1", 6.0), Settle("b", State.CANCELED, None, 7.0)]))

    def test_search_without_filters_is_everything_newest_first(self, store: Store) -> None:
        self._searchable(store)
        assert _ids(store.search()) == ["c", "b.1", "b", "a.2", "a.1", "a"]  # c and b.1 tie: newest inserted first

    @pytest.mark.parametrize(("filters", "expected"), [
        ({"state": State.PENDING}, ["c", "b.1", "a.2", "a"]),
        ({"state": State.RESOLVED}, ["a.1"]),
        ({"state": State.TIMEDOUT}, []),
        ({"kind": Kind.WORKFLOW}, ["c", "b", "a"]),
        ({"kind": Kind.SLEEP}, ["a.2"]),
        ({"root": "a"}, ["a.2", "a.1", "a"]),
        ({"roots_only": True}, ["c", "b", "a"]),
        ({"tag": ("channel", "email")}, ["b.1", "a.1"]),
        ({"tag": ("env", "prod")}, ["a.1", "a"]),
        ({"tag": ("env", "nope")}, []),
        ({"root": "a", "state": State.PENDING}, ["a.2", "a"]),
        ({"roots_only": True, "state": State.PENDING}, ["c", "a"]),
        ({"tag": ("channel", "email"), "kind": Kind.STEP, "state": State.RESOLVED}, ["a.1"]),
        ({"limit": 2}, ["c", "b.1"]),
        ({"roots_only": True, "limit": 1}, ["c"]),
        ({"limit": 0}, []),
    ])
    def test_search_filters(self, store: Store, filters: dict[str, Any], expected: list[str]) -> None:
        self._searchable(store)
        assert _ids(store.search(**filters)) == expected

    # -- leases ---------------------------------------------------------------------------------

    def test_claim_of_a_free_root(self, store: Store) -> None:
        owner = new_owner_id()
        assert store.lease("wf") is None
        lease = store.claim("wf", owner, 30, now=100.0)
        assert lease == Lease("wf", owner, lease.token, 130.0) and lease.token >= 1
        assert store.lease("wf") == lease

    def test_claim_of_a_root_held_by_a_live_owner_is_refused(self, store: Store) -> None:
        holder = store.claim("wf", new_owner_id(), 30, now=100.0)
        assert store.claim("wf", new_owner_id(), 30, now=129.0) is None
        assert store.claim("wf", "elsewhere:1:1:abc", 30, now=129.0) is None
        assert store.lease("wf") == holder

    def test_claim_of_an_expired_lease_gives_a_larger_token(self, store: Store) -> None:
        first = store.claim("wf", "elsewhere:1:1:abc", 30, now=100.0)
        second = store.claim("wf", new_owner_id(), 30, now=130.0)  # expires_at <= now: expired
        assert second is not None and second.token > first.token
        assert store.lease("wf") == second

    def test_claim_many_takes_the_free_roots_and_leaves_the_held_ones(self, store: Store) -> None:
        owner = new_owner_id()
        other = store.claim("held", "elsewhere:1:1:abc", 30, now=100.0)
        taken = store.claim_many(["a", "held", "b"], owner, 30, now=110.0)
        assert set(taken) == {"a", "b"}
        assert taken["a"] == store.lease("a") == Lease("a", owner, taken["a"].token, 140.0)
        assert store.lease("held") == other
        assert store.claim_many([], owner, 30) == {}

    def test_claim_many_decides_each_root_as_claim_does(self, store: Store) -> None:
        owner, other, third = new_owner_id(), "elsewhere:1:1:abc", "elsewhere:2:2:def"
        mine = store.claim("mine", owner, 30, now=100.0)
        held = store.claim("held", other, 30, now=100.0)  # until 130: not free at 110
        expired = store.claim("expired", other, 10, now=50.0)  # until 60: taken over at 110
        store.claim("worn", other, 5, now=10.0)
        worn = store.claim("worn", third, 5, now=20.0)  # a first takeover already
        taken = store.claim_many(["new", "mine", "held", "expired", "worn", "new"], owner, 30, now=110.0,
                                 max_recoveries=1)
        assert set(taken) == {"new", "mine", "expired"}
        assert taken["new"] == store.lease("new") == Lease("new", owner, 1, 140.0)
        assert taken["mine"] == store.lease("mine") == Lease("mine", owner, mine.token, 140.0)
        assert taken["expired"] == store.lease("expired") == Lease("expired", owner, expired.token + 1, 140.0, 1)
        assert store.lease("held") == held
        parked = store.lease("worn")  # a second takeover would pass max_recoveries: parked, not taken
        assert parked is not None and parked.parked and parked.owner == "" and parked.recoveries == worn.recoveries + 1

    def test_release_many_frees_only_the_leases_still_held(self, store: Store) -> None:
        owner = new_owner_id()
        mine = store.claim_many(["a", "b"], owner, 30, now=100.0)
        lost = store.claim("b", "elsewhere:1:1:abc", 30, now=200.0)  # b expired and was taken over
        store.release_many([mine["a"], mine["b"]])
        assert store.lease("a").owner == "" and store.lease("a").token == mine["a"].token
        assert store.lease("b") == lost

    def test_claiming_a_lease_you_hold_renews_it(self, store: Store) -> None:
        owner = new_owner_id()
        first = store.claim("wf", owner, 30, now=100.0)
        again = store.claim("wf", owner, 60, now=110.0)
        assert again == Lease("wf", owner, first.token, 170.0)
        assert store.lease("wf") == again

    def test_an_owner_that_is_gone_loses_its_lease_at_once(self, store: Store) -> None:
        store.apply(Batch(creates=[_workflow("wf")]))
        owner = new_owner_id()
        if not store.hold_owner(owner):
            pytest.skip(f"{type(store).__name__} judges owners by lease expiry only")
        now = store.now()
        held = store.claim("wf", owner, 3600, now=now)
        assert held is not None
        assert store.claimable(now=now) == []
        assert store.claim("wf", new_owner_id(), 30, now=now) is None  # alive: refused
        store.release_owner(owner)  # the process is gone (a crash does the same: its lock is dropped)
        assert _ids(store.claimable(now=now)) == ["wf"]
        taken = store.claim("wf", new_owner_id(), 30, now=now)
        assert taken is not None and taken.token > held.token

    def test_a_live_owners_lease_is_not_taken_even_once_it_looks_expired(self, store: Store) -> None:
        store.apply(Batch(creates=[_workflow("wf")]))
        owner = new_owner_id()
        if not store.hold_owner(owner):
            pytest.skip(f"{type(store).__name__} judges owners by lease expiry only")
        held = store.claim("wf", owner, 1, now=100.0)
        assert held is not None and store.owner_alive(owner) is True
        later = 100.0 + 3600  # the wall clock stepped an hour ahead: every lease looks expired
        assert store.claimable(now=later) == [] and store.claim("wf", new_owner_id(), 30, now=later) is None
        assert store.lease_free("wf") is False
        store.release_owner(owner)
        assert store.owner_alive(owner) is False and store.claim("wf", new_owner_id(), 30, now=later) is not None

    def test_an_owner_the_store_cannot_judge_keeps_its_lease_until_expiry(self, store: Store) -> None:
        store.apply(Batch(creates=[_workflow("wf")]))
        unknown = "another-host:123:0123456789abcdef"  # never held here: maybe alive elsewhere
        held = store.claim("wf", unknown, 30, now=100.0)
        assert store.claim("wf", new_owner_id(), 30, now=129.0) is None
        assert _ids(store.claimable(now=129.0)) == []
        taken = store.claim("wf", new_owner_id(), 30, now=130.0)
        assert taken is not None and taken.token > held.token

    def test_tokens_only_grow_across_release_and_claim(self, store: Store) -> None:
        a, b = new_owner_id(), new_owner_id()
        tokens = []
        lease = store.claim("wf", a, 30, now=100.0)
        tokens.append(lease.token)
        store.release(lease)
        assert store.lease("wf") == Lease("wf", "", lease.token, 0.0)
        lease = store.claim("wf", b, 30, now=101.0)
        tokens.append(lease.token)
        lease = store.claim("wf", a, 30, now=200.0)  # b expired
        tokens.append(lease.token)
        store.release(lease)
        lease = store.claim("wf", a, 30, now=201.0)  # the same owner after a release: a new grant
        tokens.append(lease.token)
        assert tokens == sorted(set(tokens)), tokens

    def test_release_of_a_lost_lease_does_nothing(self, store: Store) -> None:
        mine = store.claim("wf", new_owner_id(), 10, now=100.0)
        theirs = store.claim("wf", new_owner_id(), 10, now=200.0)
        store.release(mine)
        assert store.lease("wf") == theirs

    def test_renew_keeps_held_leases_and_drops_lost_ones(self, store: Store) -> None:
        owner = new_owner_id()
        kept = store.claim("kept", owner, 10, now=100.0)
        expired_but_untaken = store.claim("late", owner, 10, now=100.0)
        lost = store.claim("lost", owner, 10, now=100.0)
        taker = store.claim("lost", new_owner_id(), 10, now=150.0)
        released = store.claim("released", owner, 10, now=100.0)
        store.release(released)
        assert kept and expired_but_untaken and lost and released
        renewed = store.renew([kept, expired_but_untaken, lost, released, Lease("never", owner, 1, 0.0)], 30, now=120.0)
        assert renewed == [Lease("kept", owner, kept.token, 150.0),
                           Lease("late", owner, expired_but_untaken.token, 150.0)]
        assert store.lease("kept").expires_at == 150.0
        assert store.lease("lost") == taker
        assert store.lease("released").owner == ""
        assert store.renew([], 30) == []

    def test_claimable_lists_pending_root_workflows_with_free_leases(self, store: Store) -> None:
        store.apply(Batch(creates=[
            _workflow("free", created_at=1.0),
            _workflow("held", created_at=2.0),
            _workflow("expired", created_at=3.0),
            _workflow("released", created_at=4.0),
            _workflow("done", created_at=5.0),
            make_record("step", created_at=6.0),  # a root, but not a workflow
            _workflow("free.child", parent="free", root="free", created_at=7.0),  # not a root
            _workflow("also_free", created_at=0.5),
        ], settles=[Settle("done", State.RESOLVED, "1", 9.0)]))
        store.claim("held", new_owner_id(), 100, now=1000.0)
        store.claim("expired", "elsewhere:1:1:abc", 10, now=900.0)
        store.release(store.claim("released", new_owner_id(), 100, now=1000.0))
        assert _ids(store.claimable(now=1000.0)) == ["also_free", "free", "expired", "released"]
        assert _ids(store.claimable(now=1000.0, limit=2)) == ["also_free", "free"]
        assert _ids(store.claimable(now=1101.0)) == ["also_free", "free", "held", "expired", "released"]

    # -- records round-trip ---------------------------------------------------------------------

    def test_records_round_trip_every_field(self, store: Store) -> None:
        full = PromiseRecord(
            id="root/ünïcode 🚀.1", state=State.PENDING, kind=Kind.SLEEP, root="root/ünïcode 🚀",
            func="pkg.module:function", args='[1, "two", {"3": null}]', value=None, parent="root/ünïcode 🚀",
            timeout=1_712_345_678.123456, idempotency_key="key-ü", attempt=2**40, created_at=0.1 + 0.2,
            settled_at=None, tags={"channel": "email", "empty": "", "ключ": "значение 🚀", "quote": '"\\'})
        bare = PromiseRecord("bare", State.PENDING, Kind.WORKFLOW, "bare")
        tiny = PromiseRecord("tiny", State.PENDING, Kind.PROMISE, "tiny", value="", timeout=5e-324,
                             created_at=1e-300, settled_at=None, tags={"k": "v"})
        settled = PromiseRecord("done", State.REJECTED, Kind.STEP, "done", value='{"type": "E"}', timeout=-1.5,
                                created_at=1_712_345_678.987654321, settled_at=1_712_345_679.000001, attempt=3)
        store.apply(Batch(creates=[full, bare, tiny, settled]))
        for record in (full, bare, tiny, settled):
            stored = store.get(record.id)
            assert stored == record
            assert type(stored.state) is State and type(stored.kind) is Kind
            assert stored.tags == record.tags and list(stored.tags) == list(record.tags)
        assert store.tree("root/ünïcode 🚀") == [full]
        assert store.search(tag=("ключ", "значение 🚀")) == [full]
        value = '{"nested": ["ü", 1.5, null]}'
        store.apply(Batch(settles=[Settle(full.id, State.RESOLVED, value, 1_712_345_680.5)]))
        assert store.get(full.id) == PromiseRecord(
            full.id, State.RESOLVED, full.kind, full.root, full.func, full.args, value, full.parent, full.timeout,
            full.idempotency_key, full.attempt, full.created_at, 1_712_345_680.5, full.tags)

    # -- threads --------------------------------------------------------------------------------

    def test_writes_from_many_threads(self, store: Store) -> None:
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                owner = new_owner_id()
                for i in range(40):
                    rid = f"t{n}.{i}"
                    store.apply(Batch(creates=[make_record(rid, parent=f"t{n}", root=f"t{n}")],
                                      settles=[Settle(rid, State.RESOLVED, str(i), 1.0)]))
                    lease = store.claim("shared", owner, 60)
                    if lease is not None:
                        store.release(lease)
                    store.get(rid)
            except BaseException as exc:  # noqa: BLE001 - reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        for n in range(6):
            assert len(store.tree(f"t{n}")) == 40
            assert all(r.state is State.RESOLVED for r in store.tree(f"t{n}"))

    # -- the store's clock --------------------------------------------------------------------

    def test_now_is_the_stores_clock_in_epoch_seconds(self, store: Store) -> None:
        assert abs(store.now() - time.time()) < 60  # the test runs beside the store

    # -- deadlines belong to the store -----------------------------------------------------------

    def _past_deadline(self, store: Store, kind: Kind = Kind.PROMISE) -> None:
        store.apply(Batch(creates=[make_record("p", kind=kind, timeout=store.now() - 1)]))

    def test_a_resolve_after_the_deadline_times_the_promise_out(self, store: Store) -> None:
        self._past_deadline(store)
        result = store.apply(Batch(settles=[Settle("p", State.RESOLVED, '"late"', store.now())]))
        stored = store.get("p")
        assert stored is not None and stored.state is State.TIMEDOUT and stored.value is not None
        assert "timed out" in stored.value and "PromiseTimeoutError" in stored.value
        assert result.conflicts == {"p": stored}

    def test_a_reject_after_the_deadline_times_the_promise_out(self, store: Store) -> None:
        self._past_deadline(store, Kind.STEP)
        store.apply(Batch(settles=[Settle("p", State.REJECTED, '{"type":"x"}', store.now())]))
        assert store.get("p").state is State.TIMEDOUT

    def test_settle_helper_refuses_a_late_resolve(self, store: Store) -> None:
        self._past_deadline(store)
        with pytest.raises(PromiseTimeoutError):
            store.settle("p", State.RESOLVED, '"late"')
        assert store.get("p").state is State.TIMEDOUT

    def test_a_resolve_before_the_deadline_wins(self, store: Store) -> None:
        store.apply(Batch(creates=[make_record("p", kind=Kind.PROMISE, timeout=store.now() + 3600)]))
        store.apply(Batch(settles=[Settle("p", State.RESOLVED, '"on time"', store.now())]))
        assert store.get("p").state is State.RESOLVED

    def test_a_sleep_resolves_after_its_wake_up_time(self, store: Store) -> None:
        self._past_deadline(store, Kind.SLEEP)
        store.apply(Batch(settles=[Settle("p", State.RESOLVED, "null", store.now())]))
        assert store.get("p").state is State.RESOLVED

    def test_a_cancel_or_timeout_after_the_deadline_is_stored_as_given(self, store: Store) -> None:
        store.apply(Batch(creates=[make_record(i, kind=Kind.PROMISE, timeout=store.now() - 1) for i in ("c", "t")]))
        store.apply(Batch(settles=[Settle("c", State.CANCELED, None, 1.0), Settle("t", State.TIMEDOUT, '"x"', 1.0)]))
        assert store.get("c").state is State.CANCELED
        assert (store.get("t").state, store.get("t").value) == (State.TIMEDOUT, '"x"')

    # -- an engine's commit is all or nothing ---------------------------------------------------

    def _engine_root(self, store: Store, *children: PromiseRecord) -> Lease:
        lease = store.claim("wf", new_owner_id(), 30)
        assert lease is not None
        store.apply(Batch(creates=[_workflow("wf"), *children], fences={"wf": lease.token}))
        return lease

    def test_a_fenced_settle_that_lost_to_an_outside_settle_writes_nothing(self, store: Store) -> None:
        lease = self._engine_root(store, make_record("wf.1", parent="wf", kind=Kind.PROMISE),
                                  make_record("wf.2", parent="wf"))
        won = store.settle("wf.1", State.RESOLVED, '"outside"', outside=True)
        batch = Batch(creates=[make_record("wf.3", parent="wf")],
                      settles=[Settle("wf.1", State.TIMEDOUT, '"t"', 1.0), Settle("wf.2", State.RESOLVED, "2", 1.0)],
                      attempts={"wf.2": 2}, fences={"wf": lease.token})
        with pytest.raises(ConflictError) as caught:
            store.apply(batch)
        assert caught.value.roots == ["wf"]
        assert caught.value.records == {"wf.1": won}
        assert store.get("wf.3") is None
        assert store.get("wf.2").state is State.PENDING and store.get("wf.2").attempt == 0

    def test_a_fenced_resolve_after_the_deadline_writes_nothing_not_even_the_timeout(self, store: Store) -> None:
        lease = self._engine_root(store, make_record("wf.1", parent="wf", timeout=store.now() - 1))
        with pytest.raises(ConflictError) as caught:
            store.apply(Batch(settles=[Settle("wf.1", State.RESOLVED, "1", 1.0)], fences={"wf": lease.token}))
        assert caught.value.records["wf.1"].state is State.TIMEDOUT
        assert store.get("wf.1").state is State.PENDING  # the engine times it out itself, in its next commit

    def test_a_fenced_create_under_a_settled_parent_writes_nothing(self, store: Store) -> None:
        lease = self._engine_root(store, make_record("wf.1", parent="wf", kind=Kind.WORKFLOW))
        store.apply(Batch(settles=[Settle("wf.1", State.CANCELED, None, 1.0)], outside=True))  # `vow cancel wf.1`
        with pytest.raises(ConflictError) as caught:
            store.apply(Batch(creates=[make_record("wf.1.1", parent="wf.1"), make_record("wf.2", parent="wf")],
                              fences={"wf": lease.token}))
        assert caught.value.roots == ["wf"] and caught.value.records["wf.1"].state is State.CANCELED
        assert store.get("wf.1.1") is None and store.get("wf.2") is None

    def test_a_fenced_create_under_a_parent_the_same_batch_settles_is_no_conflict(self, store: Store) -> None:
        # a child workflow that returns while a branch it began is still pending: one round, one batch
        lease = self._engine_root(store, make_record("wf.1", parent="wf", kind=Kind.WORKFLOW))
        store.apply(Batch(creates=[make_record("wf.1.1", parent="wf.1")],
                          settles=[Settle("wf.1", State.RESOLVED, "1", 1.0),
                                   Settle("wf.1.1", State.CANCELED, None, 1.0)],
                          fences={"wf": lease.token}))
        assert store.get("wf.1").state is State.RESOLVED and store.get("wf.1.1").state is State.CANCELED

    def test_a_fenced_create_of_an_id_that_exists_under_a_settled_parent_is_no_conflict(self, store: Store) -> None:
        # a workflow met again after a retry makes its calls again: the stored records answer them
        lease = self._engine_root(store, make_record("wf.1", parent="wf", kind=Kind.WORKFLOW),
                                  make_record("wf.1.1", parent="wf.1"))
        store.apply(Batch(settles=[Settle("wf.1.1", State.RESOLVED, "1", 1.0),
                                   Settle("wf.1", State.RESOLVED, "1", 1.0)], fences={"wf": lease.token}))
        result = store.apply(Batch(creates=[make_record("wf.1.1", parent="wf.1")], fences={"wf": lease.token}))
        assert list(result.existing) == ["wf.1.1"] and store.get("wf.1.1").state is State.RESOLVED

    def test_a_fenced_create_under_a_parent_the_same_batch_creates_settled_is_no_conflict(self, store: Store) -> None:
        # the parents that refuse a create are those settled before the batch (found by hypothesis)
        lease = self._engine_root(store)
        done = attrs.evolve(make_record("wf.1", parent="wf", kind=Kind.WORKFLOW), state=State.RESOLVED,
                            value="1", settled_at=1.0)
        store.apply(Batch(creates=[make_record("wf.1.1", parent="wf.1"), done], fences={"wf": lease.token}))
        assert store.get("wf.1").state is State.RESOLVED and store.get("wf.1.1").state is State.PENDING

    def test_a_conflict_with_a_promise_the_same_batch_creates_names_its_root_and_record(self, store: Store) -> None:
        # found by hypothesis: the record that won is the one the batch created, rolled back with it
        lease = self._engine_root(store)
        done = attrs.evolve(make_record("wf.1", parent="wf"), state=State.RESOLVED, value="1", settled_at=1.0)
        with pytest.raises(ConflictError) as caught:
            store.apply(Batch(creates=[done], settles=[Settle("wf.1", State.RESOLVED, "2", 2.0)],
                              fences={"wf": lease.token}))
        assert caught.value.roots == ["wf"] and caught.value.records["wf.1"].value == "1"
        assert store.get("wf.1") is None

    def test_a_fenced_settle_of_the_same_outcome_again_is_no_conflict(self, store: Store) -> None:
        lease = self._engine_root(store, make_record("wf.1", parent="wf"))
        store.apply(Batch(settles=[Settle("wf.1", State.RESOLVED, "1", 1.0)], fences={"wf": lease.token}))
        store.apply(Batch(settles=[Settle("wf.1", State.RESOLVED, "1", 2.0)], fences={"wf": lease.token}))
        assert store.get("wf.1").settled_at == 1.0

    # -- the change feed of outside writes ------------------------------------------------------

    def test_outside_writes_are_in_the_change_feed_in_commit_order(self, store: Store) -> None:
        start = store.changes(None).seq
        lease = self._engine_root(store, make_record("wf.1", parent="wf", kind=Kind.PROMISE),
                                  make_record("wf.2", parent="wf"))
        store.apply(Batch(settles=[Settle("wf.2", State.RESOLVED, "2", 1.0)], fences={"wf": lease.token}))
        assert store.changes(start).entries == []  # an engine's own writes are not announced
        store.settle("wf.1", State.RESOLVED, '"ok"', outside=True)
        store.create(_workflow("submitted"), outside=True)
        store.apply(Batch(settles=[Settle("wf.2", State.REJECTED, '{"type":"x"}', 1.0)], outside=True))  # a conflict
        feed = store.changes(start)
        assert feed.entries == [("wf", "wf.1"), ("submitted", "submitted")]
        assert feed.complete and feed.seq > start
        assert store.changes(feed.seq).entries == [] and store.changes(feed.seq).seq == feed.seq
        assert store.changes(None).seq == feed.seq

    def test_an_outside_cancel_of_a_subtree_announces_each_promise(self, store: Store) -> None:
        self._engine_root(store, make_record("wf.1", parent="wf", kind=Kind.WORKFLOW),
                          make_record("wf.1.1", parent="wf.1"))
        start = store.changes(None).seq
        store.apply(Batch(settles=[Settle(i, State.CANCELED, None, 1.0) for i in ("wf.1", "wf.1.1")], outside=True))
        assert store.changes(start).entries == [("wf", "wf.1"), ("wf", "wf.1.1")]

    # -- recoveries and parking -------------------------------------------------------------------

    def test_a_takeover_counts_a_recovery_and_a_release_resets_it(self, store: Store) -> None:
        first = store.claim("wf", new_owner_id(), 10, now=100.0)
        assert first.recoveries == 0
        second = store.claim("wf", new_owner_id(), 10, now=200.0)  # the first expired without releasing
        assert second.recoveries == 1 and store.lease("wf").recoveries == 1
        third = store.claim("wf", new_owner_id(), 10, now=300.0)
        assert third.recoveries == 2
        store.release(third)
        assert store.lease("wf").recoveries == 0
        fourth = store.claim("wf", new_owner_id(), 10, now=301.0)  # a free lease: no recovery
        assert fourth.recoveries == 0

    def test_a_root_taken_over_too_often_is_parked_until_unparked(self, store: Store) -> None:
        store.apply(Batch(creates=[_workflow("wf")]))
        assert store.claim("wf", new_owner_id(), 10, now=100.0, max_recoveries=1) is not None
        assert store.claim("wf", new_owner_id(), 10, now=200.0, max_recoveries=1).recoveries == 1
        assert store.claim("wf", new_owner_id(), 10, now=300.0, max_recoveries=1) is None  # a 2nd recovery: parked
        parked = store.lease("wf")
        assert parked.parked and "vow resume --force wf" in parked.parked and parked.owner == ""
        assert store.claimable(now=400.0) == []
        assert store.claim("wf", new_owner_id(), 10, now=400.0) is None
        assert store.unpark("wf") is True and store.unpark("wf") is False
        assert _ids(store.claimable(now=400.0)) == ["wf"]
        again = store.claim("wf", new_owner_id(), 10, now=400.0, max_recoveries=1)
        assert again is not None and again.recoveries == 0 and again.token > parked.token

    def test_releasing_a_parked_lease_changes_nothing(self, store: Store) -> None:
        # a parked lease has no owner: a release naming none must not reset its recoveries (found by hypothesis)
        store.apply(Batch(creates=[_workflow("wf")]))
        store.claim("wf", new_owner_id(), 1, now=100.0)
        assert store.claim("wf", new_owner_id(), 1, now=200.0, max_recoveries=0) is None
        parked = store.lease("wf")
        assert parked is not None and parked.parked
        store.release_many([parked])
        store.release(parked)
        assert store.lease("wf") == parked

    def test_lease_lost_names_the_roots(self, store: Store) -> None:
        with pytest.raises(LeaseLostError) as caught:
            store.apply(Batch(creates=[make_record("x")], fences={"x": 7}))
        assert caught.value.roots == ["x"]

    # -- retention (added for `vow prune`; see vow.retention) ------------------------------------

    CUTOFF = 1_800_000_000.0

    def _a_run(self, store: Store, root: str, *, state: State, settled_at: float | None, children: int = 3,
               child_state: State = State.RESOLVED) -> None:
        """A run: root ``root`` in ``state`` (settled at ``settled_at``) with a workflow child and its leaves."""
        early = self.CUTOFF - 10 * 86400
        records = [make_record(root, root=root, kind=Kind.WORKFLOW, state=state, created_at=early - 100,
                               settled_at=settled_at if state.settled else None)]
        records.append(make_record(f"{root}.w", parent=root, root=root, kind=Kind.WORKFLOW, state=child_state,
                                   created_at=early - 99, settled_at=early if child_state.settled else None))
        records += [make_record(f"{root}.w.{i}", parent=f"{root}.w", root=root, state=child_state,
                                created_at=early - 98 + i, settled_at=early if child_state.settled else None)
                    for i in range(children)]
        store.apply(Batch(creates=records))

    def test_prune_deletes_whole_finished_runs_settled_before_the_cutoff(self, store: Store) -> None:
        self._a_run(store, "old", state=State.RESOLVED, settled_at=self.CUTOFF - 1)
        self._a_run(store, "keep", state=State.RESOLVED, settled_at=self.CUTOFF + 1)
        lease = store.claim("old", new_owner_id(), 60)
        assert lease is not None
        result = store.prune(before=self.CUTOFF)
        assert [(r.id, r.state, r.promises) for r in result.runs] == [("old", State.RESOLVED, 5)]
        assert result.promises == 5 and not result.dry_run
        assert store.tree("old") == [] and store.get("old") is None and store.get("old.w.0") is None
        assert store.children("old.w") == [] and store.lease("old") is None
        assert len(store.tree("keep")) == 5
        assert _ids(store.search(roots_only=True)) == ["keep"]

    def test_prune_never_touches_a_pending_run_even_one_whose_children_settled_long_ago(self, store: Store) -> None:
        self._a_run(store, "waiting", state=State.PENDING, settled_at=None)
        before = store.tree("waiting")
        assert store.prune(before=self.CUTOFF + 365 * 86400).runs == ()
        assert store.delete_runs(["waiting"], settled_before=self.CUTOFF + 365 * 86400) == {}
        assert store.tree("waiting") == before

    def test_prune_takes_only_the_states_asked_for(self, store: Store) -> None:
        for root, state in (("ok", State.RESOLVED), ("bad", State.REJECTED), ("late", State.TIMEDOUT),
                            ("stopped", State.CANCELED)):
            self._a_run(store, root, state=state, settled_at=self.CUTOFF - 1)
        result = store.prune(before=self.CUTOFF, states={State.REJECTED, State.TIMEDOUT})
        assert sorted(r.id for r in result.runs) == ["bad", "late"]
        assert result.by_state() == {"rejected": 1, "timedout": 1}
        assert sorted(_ids(store.search(roots_only=True))) == ["ok", "stopped"]

    def test_a_dry_run_reports_the_same_and_deletes_nothing(self, store: Store) -> None:
        self._a_run(store, "a", state=State.RESOLVED, settled_at=self.CUTOFF - 2)
        self._a_run(store, "b", state=State.CANCELED, settled_at=self.CUTOFF - 1, children=7,
                    child_state=State.CANCELED)
        dry = store.prune(before=self.CUTOFF, dry_run=True)
        assert dry.dry_run and [(r.id, r.promises) for r in dry.runs] == [("a", 5), ("b", 9)]
        assert len(store.tree("a")) == 5 and len(store.tree("b")) == 9
        done = store.prune(before=self.CUTOFF)
        assert [(r.id, r.promises) for r in done.runs] == [("a", 5), ("b", 9)]

    def test_a_finished_run_with_records_left_pending_under_it_goes_whole(self, store: Store) -> None:
        # e.g. a back-off timer or a branch the run stopped waiting for: dead once the root settled
        self._a_run(store, "done", state=State.RESOLVED, settled_at=self.CUTOFF - 1, child_state=State.PENDING)
        assert [(r.id, r.promises) for r in store.prune(before=self.CUTOFF).runs] == [("done", 5)]
        assert store.tree("done") == []

    def test_delete_runs_checks_each_root_itself(self, store: Store) -> None:
        self._a_run(store, "done", state=State.REJECTED, settled_at=self.CUTOFF - 1)
        self._a_run(store, "recent", state=State.RESOLVED, settled_at=self.CUTOFF + 1)
        self._a_run(store, "open", state=State.PENDING, settled_at=None)
        deleted = store.delete_runs(["open", "recent", "done.w", "missing", "done", "done"],
                                    settled_before=self.CUTOFF)
        assert deleted == {"done": 5}
        assert len(store.tree("recent")) == 5 and len(store.tree("open")) == 5

    def test_a_pruned_id_can_start_a_new_run(self, store: Store) -> None:
        self._a_run(store, "again", state=State.RESOLVED, settled_at=self.CUTOFF - 1)
        store.prune(before=self.CUTOFF)
        fresh = make_record("again", kind=Kind.WORKFLOW)
        assert store.create(fresh) == (fresh, True)
        assert store.claim("again", new_owner_id(), 60) is not None

    def test_prune_of_an_empty_store_removes_nothing(self, store: Store) -> None:
        result = store.prune(before=self.CUTOFF)
        assert result.runs == () and result.promises == 0
    # -- listings: runs and branch counts (StoreOperations.runs, .branch_counts) -----------------

    def _runs(self, store: Store) -> None:
        """Five runs (two pipelines), their branches, and records that are not runs."""
        from vow import encoding
        from vow.stores.base import pipeline_workflow

        def pipeline_args(name: str) -> str:
            return encoding.encode_args(({"name": name, "branches": []},), {}, what="a pipeline")

        store.apply(Batch(creates=[
            make_record("r1", kind=Kind.WORKFLOW, func="app.notify", created_at=10.0),
            make_record("r1.email", parent="r1", root="r1", created_at=11.0),
            make_record("r1.sms", parent="r1", root="r1", created_at=11.0),
            make_record("r1.sms.backoff.2", parent="r1.sms", root="r1", kind=Kind.SLEEP, func="retry backoff",
                        created_at=12.0),
            make_record("r2", kind=Kind.WORKFLOW, func=pipeline_workflow(), args=pipeline_args("orders"),
                        created_at=20.0),
            make_record("r2.started", parent="r2", root="r2", created_at=20.5),
            make_record("r2.approval", parent="r2", root="r2", kind=Kind.PROMISE, created_at=20.6),
            make_record("r2.push", parent="r2", root="r2", created_at=21.0),
            make_record("r2.child", parent="r2", root="r2", kind=Kind.WORKFLOW, created_at=21.0),
            make_record("r2.child.1", parent="r2.child", root="r2", created_at=22.0),
            make_record("r2.nap", parent="r2", root="r2", kind=Kind.SLEEP, created_at=23.0),
            make_record("r2.result", parent="r2", root="r2", created_at=24.0),
            # r3 and r4 start at the same moment: the id breaks the tie
            make_record("r3", kind=Kind.WORKFLOW, func="app.notify", created_at=30.0),
            make_record("r4", kind=Kind.WORKFLOW, func=pipeline_workflow(), args=pipeline_args("images"),
                        created_at=30.0),
            make_record("r5", kind=Kind.WORKFLOW, func="app.other", created_at=40.0),
            make_record("lonely", kind=Kind.STEP, func="app.notify", created_at=50.0),  # a root, not a workflow
        ]))
        store.apply(Batch(settles=[Settle("r1", State.RESOLVED, "1", 15.0),
                                   Settle("r1.email", State.RESOLVED, "1", 12.0),
                                   Settle("r1.sms", State.REJECTED, '"no"', 14.0),
                                   Settle("r2.push", State.RESOLVED, "1", 22.0),
                                   Settle("r2.started", State.RESOLVED, "20.5", 20.6),
                                   Settle("r2.child.1", State.RESOLVED, "1", 23.0),
                                   Settle("r5", State.CANCELED, None, 41.0)]))

    @pytest.mark.parametrize(("filters", "expected"), [
        ({}, ["r5", "r4", "r3", "r2", "r1"]),
        ({"state": State.PENDING}, ["r4", "r3", "r2"]),
        ({"state": State.RESOLVED}, ["r1"]),
        ({"state": State.CANCELED}, ["r5"]),
        ({"state": State.TIMEDOUT}, []),
        ({"name": "app.notify"}, ["r3", "r1"]),
        ({"name": "orders"}, ["r2"]),  # a pipeline run goes by its pipeline's name
        ({"name": "vow.pipeline"}, []),  # ... not by the workflow all pipelines run as
        ({"name": "nope"}, []),
        ({"since": 20.0}, ["r5", "r4", "r3", "r2"]),
        ({"until": 30.0}, ["r2", "r1"]),
        ({"since": 20.0, "until": 40.0}, ["r4", "r3", "r2"]),
        ({"before": (30.0, "r4")}, ["r3", "r2", "r1"]),
        ({"before": (30.0, "r3")}, ["r2", "r1"]),
        ({"before": (10.0, "r1")}, []),
        ({"state": State.PENDING, "name": "app.notify", "since": 11.0}, ["r3"]),
        ({"limit": 2}, ["r5", "r4"]),
        ({"limit": 0}, []),
    ])
    def test_runs_filters(self, store: Store, filters: dict[str, Any], expected: list[str]) -> None:
        from vow.stores.base import StoreOperations

        self._runs(store)
        assert _ids(store.runs(**filters)) == expected
        # The default built on search() agrees, so a store that keeps it lists runs the same way.
        assert _ids(StoreOperations.runs(store, **filters)) == expected

    def test_runs_pages_with_the_keyset_cursor_see_every_run_once(self, store: Store) -> None:
        store.apply(Batch(creates=[make_record(f"w{i:02d}", kind=Kind.WORKFLOW, created_at=float(i // 3))
                                   for i in range(20)]))  # groups of three runs that start together
        pages, before = [], None
        while True:
            page = store.runs(limit=4, before=before)
            if not page:
                break
            pages.append(_ids(page))
            before = (page[-1].created_at, page[-1].id)
        seen = [rid for page in pages for rid in page]
        assert seen == [f"w{i:02d}" for i in reversed(range(20))]
        assert all(len(page) == 4 for page in pages)

    def test_branch_counts_are_the_direct_step_and_workflow_children(self, store: Store) -> None:
        from vow.stores.base import StoreOperations

        self._runs(store)
        expected = {
            "r1": {State.RESOLVED: 1, State.REJECTED: 1},  # not its back-off timer
            "r2": {State.RESOLVED: 1, State.PENDING: 1},  # push and the child workflow; not the gate, the
                                                          # sleep, the child's own leaf or the bookkeeping steps
            "r3": {},
            "unknown": {},
        }
        assert store.branch_counts(["r1", "r2", "r3", "unknown"]) == expected
        assert StoreOperations.branch_counts(store, ["r1", "r2", "r3", "unknown"]) == expected
        assert store.branch_counts([]) == {}

    # -- schedules (see Store.schedules and vow.schedules) ---------------------------------------

    def test_schedules_are_put_listed_by_name_replaced_and_deleted(self, store: Store) -> None:
        from vow.schedules.record import ScheduleRecord

        assert store.schedules() == []
        store.put_schedule(ScheduleRecord("b", '{"every": 5}'))
        store.put_schedule(ScheduleRecord("a", '{"every": 1}', paused=True, cursor=10.0))
        listed = store.schedules()
        assert [s.name for s in listed] == ["a", "b"]
        assert (listed[0].definition, listed[0].paused, listed[0].cursor) == ('{"every": 1}', True, 10.0)
        assert abs(listed[0].updated_at - store.now()) < 60
        store.put_schedule(ScheduleRecord("a", '{"every": 2}', paused=False, cursor=None))
        replaced = store.schedules()[0]
        assert (replaced.definition, replaced.paused, replaced.cursor) == ('{"every": 2}', False, None)
        assert store.delete_schedule("a") is True
        assert store.delete_schedule("a") is False
        assert [s.name for s in store.schedules()] == ["b"]

    def test_a_schedule_cursor_only_moves_forward(self, store: Store) -> None:
        from vow.schedules.record import ScheduleRecord

        store.put_schedule(ScheduleRecord("s", "{}"))
        assert store.advance_schedule("s", 100.0) is True
        assert store.advance_schedule("s", 100.0) is False
        assert store.advance_schedule("s", 50.0) is False
        assert store.schedules()[0].cursor == 100.0
        assert store.advance_schedule("s", 101.0) is True
        assert store.schedules()[0].cursor == 101.0
        assert store.advance_schedule("unknown", 1.0) is False

    def test_schedule_cursors_advanced_from_many_threads_end_at_the_largest(self, store: Store) -> None:
        from vow.schedules.record import ScheduleRecord

        store.put_schedule(ScheduleRecord("s", "{}"))
        moved: list[float] = []

        def advance(start: int) -> None:
            for tick in range(start, 200, 4):
                if store.advance_schedule("s", float(tick)):
                    moved.append(float(tick))

        threads = [threading.Thread(target=advance, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.schedules()[0].cursor == 199.0
        assert 199.0 in moved

    # -- rate limits (see Store.take_token and vow.ratelimit) ------------------------------------

    def test_a_new_bucket_starts_full_and_refills_at_its_rate(self, store: Store) -> None:
        t = 1_000.0
        assert store.take_token("b", 2.0, 2, now=t) == 0.0
        assert store.take_token("b", 2.0, 2, now=t) == 0.0
        assert store.take_token("b", 2.0, 2, now=t) == pytest.approx(0.5)  # empty: one token in 1/2 s
        assert store.take_token("b", 2.0, 2, now=t + 0.25) == pytest.approx(0.25)
        assert store.take_token("b", 2.0, 2, now=t + 0.5) == 0.0
        assert store.take_token("b", 2.0, 2, now=t + 0.5) == pytest.approx(0.5)
        assert store.take_token("b", 2.0, 2, now=t + 100) == 0.0  # refilled to burst, not beyond
        assert store.take_token("b", 2.0, 2, now=t + 100) == 0.0
        assert store.take_token("b", 2.0, 2, now=t + 100) > 0
        assert store.take_token("other", 2.0, 2, now=t) == 0.0  # buckets are separate

    def test_a_held_bucket_gives_nothing_until_the_hold_ends(self, store: Store) -> None:
        t = 2_000.0
        assert store.take_token("b", 10.0, 5, now=t) == 0.0
        store.hold_bucket("b", 3.0, now=t)
        assert store.take_token("b", 10.0, 5, now=t + 1) == pytest.approx(2.0)
        store.hold_bucket("b", 1.0, now=t + 1)  # a shorter hold does not cut the longer one
        assert store.take_token("b", 10.0, 5, now=t + 2.5) == pytest.approx(0.5)
        assert store.take_token("b", 10.0, 5, now=t + 3) == 0.0  # one token when the hold ends
        assert store.take_token("b", 10.0, 5, now=t + 3) == pytest.approx(0.1)
        store.hold_bucket("fresh", 2.0, now=t)
        assert store.take_token("fresh", 1.0, 1, now=t) == pytest.approx(2.0)

    def test_a_wall_clock_stepped_back_neither_holds_a_bucket_nor_refills_it(self, store: Store) -> None:
        t = 5_000.0
        assert store.take_token("b", 2.0, 1, now=t + 3600) == 0.0  # its stamp: an hour ahead of t
        assert store.take_token("b", 2.0, 1, now=t) == pytest.approx(0.5)  # not 3600.5: no time passed
        assert store.take_token("b", 2.0, 1, now=t + 0.5) == 0.0  # the rate counts from the step
        assert store.take_token("b", 2.0, 1, now=t + 0.5) == pytest.approx(0.5)

    def test_a_hold_lasts_no_longer_than_asked_when_the_wall_clock_steps_back(self, store: Store) -> None:
        t = 6_000.0
        store.hold_bucket("b", 3.0, now=t + 3600)
        assert store.take_token("b", 10.0, 5, now=t) == pytest.approx(3.0)  # at most its length from now
        assert store.take_token("b", 10.0, 5, now=t + 1) == pytest.approx(2.0)
        store.hold_bucket("b", 1.0, now=t + 1)  # still the longer one
        assert store.take_token("b", 10.0, 5, now=t + 3) == 0.0  # one token when it ends
        assert store.take_token("b", 10.0, 5, now=t + 3) == pytest.approx(0.1)
        store.hold_bucket("b", 0.0, now=t + 3)  # no time: nothing changes
        assert store.take_token("b", 10.0, 5, now=t + 3.1) == 0.0

    def test_tokens_taken_from_many_threads_never_exceed_the_bucket(self, store: Store) -> None:
        t = 3_000.0
        taken: list[int] = []

        def take() -> None:
            for _ in range(10):
                if store.take_token("b", 1.0, 5, now=t) == 0.0:
                    taken.append(1)

        threads = [threading.Thread(target=take) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert len(taken) == 5  # the burst, and not one token more, at one instant
