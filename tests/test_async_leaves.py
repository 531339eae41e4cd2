"""``async def`` leaves share one event loop: one that blocks it (``time.sleep``, a blocking client)
holds back every other async leaf, so vow says so while it happens, naming where it blocks."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from pathlib import Path

import pytest

from vow import Context, LeafContext, Vow
from vow.testing import wait_until


def test_an_async_leaf_blocking_the_event_loop_is_reported_while_it_blocks(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    async def blocks(ctx: LeafContext) -> str:
        release.wait(60)  # blocking code in an async def: the loop runs nothing else meanwhile
        return "blocked"

    async def quick(ctx: LeafContext) -> str:
        await asyncio.sleep(0)
        return "quick"

    def both(ctx: Context):
        slow = yield ctx.begin_run(blocks)
        fast = yield ctx.begin_run(quick)
        return (yield ctx.all([slow, fast]))

    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records if "event loop" in r.getMessage()]

    with caplog.at_level(logging.WARNING, logger="vow"), Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}") as v:
        handle = v.begin_run("blocked/1", both)
        try:
            wait_until(warned, 30, "a warning that the async leaves' event loop is blocked")  # before: none
        finally:
            release.set()
        assert handle.result(30) == ["blocked", "quick"]
    message = warned()[0]
    assert "blocks" in message and "test_async_leaves.py" in message, message
    assert "asyncio.to_thread" in message, message


class AsyncSender:
    """A leaf that is an object whose ``__call__`` is ``async def`` (a client class, say)."""

    async def __call__(self, ctx: LeafContext, x: int) -> int:
        await asyncio.sleep(0)
        return x * 3


async def doubled(ctx: LeafContext, x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


def logged(fn):  # a plain decorator: what it returns is no coroutine function, though calling it makes a coroutine
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


def test_async_leaves_behind_an_object_or_a_plain_decorator_are_awaited(tmp_path: Path) -> None:
    def wf(ctx: Context):
        a = yield ctx.run(AsyncSender(), 2)
        b = yield ctx.run(logged(doubled), 2)
        return [a, b]

    with Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}") as v:
        # before the fix: EncodeError "Object of type coroutine is not JSON serializable", and a
        # RuntimeWarning that the coroutine was never awaited
        assert v.run("wrapped/1", wf) == [6, 4]
