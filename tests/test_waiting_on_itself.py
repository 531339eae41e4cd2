"""A wait that could never end fails at once, naming why, instead of hanging the process for ever:
a leaf waiting for its own run, and the engine's own thread (a workflow's body, an observer) waiting
for any run."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.support import python

APP = textwrap.dedent('''
    import asyncio, sys
    from vow import Vow

    store, case = sys.argv[1:3]

    class Waiter:
        vow = None

        def on_event(self, event):
            if case == "observer" and event.id == "main/1" and event.kind.value == "started":
                try:
                    self.vow.run("other/1", other)
                except Exception as exc:
                    print("observer:", type(exc).__name__, exc, flush=True)

    waiter = Waiter()
    vow = Vow(store=store, observers=[waiter])
    waiter.vow = vow

    def add(ctx, a, b):
        return a + b

    def wait_for_main(ctx):
        return vow.run("main/1", main)

    async def await_main(ctx):
        return await vow.run_async("main/1", main)

    @vow.register
    def other(ctx):
        return (yield ctx.run(add, 1, 2))

    @vow.register
    def main(ctx):
        if case == "leaf":
            return (yield ctx.run(wait_for_main))
        if case == "async-leaf":
            return (yield ctx.run(await_main))
        if case == "body":
            vow.run("other/1", other)
        return (yield ctx.run(add, 2, 2))

    try:
        print("result:", vow.run("main/1", main))
    except Exception as exc:
        print("failed:", type(exc).__name__, exc)
    vow.close()
''')


@pytest.mark.parametrize("case", ["leaf", "async-leaf", "body"])
def test_a_wait_on_its_own_run_fails_at_once(tmp_path: Path, case: str) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    done = python(app, f"sqlite:{tmp_path / 'vow.sqlite'}", case, timeout=60)  # before the fix: hung for ever
    assert done.returncode == 0, done.stderr
    assert "failed: PermanentError" in done.stdout, done.stdout
    assert "can never end" in done.stdout, done.stdout


def test_an_observer_waiting_for_a_run_fails_at_once(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    done = python(app, f"sqlite:{tmp_path / 'vow.sqlite'}", "observer", timeout=60)  # before the fix: hung for ever
    assert done.returncode == 0, done.stderr
    assert "observer: PermanentError" in done.stdout and "can never end" in done.stdout, done.stdout
    assert "result: 4" in done.stdout, done.stdout


def test_an_observer_closing_the_client_is_refused_and_the_run_goes_on(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP.replace('case == "observer" and', 'case == "closing" and').replace(
        'self.vow.run("other/1", other)', "self.vow.close()"))
    done = python(app, f"sqlite:{tmp_path / 'vow.sqlite'}", "closing", timeout=60)
    assert done.returncode == 0, done.stderr
    # before the fix: the engine waited 5 s for itself, then its store was closed under it
    assert "observer: VowError Vow.close() was called on the engine's own thread" in done.stdout, done.stdout
    assert "result: 4" in done.stdout, done.stdout
    assert "closed" not in done.stderr, done.stderr


CYCLE = textwrap.dedent("""
    import sys
    from vow import Vow

    vow = Vow(store=sys.argv[1])

    def run_b(ctx):
        return vow.run("b/1", b)

    def run_a(ctx):
        return vow.run("a/1", a)  # a/1's leaf waits for b/1 already: b/1 can never finish

    @vow.register
    def a(ctx):
        return (yield ctx.run(run_b))

    @vow.register
    def b(ctx):
        return (yield ctx.run(run_a))

    try:
        print("result:", vow.run("a/1", a))
    except Exception as exc:
        print("failed:", type(exc).__name__, exc)
    vow.close()
""")


def test_runs_whose_leaves_wait_for_each_other_fail_at_once(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(CYCLE)
    done = python(app, f"sqlite:{tmp_path / 'vow.sqlite'}", timeout=60)  # before the fix: hung for ever
    assert done.returncode == 0, done.stderr
    assert "failed: PermanentError" in done.stdout and "can never end" in done.stdout, done.stdout
    assert "'b/1' -> 'a/1' -> 'b/1'" in done.stdout, done.stdout
