"""Canceling a run from another process (``vow cancel``) stops it: nothing new starts under it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support import vow_command
from vow import CanceledError, Context, LeafContext, State, Vow
from vow.testing import wait_until


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "vow.sqlite"


def test_a_run_canceled_from_another_process_starts_no_new_leaves(path: Path) -> None:
    started: list[float] = []

    def slow_step(ctx: LeafContext, i: int) -> int:
        started.append(time.time())
        time.sleep(0.05)
        return i

    with Vow(store=f"sqlite:{path}") as vow:
        @vow.register
        def steps(ctx: Context):
            total = 0
            for i in range(200):  # ~10 s uncanceled: the cancel surely lands mid-run, even on a loaded box
                total += yield ctx.run(slow_step, i)
            return total

        handle = vow.begin_run("cancel/1", steps)
        wait_until(lambda: len(started) >= 3, 60, "three steps started")
        cancel = vow_command("cancel", "cancel/1", "--store", f"sqlite:{path}")
        assert cancel.returncode == 0, cancel.stderr
        canceled_at = time.time()
        with pytest.raises(CanceledError):
            handle.result(timeout=30)
        late = [r for r in vow.store.tree("cancel/1") if r.created_at > canceled_at]
        assert late == [], f"{len(late)} promises were created under the canceled run"
        assert sum(1 for at in started if at > canceled_at) <= 1, "leaves kept starting after the cancel"
        assert all(r.state is State.CANCELED or r.settled_at < canceled_at for r in vow.store.tree("cancel/1"))
