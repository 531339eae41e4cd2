"""Workflow versioning: ``ctx.patched(name)`` answers the same way live and on every replay.

Each run here stops at an outside promise (a gate), its client is closed, and a new client on the
same SQLite file resumes it: the replay must make the same calls the live run made (or the run
stops with ``NonDeterminismError``), and no leaf already settled runs again (counted).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from vow import Context, Vow
from vow.testing import wait_until

calls: collections.Counter[str] = collections.Counter()
_lock = threading.Lock()


def step(ctx: Any, name: str) -> str:
    with _lock:
        calls[name] += 1
    return name


def loop(ctx: Context) -> Generator[Any, Any, list[str]]:
    """The change guarded inside a loop: the same patch name is asked for at every item."""
    done = []
    for i in range(3):
        if (yield ctx.patched("new-format")):
            done.append((yield ctx.run(step, f"new-{i}")))
        else:
            done.append((yield ctx.run(step, f"old-{i}")))
    gate = yield ctx.promise(id=f"{ctx.id}.gate")
    yield gate
    return done


def _stop_at_the_gate_and_resume(path: Path, fn: Any, run_id: str) -> Any:
    first = Vow(f"sqlite:{path}")
    first.register(fn)
    try:
        first.begin_run(run_id, fn)
        wait_until(lambda: first.get(f"{run_id}.gate") is not None, 30, "the run to reach its gate")
    finally:
        first.close()
    second = Vow(f"sqlite:{path}")
    second.register(fn)
    try:
        handle = second.resume(run_id)
        wait_until(lambda: second.get(f"{run_id}.gate") is not None, 30, "the gate")
        second.resolve(f"{run_id}.gate", "go")
        return handle.result(timeout=30)
    finally:
        second.close()


def test_a_patch_asked_for_in_a_loop_answers_the_same_on_a_replay(tmp_path: Path) -> None:
    calls.clear()
    result = _stop_at_the_gate_and_resume(tmp_path / "vow.sqlite", loop, "loop/1")
    assert result == ["new-0", "new-1", "new-2"]
    assert calls == {"new-0": 1, "new-1": 1, "new-2": 1}  # each leaf once: the replay took them from the store


def test_a_new_run_whose_body_was_retried_takes_the_new_path(tmp_path: Path) -> None:
    """A run that reaches ``ctx.patched`` for the first time takes the new path, even when its body
    was retried before: the retry's back-off timer, stored under the workflow, is no call of the old
    code (it had been taken for one, so the new run ran the old code)."""
    from vow import Constant, TransientError

    def flaky_body(ctx: Context) -> Generator[Any, Any, str]:
        yield ctx.run(step, "first")
        if ctx.attempt == 1:
            raise TransientError("the body failed once")
        return "new" if (yield ctx.patched("new-format")) else "old"

    with Vow(f"sqlite:{tmp_path / 'vow.sqlite'}") as vow:
        vow.register(flaky_body, retry=Constant(delay=0.01))
        assert vow.run("flaky/1", flaky_body) == "new"
        assert vow.get("flaky/1.patched.new-format") is not None  # remembered for its replays


def test_options_on_a_patch_marker_is_refused_where_it_is_written() -> None:
    """``.options(...)`` on ``ctx.patched(...)`` had made a call of no function, which failed the run
    later with "ctx.run/begin_run needs a function, got None", naming neither patch nor options."""
    ctx = Context("wf/1", "wf/1", None)
    with pytest.raises(TypeError, match=r"ctx\.patched\(\) takes no \.options"):
        ctx.patched("new-format").options(id="other")
