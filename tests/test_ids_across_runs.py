"""An explicit id that another run already uses fails the second run, and only it: the first run's
promise under that id is left as it was, and the first run goes on."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from vow import Context, LeafContext, Vow
from vow.records import State
from vow.testing import wait_until


@pytest.mark.parametrize("kind", ["promise", "leaf"])
def test_a_second_run_failing_on_a_taken_id_leaves_the_first_runs_promise_alone(tmp_path: Path, kind: str) -> None:
    release = threading.Event()

    def hold(ctx: LeafContext) -> str:
        release.wait(30)
        return "held"

    with Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}") as v:

        @v.register
        def waits(ctx: Context) -> Any:
            if kind == "promise":
                handle = yield ctx.promise("shared")
            else:
                handle = yield ctx.begin_run(hold).options(id="shared")
            return (yield handle)

        first = v.begin_run("first", waits)
        wait_until(lambda: v.get("shared") is not None, 10, "the first run's promise stored")
        second = v.begin_run("second", waits)
        with pytest.raises(Exception, match="already used by run 'first'"):
            second.result(10)
        shared = v.get("shared")
        assert shared is not None and shared.state is State.PENDING  # before the fix: canceled by the second run
        if kind == "promise":
            v.resolve("shared", "held")
        release.set()
        assert first.result(10) == "held"
