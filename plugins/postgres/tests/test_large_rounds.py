"""Rounds whose texts add up to more than PostgreSQL takes in one statement: sent as several
statements in one transaction, all or nothing.

Each value may be 256 MiB of JSON (``vow.encoding.MAX_VALUE_BYTES``) but PostgreSQL refuses a
message over 1 GB: a round of five such results used to fail whole (the server logs "invalid
message length" and ends the session), stopping the run, whose leaves a resume then ran again.
The normal suite lowers the statement budget (``STATEMENT_BYTES``); ``VOW_HEAVY=1`` also sends
the real thing.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
import pytest
from vow_postgres import PostgresStore
from vow_postgres import store as pg_store_module

from vow.encoding import MAX_VALUE_BYTES
from vow.errors import ConflictError, LeaseLostError, PromiseNotFoundError
from vow.records import Batch, Kind, PromiseRecord, Settle, State

BUDGET = 1000
OWNER = "here:1:00000000000000ee"


@pytest.fixture
def apply_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The characters of text each call of the server's ``apply`` carried, in the order sent."""
    calls: list[int] = []
    execute = psycopg.Connection.execute

    def spy(self: psycopg.Connection[Any], query: Any, params: Any = None, **kwargs: Any) -> Any:
        if isinstance(query, str) and ".apply(" in query:
            calls.append(sum(len(x) for p in params if isinstance(p, list) for x in p if isinstance(x, str)))
        return execute(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", spy)
    monkeypatch.setattr(pg_store_module, "STATEMENT_BYTES", BUDGET)
    return calls


def _run(store: PostgresStore, root: str, leaves: int) -> int:
    """A root with ``leaves`` pending leaves, claimed; the lease's token."""
    store.apply(Batch(creates=[PromiseRecord(root, State.PENDING, Kind.WORKFLOW, root)]
                      + [PromiseRecord(f"{root}.{i}", State.PENDING, Kind.STEP, root, parent=root)
                         for i in range(leaves)]))
    return store.claim(root, OWNER, 60).token


def _value(n: int, fill: str = "x") -> str:
    return '"' + fill * (n - 2) + '"'


def test_a_round_over_the_budget_is_stored_whole_in_several_statements(pg_store: PostgresStore,
                                                                       apply_calls: list[int]) -> None:
    token = _run(pg_store, "big", 5)
    apply_calls.clear()
    value = _value(600)
    # The root settles with its leaves: each statement checks the fence, which a root settled by an
    # earlier statement of the same round would fail; and a leaf created in the round too.
    extra = PromiseRecord("big.9", State.PENDING, Kind.STEP, "big", args=_value(700), parent="big")
    pg_store.apply(Batch(creates=[extra],
                         settles=[Settle("big", State.RESOLVED, value, 2.0)]
                         + [Settle(f"big.{i}", State.RESOLVED, value, 1.0) for i in range(5)]
                         + [Settle("big.9", State.RESOLVED, value, 1.0)],
                         fences={"big": token}))
    assert len(apply_calls) >= 7 and max(apply_calls) <= BUDGET, apply_calls
    stored = {r.id: r for r in pg_store.tree("big")}
    assert {i: (r.state, r.value) for i, r in stored.items()} == {
        i: (State.RESOLVED, value) for i in ["big", *(f"big.{n}" for n in range(5)), "big.9"]}
    assert stored["big.9"].args == extra.args


def test_a_round_over_the_budget_whose_last_statement_is_refused_writes_nothing(pg_store: PostgresStore,
                                                                                 apply_calls: list[int]) -> None:
    token = _run(pg_store, "r", 4)
    pg_store.apply(Batch(settles=[Settle("r.3", State.RESOLVED, '"outside"', 1.0)], outside=True))
    before = pg_store.tree("r")
    big = _value(600)
    apply_calls.clear()
    late = PromiseRecord("r.new", State.PENDING, Kind.STEP, "r", parent="r")
    with pytest.raises(PromiseNotFoundError, match="r.nope"):
        pg_store.apply(Batch(creates=[late], settles=[Settle(f"r.{i}", State.RESOLVED, big, 1.0) for i in range(3)]
                             + [Settle("r.nope", State.RESOLVED, big, 1.0)], fences={"r": token}))
    assert len(apply_calls) >= 4
    with pytest.raises(ConflictError, match="r.3"):
        pg_store.apply(Batch(creates=[late], settles=[Settle(f"r.{i}", State.RESOLVED, big, 1.0) for i in range(4)],
                             fences={"r": token}))
    with pytest.raises(LeaseLostError):
        pg_store.apply(Batch(creates=[late], settles=[Settle(f"r.{i}", State.RESOLVED, big, 1.0) for i in range(3)],
                             fences={"r": token + 1}))
    assert pg_store.tree("r") == before


@pytest.mark.skipif(os.environ.get("VOW_HEAVY") != "1", reason="VOW_HEAVY=1: sends 1.25 GB to the server")
def test_five_results_of_the_largest_size_settle_in_one_round(pg_store: PostgresStore) -> None:
    """The real sizes: five leaves' results of 250 MB each, 1.25 GB in one fenced round."""
    token = _run(pg_store, "huge", 5)
    value = _value(250_000_000)
    assert len(value) <= MAX_VALUE_BYTES
    pg_store.apply(Batch(settles=[Settle(f"huge.{i}", State.RESOLVED, value, 1.0) for i in range(5)],
                         fences={"huge": token}))
    del value
    stored = pg_store.tree("huge")
    assert [(r.id, r.state, len(r.value or "")) for r in stored[1:]] == [
        (f"huge.{i}", State.RESOLVED, 250_000_000) for i in range(5)]
