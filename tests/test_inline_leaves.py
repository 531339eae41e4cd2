"""Quick leaves run on the engine thread; a leaf that blocks there moves the engine to a new thread.

Each test would hang (and fail on its timeout) or fail its assertion if the engine did not move
off a blocked leaf, or if a function that blocked kept running on the engine thread.
"""

from __future__ import annotations

import functools
import gc
import os
import signal
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import pytest

from vow import Context, LeafContext, Vow
from vow.testing import wait_until

WAIT = 30.0  # only a hang detector: every wait below ends on an event


@pytest.fixture(params=["memory", "sqlite"])
def vow(request: pytest.FixtureRequest, tmp_path: Path):
    client = Vow(store="memory:" if request.param == "memory" else f"sqlite:{tmp_path / 'vow.sqlite'}")
    yield client
    client.close()


def thread_name(ctx: LeafContext, i: int) -> str:
    return threading.current_thread().name


def steps(ctx: Context, n: int):
    """``n`` sequential steps; the name of the thread each ran on."""
    names = []
    for i in range(n):
        names.append((yield ctx.run(thread_name, i)))
    return names


def test_quick_leaves_run_on_the_engine_thread(vow: Vow) -> None:
    names = vow.run("quick", steps, 20)
    # not all: a quick function that a loaded machine stalls for 10 ms goes to the pool
    assert "vow-engine" in names


def test_inline_leaves_false_runs_every_leaf_in_the_pool(tmp_path: Path) -> None:
    client = Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}", inline_leaves=False)
    try:
        assert "vow-engine" not in set(client.run("pooled", steps, 5))
    finally:
        client.close()


def test_a_branch_that_blocks_moves_the_engine_and_its_siblings_run_meanwhile(vow: Vow) -> None:
    """The first branch waits for the last one: on one thread this would never end."""
    last_ran = threading.Event()
    blocking = [True]

    def waits_for_last(ctx: LeafContext) -> bool | str:
        if blocking[0]:
            ran = last_ran.wait(WAIT)  # False: the last branch never ran while the first one blocked
            time.sleep(0.05)  # and it is slow: 50 ms, enough for one attempt to mark its function slow
            return ran
        return threading.current_thread().name

    def last(ctx: LeafContext) -> str:
        last_ran.set()
        return "last"

    def fan(ctx: Context):
        first = yield ctx.begin_run(waits_for_last)
        middle = []
        for i in range(5):
            middle.append((yield ctx.begin_run(thread_name, i)))
        final = yield ctx.begin_run(last)
        return (yield ctx.all([first, *middle, final]))

    values = vow.begin_run("blocks", fan).result(WAIT * 2)
    assert values[0] is True and values[-1] == "last" and len(values) == 7

    def again(ctx: Context):
        return (yield ctx.run(waits_for_last))

    blocking[0] = False  # quick now, but it blocked the engine thread once:
    # the function that blocked the engine thread once runs in the pool for its next attempts
    assert vow.run("again", again) != "vow-engine"


def test_a_quick_function_that_was_slow_once_comes_back_to_the_engine_thread(vow: Vow) -> None:
    """One pause (a garbage collection, a loaded machine) must not send a quick function to the pool
    for the life of the process: each step would then pay two thread hand-offs."""
    paused = [False]

    def pauses_once(ctx: LeafContext, i: int) -> str:
        if not paused[0]:
            paused[0] = True
            time.sleep(0.05)  # 50 ms: its moving average passes the slow mark at once
        return threading.current_thread().name

    def steps_of(ctx: Context, n: int):
        names = []
        for i in range(n):
            names.append((yield ctx.run(pauses_once, i)))
        return names

    names = vow.run("paused", steps_of, 200)
    assert names[1] != "vow-engine"  # slow once: the next attempts go to the pool ...
    assert "vow-engine" in names[100:]  # ... until its quick attempts there bring it back


def deliver(ctx: LeafContext, i: int, message: bytes = b"") -> int:
    return len(message)


def test_functions_made_for_each_call_are_not_kept(vow: Vow) -> None:
    """A leaf made afresh for each call (a partial, a closure) is dropped with its step: a worker that
    runs such workflows for a week must not keep every one, nor the values they hold."""
    made: list[weakref.ref[Any]] = []

    def send(ctx: LeafContext, i: int, message: bytes = b"") -> int:
        return len(message)

    def wrapped(message: bytes) -> Any:
        @functools.wraps(deliver)  # a closure that takes a module-level function's names
        def leaf(ctx: LeafContext, i: int) -> int:
            return deliver(ctx, i, message)
        return leaf

    def fresh_leaves(ctx: Context, n: int):
        total = 0
        for i in range(n):
            leaf = functools.partial(send, message=bytes(1000)) if i % 2 else wrapped(bytes(1000))
            made.append(weakref.ref(leaf))
            total += yield ctx.run(leaf, i)
        return total

    assert vow.run("fresh", fresh_leaves, 300) == 300_000
    gc.collect()
    assert sum(ref() is not None for ref in made) <= 1  # the last one may still be in the workflow's frame


