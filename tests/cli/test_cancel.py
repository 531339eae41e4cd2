"""`vow cancel` of a run that `vow run` is following: the view and the summary say it was canceled.

The engine stops a root it learns was canceled in one of two ways: from the store's change feed (a
``settled`` event with state ``canceled``), or when its next commit is refused because the root is
no longer pending (a ``stopped`` event, and a "lost the lease" warning on the ``vow.engine`` log,
which cannot tell a cancel from another worker's takeover). Either way `vow run` must say
"canceled", never that another worker took the run.
"""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from vow import Context, LeafContext, Vow
from vow.cli.run import follow
from vow.events import EventKind
from vow.progress import PlainView, Progress
from vow.records import State
from vow.testing import wait_until

ORDER = str(Path(__file__).resolve().parents[2] / "examples" / "order-confirmed.yaml")


class Events:
    def __init__(self) -> None:
        self.kinds: list[tuple[str, str]] = []

    def on_event(self, event) -> None:
        if event.id == event.root:
            self.kinds.append((event.kind.value, event.state or ""))


def test_a_cancel_met_at_commit_is_said_as_a_cancel(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """The watcher never looks (poll_interval of an hour), so the engine meets the cancel when the
    running leaf's result is refused at commit: it reads the stored cancel and reports it."""
    url = f"sqlite:{tmp_path / 'vow.sqlite'}"
    running, release = threading.Event(), threading.Event()

    def quick(ctx: LeafContext) -> str:
        return "sent"

    def slow(ctx: LeafContext) -> str:
        running.set()
        release.wait(60)
        return "sent late"

    def fan_out(ctx: Context):
        handles = [(yield ctx.begin_run(quick).options(id=f"{ctx.id}.quick")),
                   (yield ctx.begin_run(slow).options(id=f"{ctx.id}.slow"))]
        return (yield ctx.all(handles))

    def cancel_while_slow_runs() -> None:
        assert running.wait(60), "the slow branch never started"
        with Vow(url) as other:
            wait_until(lambda: (quick_record := other.get("c/1.quick")) is not None and quick_record.settled,
                       timeout=60, message="the quick branch stored as done")
            other.cancel("c/1")
        release.set()

    progress, events = Progress("c/1"), Events()
    canceller = threading.Thread(target=cancel_while_slow_runs, daemon=True)
    with caplog.at_level(logging.INFO, logger="vow"), \
            Vow(url, poll_interval=3600, observers=[progress, events]) as vow:
        vow.register(fan_out)
        canceller.start()
        code = follow(vow, "c/1", lambda: vow.begin_run("c/1", fan_out), progress, as_json=False,
                      title="fan_out", existing=None)
        canceller.join(60)
        assert vow.get("c/1").state is State.CANCELED
    out = capsys.readouterr().out
    assert code == 1
    assert events.kinds[-1] == (EventKind.SETTLED.value, "canceled")  # the stored state, not a takeover
    assert "canceled: c/1 was canceled after " in out and "1 of 2 branches had finished ok" in out
    assert "another worker" not in out
    assert not [r for r in caplog.records if "lost the lease" in r.getMessage()]


def test_vow_cancel_of_a_running_pipeline_says_canceled(sandbox) -> None:
    """End to end: `vow run` in one process, `vow cancel` from another, while a branch runs."""
    pipeline = sandbox.write("slow.yaml", "version: 1\nname: slow\nid: slow/1\nfan_out:\n"
                                          "  - {channel: slack, to: '#a', body: hi, options: {latency: 30}}\n"
                                          "  - {channel: sms, to: '+14155550100', body: hi, options: {latency: 0}}\n")
    run = sandbox.popen("run", pipeline)
    try:
        def slack_started() -> bool:
            records = sandbox.records("slow/1")
            sms = records.get("slow/1.sms")
            return "slow/1.slack" in records and sms is not None and sms.settled

        wait_until(slack_started, timeout=60, message="the slack branch running and sms settled", proc=run)
        cancel = sandbox.run("cancel", "slow/1")
        assert cancel.returncode == 0, cancel.stderr
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 1, err
    assert "canceled: slow/1 was canceled after " in out
    assert "lost the lease" not in err and "another worker" not in out + err


def test_another_workers_takeover_is_said_as_a_takeover() -> None:
    """A stop while the run stays pending: the plain view says another worker goes on with it."""
    progress = Progress("t/1")
    out = io.StringIO()
    progress.announce("another worker has taken t/1 over (this process lost its lease); following it from the store")
    PlainView(progress, out).update()
    assert out.getvalue() == ("  another worker has taken t/1 over (this process lost its lease); following it from "
                              "the store\n")


BRANCH = ("big.inner", "big.inner.0", "big.inner.1", "big.inner.1.0", "picked-id", "big.inner.2")
"""The branch :func:`cancel_a_branch_of_a_big_run` cancels, and every promise under it."""


def _branch_in_a_big_run(now: float, side: int) -> list:
    """A pending run ``big``: ``big.inner`` (the branch canceled) and ``big.side`` with ``side`` leaves."""
    from vow.records import Kind, PromiseRecord

    def record(rid: str, parent: str | None, kind: Kind = Kind.STEP, state: State = State.PENDING,
               at: float = 0.0) -> PromiseRecord:
        return PromiseRecord(rid, state, kind, "big", func="" if kind is Kind.SLEEP else "f", args="[]",
                             value="1" if state is State.RESOLVED else None, parent=parent, created_at=now + at,
                             settled_at=now + at if state is not State.PENDING else None)

    records = [record("big", None, Kind.WORKFLOW), record("big.side", "big", Kind.WORKFLOW, at=1),
               record("big.inner", "big", Kind.WORKFLOW, at=2),
               record("big.inner.0", "big.inner", state=State.RESOLVED, at=3),
               record("big.inner.1", "big.inner", Kind.WORKFLOW, at=3),
               record("big.inner.1.0", "big.inner.1", at=4),
               record("picked-id", "big.inner", at=5),  # an id given with .options(id=): found by its parent
               record("big.inner.2", "big.inner", Kind.SLEEP, at=5)]
    records += [record(f"big.side.{n}", "big.side", state=State.RESOLVED if n % 2 else State.PENDING, at=6)
                for n in range(side)]
    return records


def cancel_a_branch_of_a_big_run(url: str, store_module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Store a run of 300 promises and more, `vow cancel` a branch of 6 in it, and check that the store
    (``store_module``, whose ``_record`` makes each record read) read that branch and no more, and
    that the branch's pending promises, and only those, were canceled."""
    import time

    from click.testing import CliRunner

    from vow.cli import cli
    from vow.records import Batch
    from vow.stores import open_store

    store = open_store(url)
    records = _branch_in_a_big_run(time.time(), side=300)
    try:
        store.apply(Batch(creates=records))
    finally:
        store.close()
    read: list[str] = []
    real = store_module._record
    with monkeypatch.context() as patched:
        patched.setattr(store_module, "_record", lambda row: read.append(row[0]) or real(row))
        canceled = CliRunner().invoke(cli, ["cancel", "big.inner", "--store", url])
    assert (canceled.exit_code, canceled.output) == (0, "big.inner: canceled\n")
    assert set(read) <= set(BRANCH), f"{len(read)} records read"
    # the branch once, the 5 settles as the store checks them, and the canceled promise before and after
    assert len(read) <= 6 + 5 + 2, read
    store = open_store(url)
    try:
        states = {r.id: r.state for r in store.tree("big")}
    finally:
        store.close()
    expected = {r.id: r.state for r in records}
    expected.update(dict.fromkeys(["big.inner", "big.inner.1", "big.inner.1.0", "picked-id", "big.inner.2"],
                                  State.CANCELED))
    assert states == expected


def test_vow_cancel_of_a_branch_reads_the_branch_not_its_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`vow cancel` of a promise under a run read the run's whole tree (100,000 promises for a branch
    of ten) to find what was under it; it reads the branch, and cancels the same promises."""
    import vow.stores.sqlite as sqlite_store

    cancel_a_branch_of_a_big_run(f"sqlite:{tmp_path / 'vow.sqlite'}", sqlite_store, monkeypatch)
