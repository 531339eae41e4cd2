"""Leaves and workflows that fail in odd ways: an exception whose message cannot be read, a library
that calls ``sys.exit()``, a ``KeyboardInterrupt`` raised in a leaf, a workflow that will not stop.
Each fails its own call and nothing else."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import threading
from pathlib import Path

import pytest

from vow import Context, LeafContext, Vow
from vow.errors import RejectedError
from vow.records import State
from vow.retry import Constant
from vow.testing import wait_until

WAIT = 30.0  # only a hang detector: every wait ends on an event


class Unreadable(Exception):
    """An exception whose message cannot be read: its ``__str__`` raises."""

    def __str__(self) -> str:
        raise ValueError("no message")


@pytest.fixture
def vow(tmp_path: Path):
    client = Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}")
    yield client
    client.close()


def test_a_failure_whose_message_cannot_be_read_fails_only_its_call(
        vow: Vow, caplog: pytest.LogCaptureFixture) -> None:
    tries = []

    def unreadable(ctx: LeafContext) -> None:
        tries.append(ctx.attempt)
        raise Unreadable()

    def sibling(ctx: LeafContext, i: int) -> int:
        return i

    def fan(ctx: Context):
        failing = yield ctx.begin_run(unreadable).options(retry=Constant(delay=0.01, max_attempts=3))
        others = []
        for i in range(5):
            others.append((yield ctx.begin_run(sibling, i)))
        values = yield ctx.all(others)
        try:
            yield failing
        except RejectedError as exc:  # not declared with vow.register_error: it comes back as this
            return values, exc.type_name
        return values, None

    with caplog.at_level(logging.WARNING):
        assert vow.run("unreadable", fan) == [[0, 1, 2, 3, 4], f"{__name__}.Unreadable"]
    assert tries == [1, 2, 3]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    retried = [r.getMessage() for r in caplog.records if r.name == "vow.retry"]
    assert len(retried) == 2 and all("Unreadable whose message could not be read" in m for m in retried), retried


def parses_bad_arguments(ctx: LeafContext) -> None:
    """A leaf using a library that ends the process on bad input: argparse calls sys.exit(2)."""
    argparse.ArgumentParser(prog="tool").parse_args(["--no-such-flag"])


def interrupted(ctx: LeafContext) -> None:
    raise KeyboardInterrupt()


@pytest.mark.parametrize(("leaf", "name"), [(parses_bad_arguments, "builtins.SystemExit"),
                                            (interrupted, "builtins.KeyboardInterrupt")])
def test_a_leaf_that_exits_fails_its_call_as_an_exception_the_workflow_can_catch(
        vow: Vow, leaf: object, name: str) -> None:
    def catches(ctx: Context):
        try:
            yield ctx.run(leaf)
        except Exception as exc:  # noqa: BLE001 - what a workflow catches
            return type(exc).__name__, getattr(exc, "type_name", None)
        return None

    assert vow.run(f"catches/{name}", catches) == ["RejectedError", name]

    def lets_it_through(ctx: Context):
        return (yield ctx.run(leaf))

    # and the caller of vow.run gets an Exception too: a leaf's sys.exit() must not end the caller's process
    with pytest.raises(RejectedError) as raised:
        vow.run(f"through/{name}", lets_it_through)
    assert raised.value.type_name == name


def stubborn(ctx: Context):
    """A workflow that will not stop: it catches GeneratorExit and waits again."""
    while True:
        try:
            yield ctx.sleep(100)
        except GeneratorExit:
            pass


def cleans_up_with_a_step(ctx: Context):
    try:
        yield ctx.sleep(100)
    finally:
        yield ctx.sleep(1)  # a step in `finally`: when the run is stopped, it cannot be made


def leaves_a_stubborn_child(ctx: Context):
    yield ctx.begin_run(stubborn)
    yield ctx.sleep(0)  # the child starts meanwhile, and waits in its loop
    return "done"  # the child is canceled: nobody waits for it


def test_a_workflow_that_will_not_stop_is_ended_with_one_clear_warning(
        vow: Vow, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with caplog.at_level(logging.WARNING, logger="vow"):
        assert vow.run("parent", leaves_a_stubborn_child) == "done"
        vow.begin_run("stubborn", stubborn)
        vow.begin_run("finally", cleans_up_with_a_step)
        wait_until(lambda: all(vow.get(f"{rid}.1") is not None for rid in ("stubborn", "finally")))
        assert vow.cancel("stubborn").state is State.CANCELED
        assert vow.cancel("finally").state is State.CANCELED
        wait_until(lambda: len([r for r in caplog.records if "would not stop" in r.getMessage()]) >= 3)
    gc.collect()  # a generator left suspended complains again when it is collected
    assert unraisable == []
    warned = sorted(r.getMessage().split()[1] for r in caplog.records if "would not stop" in r.getMessage())
    assert warned == ["'finally'", "'parent.1'", "'stubborn'"]


def test_a_failure_with_a_huge_message_is_stored_with_its_start(vow: Vow) -> None:
    """A message that quotes a whole response body is kept to its first 100,000 characters: a failure
    is stored at every attempt, and a larger one would fail the commit past the store's bound."""
    def quotes_a_body(ctx: LeafContext) -> None:
        raise ValueError("the server said: " + "x" * 5_000_000)

    def child(ctx: Context):
        return (yield ctx.run(quotes_a_body).options(retry=Constant(delay=0.01, max_attempts=2)))

    def workflow(ctx: Context):
        try:
            yield ctx.run(child)  # the failure is stored again, as the child's: it must read the same
        except ValueError as exc:
            return str(exc)
        return None

    message = vow.run("huge-message", workflow)
    assert message.startswith("the server said: xxx") and message.endswith("(4,900,081 more characters not kept)")
    assert len(message) <= 100_000
    assert len(vow.get("huge-message.1.1").value or "") < 120_000


def test_a_workflow_whose_cleanup_raises_is_not_said_to_go_on(
        vow: Vow, caplog: pytest.LogCaptureFixture) -> None:
    cleaning = threading.Event()

    def cleanup_fails(ctx: Context):
        try:
            yield ctx.sleep(100)
        finally:
            cleaning.set()
            raise RuntimeError("cleanup failed")  # it ends, with an error of its own: it did stop

    with caplog.at_level(logging.WARNING, logger="vow"):
        vow.begin_run("cleanup", cleanup_fails)
        wait_until(lambda: vow.get("cleanup.1") is not None)
        assert vow.cancel("cleanup").state is State.CANCELED
        assert cleaning.wait(WAIT)  # the engine is closing it: what it logs of it comes before the next run's
        vow.run("after", leaves_a_stubborn_child)
    warned = [r.getMessage().split()[1] for r in caplog.records if "would not stop" in r.getMessage()]
    assert warned == ["'after.1'"]



def test_an_async_leaf_raising_cancelled_error_itself_fails_once_like_an_exit(vow: Vow) -> None:
    tries = []

    async def gives_up(ctx: LeafContext) -> None:
        tries.append(ctx.attempt)
        raise asyncio.CancelledError()  # a BaseException like SystemExit: control flow, not a flaky call

    def calls(ctx: Context):
        try:
            yield ctx.run(gives_up).options(retry=Constant(delay=0.01, max_attempts=3))
        except RejectedError as exc:
            return exc.type_name
        return None

    assert vow.run("cancelled", calls) == "asyncio.exceptions.CancelledError"
    assert tries == [1]  # before the fix: [1, 2, 3], retried like a failure worth trying again