def test_workflows_made_for_each_run_are_not_kept(vow: Vow) -> None:
    """The same for a root workflow: a closure passed to ``vow.run`` for each run is dropped after it."""
    made: list[weakref.ref[Any]] = []

    def make(n: int) -> Any:
        payload = bytes(1000)

        def workflow(ctx: Context):
            return len(payload) + (yield ctx.run(thread_name, n)).count("")
        made.append(weakref.ref(workflow))
        return workflow

    for i in range(50):
        vow.run(f"made/{i}", make(i))
    gc.collect()
    assert sum(ref() is not None for ref in made) <= 1  # the last one is still the registered one


def test_what_is_learnt_of_a_closure_holds_for_the_next_made_from_the_same_code(vow: Vow) -> None:
    """A closure that blocks, made afresh for each step, moves the engine once, not at every step."""
    def blocking_leaf(i: int) -> Any:
        def leaf(ctx: LeafContext) -> str:
            time.sleep(0.03)  # 30 ms: slow on its first attempt already
            return threading.current_thread().name
        return leaf

    def steps_of(ctx: Context, n: int):
        names = []
        for i in range(n):
            names.append((yield ctx.run(blocking_leaf(i))))
        return names

    names = vow.run("closures", steps_of, 6)
    assert "vow-engine" not in names[1:]  # learnt from the first: the others start in the pool


def test_a_leaf_that_waits_for_the_engine_does_not_deadlock(vow: Vow) -> None:
    """A leaf that starts another workflow and waits for its result needs the engine it runs on."""
    def inner(ctx: Context, x: int):
        return (yield ctx.run(thread_name, x))

    def starts_a_run(ctx: LeafContext) -> Any:
        try:
            return vow.begin_run("inner", inner, 1).result(WAIT)
        except TimeoutError:
            return "the inner run never ran: the engine stayed on this thread"

    def outer(ctx: Context):
        return (yield ctx.run(starts_a_run))

    assert vow.begin_run("outer", outer).result(WAIT * 2) == "vow-engine"


def test_close_does_not_wait_for_a_leaf_blocking_the_engine_thread(tmp_path: Path) -> None:
    client = Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}")
    entered, release = threading.Event(), threading.Event()

    def blocks(ctx: LeafContext) -> str:
        entered.set()
        release.wait(WAIT)
        return "done"

    def wf(ctx: Context):
        return (yield ctx.run(blocks))

    client.begin_run("held", wf)
    assert entered.wait(WAIT)
    closer = threading.Thread(target=client.close)
    closer.start()
    closer.join(WAIT)
    try:
        assert not closer.is_alive()
        assert client._engine._ended.is_set(), "the engine never stopped: it stayed on the blocked thread"
    finally:
        release.set()
    reopened = Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}")
    try:
        wait_until(lambda: reopened.get("held") is not None, message="the run to be stored")
        assert reopened.run("held", wf) == "done"  # resumed: the leaf runs again, it never settled
    finally:
        reopened.close()


def test_a_leaf_that_forks_and_returns_in_the_child_does_not_make_the_child_an_engine(tmp_path: Path) -> None:
    """The child returns from the leaf on the engine thread's copy; going on as the engine there
    would commit for the parent's lease. It must end instead (the parent waits for it)."""
    client = Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}")

    def forks(ctx: LeafContext) -> str:
        pid = os.fork()
        if pid == 0:
            return "child"  # what a careless leaf does: the child returns too
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return "parent"
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return "the child went on running"

    def wf(ctx: Context):
        return (yield ctx.run(forks))

    try:
        assert client.run("forks", wf) == "parent"
        assert client.get("forks.1").value == '"parent"'
    finally:
        client.close()


def test_a_client_closed_right_after_a_quick_leaf_leaves_no_watchdog_thread(tmp_path: Path) -> None:
    def quick(ctx: LeafContext) -> int:
        return 1

    def wf(ctx: Context):
        return (yield ctx.run(quick))

    before = set(threading.enumerate())
    for i in range(3):
        with Vow(store=f"sqlite:{tmp_path / f'{i}.sqlite'}") as v:
            v.register(wf)
            assert v.run(f"wf/{i}", wf) == 1  # the watchdog still watches this leaf when the client closes

    def watchdogs() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in before and t.name == "vow-inline-watchdog"]

    # before the fix: the watchdog cleared the wake-up close() had just set, and waited for ever
    wait_until(lambda: not watchdogs(), 10, "the closed clients' inline watchdogs to exit")
