"""An observer must never break a workflow: neither its ``on_event`` nor its ``leaf_scope``, which is
entered around every leaf attempt (a tracer's span, say), may fail a leaf or make it run twice."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from vow import Context, LeafContext, Vow


class BrokenScope:
    """An observer whose leaf scope fails on the way in or on the way out."""

    def __init__(self, where: str) -> None:
        self.where = where

    def on_event(self, event: object) -> None:
        pass

    @contextlib.contextmanager
    def leaf_scope(self, ctx: LeafContext) -> Iterator[None]:
        if self.where == "enter":
            raise RuntimeError("the exporter is not configured")
        yield
        raise RuntimeError("the span could not be ended")


@pytest.mark.parametrize("where", ["enter", "exit"])
def test_a_leaf_scope_that_fails_is_logged_and_the_leaf_runs_once(
        tmp_path: Path, where: str, caplog: pytest.LogCaptureFixture) -> None:
    sent = []

    def send(ctx: LeafContext, to: str) -> str:
        sent.append(to)
        return f"sent to {to}"

    def notify(ctx: Context):
        return (yield ctx.run(send, "ann"))

    with caplog.at_level(logging.WARNING), Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}",
                                               observers=[BrokenScope(where)]) as v:
        # before the fix: the scope's error was the leaf's, retried: the message went out 8 times, or the run failed
        assert v.run("notify/1", notify) == "sent to ann"
    assert sent == ["ann"]
    assert any("leaf_scope" in r.getMessage() and "BrokenScope" in r.getMessage() for r in caplog.records), [
        r.getMessage() for r in caplog.records]


def test_a_leaf_scope_does_not_hide_the_leafs_own_error(tmp_path: Path) -> None:
    class Swallows:
        def on_event(self, event: object) -> None:
            pass

        @contextlib.contextmanager
        def leaf_scope(self, ctx: LeafContext) -> Iterator[None]:
            with contextlib.suppress(ValueError):
                yield

    def fails(ctx: LeafContext) -> None:
        raise ValueError("bad input")

    def wf(ctx: Context):
        try:
            yield ctx.run(fails).options(non_retryable=[ValueError])
        except ValueError as exc:
            return str(exc)
        return "no error"

    with Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}", observers=[Swallows()]) as v:
        assert v.run("fails/1", wf) == "bad input"


def test_an_observer_calling_sys_exit_is_logged_and_the_engine_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Exits:  # a library that ends the process on bad input (argparse, click) called from an observer
        def on_event(self, event: object) -> None:
            raise SystemExit(2)

    def add(ctx: LeafContext, a: int) -> int:
        return a + 1

    def wf(ctx: Context):
        return (yield ctx.run(add, 1))

    with caplog.at_level(logging.WARNING), Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}", observers=[Exits()]) as v:
        # before the fix: "the vow engine stopped after an internal error", and the next run hung
        assert v.begin_run("first", wf).result(30) == 2
        assert v.begin_run("second", wf).result(30) == 2
    assert any("failed on" in r.getMessage() for r in caplog.records)
