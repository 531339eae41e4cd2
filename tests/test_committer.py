"""The committer: what a round's commit returns when the store takes it all, refuses some roots, or fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vow.engine.committer import Committer
from vow.errors import ConflictError, LeaseLostError, StoreError
from vow.records import Batch, BatchResult, Kind, State, make_record, make_settle


class ScriptedStore:
    """A store whose ``apply`` answers as ``answer`` says, recording every batch it was given."""

    def __init__(self, answer: Callable[[Batch], BatchResult]) -> None:
        self.answer = answer
        self.batches: list[Batch] = []

    def apply(self, batch: Batch) -> BatchResult:
        self.batches.append(batch)
        return self.answer(batch)

    def release_many(self, leases: Any) -> None:
        pass


def take_all(batch: Batch) -> BatchResult:
    return BatchResult()


def round_of(committer: Committer, *roots: str) -> None:
    """Each root creates one step, settles another, and has an action and a leaf waiting on its commit."""
    for rid in roots:
        writes = committer.writes(rid, 7)
        writes.creates.append(make_record(f"{rid}.2", State.PENDING, Kind.STEP, rid, "f", "[]", None, rid, None,
                                          f"{rid}.2", 1, 1.0, None, {}))
        writes.settles.append(make_settle(f"{rid}.1", State.RESOLVED, "1", 1.0))
        writes.actions.append((print, (f"action of {rid}",)))
        writes.leaves.append(f"leaf of {rid}")


def test_a_clean_round_reports_nothing_and_lets_every_action_run() -> None:
    store = ScriptedStore(take_all)
    committer = Committer(store)
    round_of(committer, "a", "b")
    result, actions, leaves = committer.commit()
    assert result is None
    assert actions == [(print, ("action of a",)), (print, ("action of b",))]
    assert leaves == ["leaf of a", "leaf of b"]
    [batch] = store.batches
    assert batch.fences == {"a": 7, "b": 7} and len(batch.creates) == 2 and len(batch.settles) == 2
    assert not committer.pending()


def test_a_refused_root_is_dropped_and_the_others_are_committed_again() -> None:
    def refuse_b(batch: Batch) -> BatchResult:
        if "b" in batch.fences:
            raise LeaseLostError("lost", roots=["b"])
        return BatchResult()

    store = ScriptedStore(refuse_b)
    committer = Committer(store)
    round_of(committer, "a", "b")
    result, actions, leaves = committer.commit()
    assert result is not None and result.lost == ["b"] and result.refused("b") and not result.refused("a")
    assert actions == [(print, ("action of a",))] and leaves == ["leaf of a"]
    assert [sorted(b.fences) for b in store.batches] == [["a", "b"], ["a"]]


def test_a_conflict_hands_back_the_records_that_won() -> None:
    won = make_record("b.1", State.CANCELED, Kind.STEP, "b", "f", "[]", None, "b", None, "b.1", 1, 1.0, 2.0, {})

    def conflict_on_b(batch: Batch) -> BatchResult:
        if "b" in batch.fences:
            raise ConflictError("settled first", roots=["b"], records={"b.1": won})
        return BatchResult()

    committer = Committer(ScriptedStore(conflict_on_b))
    round_of(committer, "a", "b")
    result, _, leaves = committer.commit()
    assert result is not None and result.conflicts == {"b": {"b.1": won}} and leaves == ["leaf of a"]


def test_a_refusal_that_names_no_root_of_a_one_root_batch_refuses_that_root_once() -> None:
    def name_another_root(batch: Batch) -> BatchResult:
        raise LeaseLostError("lost", roots=["elsewhere"])

    store = ScriptedStore(name_another_root)
    committer = Committer(store)
    round_of(committer, "a")
    result, actions, leaves = committer.commit()
    assert result is not None and result.lost == ["a"]
    assert actions == [] and leaves == []
    assert len(store.batches) == 1  # not tried again and again


def test_a_store_failure_is_retried_root_by_root_so_one_bad_root_fails_alone() -> None:
    def fail_with_c(batch: Batch) -> BatchResult:
        if "c" in batch.fences:
            raise StoreError("disk full")
        return BatchResult()

    committer = Committer(ScriptedStore(fail_with_c))
    round_of(committer, "a", "c")
    result, actions, leaves = committer.commit()
    assert result is not None and list(result.failed) == ["c"] and isinstance(result.failed["c"], StoreError)
    assert leaves == ["leaf of a"] and actions == [(print, ("action of a",))]


def test_a_create_that_was_stored_already_is_reported_with_its_root() -> None:
    there = make_record("a.2", State.RESOLVED, Kind.STEP, "a", "f", "[]", "5", "a", None, "a.2", 1, 1.0, 2.0, {})
    committer = Committer(ScriptedStore(lambda batch: BatchResult(existing={"a.2": there})))
    round_of(committer, "a")
    result, _, leaves = committer.commit()
    assert result is not None and result.existing == {"a.2": ("a", there)} and not result.refused("a")
    assert leaves == ["leaf of a"]
