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
