"""The engine on PostgreSQL: an outside resolve wakes a waiting workflow through LISTEN/NOTIFY."""

from __future__ import annotations

from typing import Any

from vow import Vow
from vow.testing import wait_until

POLL_S = 60.0
"""The engines here look at the store on their own only this often: a wake-up sooner came by NOTIFY."""


def approval_flow(ctx: Any, order: str):
    approval = yield ctx.promise(f"{ctx.id}.approval")
    return {"order": order, "approved_by": (yield approval)}


def test_a_resolve_from_another_client_wakes_the_workflow_without_polling(postgres_url: str) -> None:
    waiting = Vow(postgres_url, poll_interval=POLL_S)
    resolver = Vow(postgres_url, poll_interval=POLL_S)  # another process would do the same
    try:
        waiting.register(approval_flow)
        handle = waiting.begin_run("order/7", approval_flow, "A-7")
        wait_until(lambda: waiting.get("order/7.approval") is not None, message="the outside promise is stored")
        resolver.resolve("order/7.approval", "ada")
        # Well before the first poll: only a NOTIFY can have woken the engine.
        assert handle.result(timeout=POLL_S / 3) == {"order": "A-7", "approved_by": "ada"}
    finally:
        waiting.close()
        resolver.close()


def greet(ctx: Any, name: str) -> str:
    return f"hello {name}"


def odd_ids(ctx: Any):
    """Calls whose ids PostgreSQL cannot store (a NUL, or more than its index takes), then a good one."""
    refused = []
    for cid in (f"{ctx.id}.a\x00b", f"{ctx.id}." + "".join(chr(0x4E00 + i % 20000) for i in range(1000))):
        try:
            yield ctx.run(greet, "x").options(id=cid)
        except Exception as exc:  # noqa: BLE001 - the refusal is the result
            refused.append(type(exc).__name__)
    return refused, (yield ctx.run(greet, "ada"))


def test_an_id_postgresql_cannot_store_fails_that_call_not_the_run(postgres_url: str) -> None:
    # Before, the round's commit failed on the server and the run stopped, pending for good.
    with Vow(postgres_url) as vow:
        vow.register(odd_ids)
        assert vow.begin_run("ids/1", odd_ids).result(timeout=30) == [["EncodeError", "EncodeError"], "hello ada"]
        assert [r.id for r in vow.store.tree("ids/1")] == ["ids/1", "ids/1.3"]  # nothing of the two refused


SENT: list[tuple[str, int]] = []


def send(ctx: Any, n: int) -> int:
    SENT.append((ctx.id, n))
    return n


def twice(ctx: Any, second: int):
    first = yield ctx.run(send, 1).options(id=f"{ctx.id}.email")
    again = yield ctx.run(send, second).options(id=f"{ctx.id}.email")  # in the round that settled the first
    return [first, again]


def test_an_id_met_again_in_the_round_that_settled_it_does_not_run_its_leaf_again(postgres_url: str) -> None:
    # Before, the store found the id pending (read before the round's settles) and the leaf ran twice.
    SENT.clear()
    with Vow(postgres_url) as vow:
        vow.register(twice)
        assert vow.run("again/1", twice, 2, timeout=30) == [1, 1]
    assert SENT == [("again/1.email", 1)]
