"""A value too large for any store fails its own call when it is made, not the commit after it
(which stopped the run at every resume, its leaf run again each time)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from vow import Context, LeafContext, Vow, encoding
from vow.errors import EncodeError
from vow.records import State
from vow.testing import wait_until

BOUND = 1000  # bytes of JSON, for these tests: the real bound is half a gigabyte


@pytest.fixture
def vow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(encoding, "MAX_VALUE_BYTES", BOUND)
    client = Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}")
    yield client
    client.close()


def test_the_bound_is_below_what_every_store_holds() -> None:
    # A row holds a call's arguments and its result: both at the bound, and the row's other columns
    # (an id of 1,024 bytes, tags) with room to spare.
    row = 2 * encoding.MAX_VALUE_BYTES + 1_000_000
    con = sqlite3.connect(":memory:")
    try:
        assert row < con.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)  # SQLite's limit is on a whole row
    finally:
        con.close()
    assert row < 1024 ** 3  # PostgreSQL's largest text value


def large(ctx: LeafContext, size: int) -> str:
    return "x" * size


def small(ctx: LeafContext, i: int) -> int:
    return i


def test_a_result_too_large_fails_its_call_and_the_run_goes_on(vow: Vow) -> None:
    def workflow(ctx: Context):
        branch = yield ctx.begin_run(large, 2 * BOUND)
        handles = []
        for i in range(3):
            handles.append((yield ctx.begin_run(small, i)))
        others = yield ctx.all(handles)
        try:
            yield branch
        except EncodeError as exc:
            return others, str(exc)
        return others, None

    others, error = vow.run("large/result", workflow)
    assert others == [0, 1, 2]
    assert "the result of" in error and "large/result.1" in error and f"over the {BOUND:,}" in error
    assert vow.get("large/result.1").state is State.REJECTED


@pytest.mark.parametrize("argument", ["x" * 2 * BOUND, {"text": "x" * 2 * BOUND}])
def test_arguments_too_large_fail_the_call_where_it_is_made(vow: Vow, argument: object) -> None:
    def workflow(ctx: Context):
        try:
            yield ctx.run(small, argument)
        except EncodeError as exc:
            return str(exc)
        return None

    error = vow.run(f"large/args/{type(argument).__name__}", workflow)
    assert "arguments of" in error and f"over the {BOUND:,}" in error
    assert [r.id for r in vow.store.tree(f"large/args/{type(argument).__name__}")] == [
        f"large/args/{type(argument).__name__}"]  # the call was never stored


def test_a_workflow_result_or_a_resolved_value_too_large_is_refused(vow: Vow) -> None:
    def returns_large(ctx: Context):
        yield ctx.run(small, 1)
        return "x" * 2 * BOUND

    with pytest.raises(EncodeError, match="the result of workflow"):
        vow.run("large/workflow", returns_large)
    assert vow.get("large/workflow").state is State.REJECTED

    def waits(ctx: Context):
        approval = yield ctx.promise("large/approval")
        return (yield approval)

    run = vow.begin_run("large/waits", waits)
    wait_until(lambda: vow.get("large/approval") is not None)
    with pytest.raises(EncodeError, match="large/approval"):
        vow.resolve("large/approval", "x" * 2 * BOUND)
    assert vow.get("large/approval").state is State.PENDING  # nothing stored; a smaller value still can be
    vow.resolve("large/approval", "yes")
    assert run.result(30) == "yes"
