"""Fork and retry: new runs that reuse a stored run's results and run the rest with the current code.

Every leaf here counts its calls, so "reused, not run again" is counted, not assumed. The runs are
real runs on a SQLite file; the CLI on pipelines is at the end (with the simulated channels'
ledger as the sink).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from vow import Context, Vow
from vow.errors import ConfigError, PermanentError, PromiseTimeoutError
from vow.forking import COPIED_FROM, FORK_OF, fork, next_id, retry
from vow.records import State

calls: collections.Counter[str] = collections.Counter()
_lock = threading.Lock()
broken: set[str] = set()  # leaves that fail until the "fix"


def step(ctx: Any, name: str) -> str:
    with _lock:
        calls[name] += 1
    if name in broken:
        raise PermanentError(f"{name} is broken")
    return f"{name} done"


def report(ctx: Any, outcomes: list[bool]) -> str:
    with _lock:
        calls["report"] += 1
    return f"{sum(outcomes)} of {len(outcomes)} ok"


def sequence(ctx: Context) -> Generator[Any, Any, list[str]]:
    done = []
    for name in ("a", "b", "c", "d"):
        done.append((yield ctx.run(step, name)))  # ids {run}.1 .. {run}.4
    return done


def fan(ctx: Context) -> Generator[Any, Any, str]:
    handles = []
    for name in ("email", "sms", "slack", "push"):
        handles.append((yield ctx.begin_run(step, name).options(id=f"{ctx.id}.{name}")))
    outcomes = yield ctx.all_settled(handles)
    summary = yield ctx.run(report, [o.ok for o in outcomes]).options(id=f"{ctx.id}.report")
    if not all(o.ok for o in outcomes):
        raise RuntimeError(f"not every channel delivered: {summary}")
    return summary


def inner(ctx: Context) -> Generator[Any, Any, str]:
    first = yield ctx.run(step, "inner-1")
    second = yield ctx.run(step, "inner-2")
    return f"{first}, {second}"


def nested(ctx: Context) -> Generator[Any, Any, str]:
    head = yield ctx.run(step, "head")
    body = yield ctx.run(inner)
    return f"{head}; {body}"


def foreign(ctx: Context) -> Generator[Any, Any, str]:
    return (yield ctx.run(step, "x").options(id=f"global-{ctx.id.replace('/', '-')}"))


def waits(ctx: Context) -> Generator[Any, Any, Any]:
    yield ctx.run(step, "a")
    handle = yield ctx.promise()
    return (yield handle)  # settled by nobody: the run's timeout ends it


@pytest.fixture
def vow(tmp_path: Path) -> Any:
    calls.clear()
    broken.clear()
    client = Vow(f"sqlite:{tmp_path / 'vow.sqlite'}")
    for fn in (sequence, fan, inner, nested, foreign, waits):
        client.register(fn)
    yield client
    client.close()


def test_fork_reuses_the_results_before_the_step_and_runs_the_rest(vow: Any) -> None:
    assert vow.run("seq/1", sequence) == ["a done", "b done", "c done", "d done"]
    copy = fork(vow.store, "seq/1", "seq/1.3")
    assert copy.run_id == "seq/1/fork-1" and set(copy.copied) == {"seq/1.1", "seq/1.2"}
    assert copy.rerun == ("seq/1.3", "seq/1.4")
    assert vow.resume(copy.run_id).result() == ["a done", "b done", "c done", "d done"]
    assert calls == {"a": 1, "b": 1, "c": 2, "d": 2}
    new = {r.id: r for r in vow.store.tree(copy.run_id)}
    assert new["seq/1/fork-1.1"].tags[COPIED_FROM] == "seq/1.1"
    assert new["seq/1/fork-1"].tags[FORK_OF] == "seq/1" and "seq/1/fork-1.3" in new
    assert COPIED_FROM not in new["seq/1/fork-1.3"].tags
    assert vow.get("seq/1").state is State.RESOLVED  # the original is left as it was


def test_fork_after_fixing_a_bug_carries_on_where_the_run_failed(vow: Any) -> None:
    broken.add("c")
    with pytest.raises(PermanentError):
        vow.run("seq/2", sequence)
    broken.clear()  # the fix
    copy = fork(vow.store, "seq/2", "seq/2.3", new_id="seq/2-fixed")
    assert vow.resume(copy.run_id).result() == ["a done", "b done", "c done", "d done"]
    assert calls == {"a": 1, "b": 1, "c": 2, "d": 1}
    assert next_id(vow.store, "seq/2", "fork") == "seq/2/fork-1"  # --id was given: the default is still free


def test_fork_from_a_step_inside_a_child_workflow_runs_the_child_again_from_there(vow: Any) -> None:
    assert vow.run("n/1", nested) == "head done; inner-1 done, inner-2 done"
    copy = fork(vow.store, "n/1", "n/1.2.2")
    assert set(copy.copied) == {"n/1.1", "n/1.2.1"}  # not the child workflow n/1.2 that holds the step
    assert vow.resume(copy.run_id).result() == "head done; inner-1 done, inner-2 done"
    assert calls == {"head": 1, "inner-1": 1, "inner-2": 2}


def test_fork_from_the_run_itself_reuses_nothing(vow: Any) -> None:
    vow.run("seq/3", sequence)
    copy = fork(vow.store, "seq/3", "seq/3")
    assert copy.copied == ()
    vow.resume(copy.run_id).result()
    assert calls == {"a": 2, "b": 2, "c": 2, "d": 2}


def test_retry_runs_only_the_failed_branches_and_what_came_after_them(vow: Any) -> None:
    broken.add("sms")
    with pytest.raises(RuntimeError, match="3 of 4 ok"):
        vow.run("fan/1", fan)
    broken.clear()
    copy = retry(vow.store, "fan/1")
    assert copy.run_id == "fan/1/retry-1"
    assert set(copy.copied) == {"fan/1.email", "fan/1.slack", "fan/1.push"}
    assert set(copy.rerun) == {"fan/1.sms", "fan/1.report"}  # the summary was made from the failure
    assert vow.resume(copy.run_id).result() == "4 of 4 ok"
    assert calls == {"email": 1, "slack": 1, "push": 1, "sms": 2, "report": 2}


def test_the_new_run_gets_the_originals_timeout_as_a_duration_not_its_deadline(vow: Any) -> None:
    with pytest.raises(PromiseTimeoutError):
        vow.run("slow/1", waits, timeout=0.5)
    copy = retry(vow.store, "slow/1")
    new = vow.get(copy.run_id)
    assert new.timeout - new.created_at == pytest.approx(0.5)  # the original's deadline has passed
    with pytest.raises(PromiseTimeoutError):
        vow.resume(copy.run_id).result()
    done = vow.get(copy.run_id)
    assert done.state is State.TIMEDOUT and done.settled_at >= new.timeout
    assert calls["a"] == 1  # reused, not run again

    vow.run("seq/1", sequence)  # no timeout: none for its fork either
    assert vow.get(fork(vow.store, "seq/1", "seq/1.2").run_id).timeout is None


def test_retry_of_a_retry_counts_on(vow: Any) -> None:
    broken.add("sms")
    with pytest.raises(RuntimeError):
        vow.run("fan/2", fan)
    first = retry(vow.store, "fan/2")
    with pytest.raises(RuntimeError):
        vow.resume(first.run_id).result()
    assert retry(vow.store, first.run_id).run_id == "fan/2/retry-2"
    assert calls["email"] == 1  # reused twice, sent once


def test_a_fork_of_a_run_whose_id_ends_in_a_line_break_is_not_named_as_another_runs_fork(vow: Any) -> None:
    """A run id from Python may end in a line break. The suffix pattern's ``$`` matched before it, so the
    fork of "seq/fork-1\\n" was named "seq/fork-2", as if it were the second fork of "seq". Its own name
    holds the line break, which no run id made here may: refused, and a given id works."""
    vow.run("seq/fork-1\n", sequence)
    with pytest.raises(ConfigError, match=r"'seq/fork-1\\n/fork-1' is not a usable run id"):
        fork(vow.store, "seq/fork-1\n", "seq/fork-1\n")
    assert vow.get("seq/fork-2") is None
    assert fork(vow.store, "seq/fork-1\n", "seq/fork-1\n", new_id="seq/again").run_id == "seq/again"


def test_a_failed_leaf_retried_by_its_policy_leaves_no_timer_behind_in_the_retry(vow: Any) -> None:
    from vow.engine import BACKOFF_FUNC

    def flaky_fan(ctx: Context) -> Generator[Any, Any, str]:
        from vow.retry import Constant

        value = yield ctx.run(step, "flaky").options(id=f"{ctx.id}.flaky", retry=Constant(delay=0, max_attempts=3))
        return str(value)

    vow.register(flaky_fan)
    broken.add("flaky")
    with pytest.raises(PermanentError):
        vow.run("ff/1", flaky_fan)
    broken.clear()
    copy = retry(vow.store, "ff/1")
    assert not any(r.func == BACKOFF_FUNC for r in vow.store.tree(copy.run_id))
    assert vow.resume(copy.run_id).result() == "flaky done"
    assert vow.get(f"{copy.run_id}.flaky").attempt == 1


@pytest.mark.parametrize("what, problem", [
    ("retry pending", "is still pending"),
    ("retry resolved", "succeeded, so there is nothing to retry"),
    ("fork unknown step", "is not a promise of run"),
    ("fork a step as the run", "is a promise of run"),
    ("fork unknown run", "no run with id"),
    ("fork to an existing id", "exists already"),
    ("fork under the old prefix", "must not be"),
    ("fork to an id with a control character", "is not a usable run id"),  # only spaces were refused
])
def test_what_fork_and_retry_refuse(vow: Any, what: str, problem: str) -> None:
    vow.run("seq/9", sequence)
    vow.submit("seq/pending", sequence)
    with pytest.raises(ConfigError, match=problem):
        if what == "retry pending":
            retry(vow.store, "seq/pending")
        elif what == "retry resolved":
            retry(vow.store, "seq/9")
        elif what == "fork unknown step":
            fork(vow.store, "seq/9", "seq/9.99")
        elif what == "fork a step as the run":
            fork(vow.store, "seq/9.1", "seq/9.1")
        elif what == "fork unknown run":
            fork(vow.store, "nope", "nope.1")
        elif what == "fork to an existing id":
            fork(vow.store, "seq/9", "seq/9.2", new_id="seq/pending")
        elif what == "fork to an id with a control character":
            fork(vow.store, "seq/9", "seq/9.2", new_id="seq/\x1b[2J")
        else:
            fork(vow.store, "seq/9", "seq/9.2", new_id="seq/9.copy")


def test_a_run_with_ids_outside_its_own_is_refused_naming_them(vow: Any) -> None:
    vow.run("f/1", foreign)
    with pytest.raises(ConfigError, match=r"ids do not start with 'f/1\.' \('global-f-1'\)"):
        fork(vow.store, "f/1", "f/1")


# -- a wall clock that steps back (NTP, a VM restored) -------------------------------------------

def shift_clock(ctx: Any, seconds: float) -> str:
    """A leaf that steps the machine's clock (every reader's ``time.time``) by ``seconds``."""
    _clock_offset[0] += seconds
    return "shifted"


_clock_offset = [0.0]


@pytest.fixture
def stepping_vow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A client on a machine whose clock a leaf (``shift_clock``) can step, as every reader sees it."""
    import time

    calls.clear()
    broken.clear()
    _clock_offset[0] = 0.0
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + _clock_offset[0])
    clients = []

    def open_client() -> Any:
        client = Vow(f"sqlite:{tmp_path / 'vow.sqlite'}")
        for fn in (sequence, stepped_sequence, compensating):
            client.register(fn)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


def stepped_sequence(ctx: Context) -> Generator[Any, Any, list[str]]:
    done = [(yield ctx.run(step, "a")), (yield ctx.run(step, "b"))]  # {run}.1, {run}.2
    yield ctx.run(shift_clock, -3600.0)  # {run}.3: the clock goes back an hour
    done += [(yield ctx.run(step, "c")), (yield ctx.run(step, "d"))]  # {run}.4, {run}.5
    return done


def compensating(ctx: Context) -> Generator[Any, Any, str]:
    try:
        yield ctx.run(step, "x")  # {run}.1: broken, the run's first failure
    except PermanentError:
        pass
    yield ctx.run(shift_clock, -3600.0)  # {run}.2
    after = yield ctx.run(step, "after")  # {run}.3: made after the failure, on a clock an hour behind
    if "x" in broken:
        raise RuntimeError("x failed")
    return str(after)


def test_fork_after_the_clock_stepped_back_reuses_what_was_stored_before_the_step(stepping_vow: Any) -> None:
    """Fork goes by the order a run's promises were made, even where the wall clock went back
    meanwhile: the steps made after the clock stepped back have the earliest times on the clock, and
    were taken as made before the chosen step (copied, so the fork reused their results)."""
    vow = stepping_vow()
    assert vow.run("seq/1", stepped_sequence) == ["a done", "b done", "c done", "d done"]
    copy = fork(vow.store, "seq/1", "seq/1.4")
    assert set(copy.copied) == {"seq/1.1", "seq/1.2", "seq/1.3"}
    times = [r.created_at for r in vow.store.tree("seq/1")]
    assert times == sorted(times)  # the store lists them as made
    vow.resume(copy.run_id).result()
    assert calls == {"a": 1, "b": 1, "c": 2, "d": 2}


def test_a_run_resumed_on_a_clock_behind_its_stored_times_keeps_its_order(stepping_vow: Any) -> None:
    """The clock went back between two processes (here: two clients, one after the other): the
    resumed run's new promises still come after those stored before, so a fork of it reuses the right
    ones."""
    first = stepping_vow()
    first.run("seq/2", sequence)
    copy = fork(first.store, "seq/2", "seq/2.3")  # stored pending: .1 and .2 copied
    first.close()
    _clock_offset[0] = -3600.0
    second = stepping_vow()
    second.resume(copy.run_id).result()  # makes .3 and .4 an hour "earlier" on the clock
    again = fork(second.store, copy.run_id, f"{copy.run_id}.3")
    assert set(again.copied) == {f"{copy.run_id}.1", f"{copy.run_id}.2"}


def test_retry_after_the_clock_stepped_back_runs_again_what_came_after_the_failure(stepping_vow: Any) -> None:
    """A promise made after the run's first failure is not reused by a retry (its arguments may
    depend on the failure), even when the clock went back between the two and its time is earlier."""
    vow = stepping_vow()
    broken.add("x")
    with pytest.raises(RuntimeError, match="x failed"):
        vow.run("comp/1", compensating)
    broken.clear()
    copy = retry(vow.store, "comp/1")
    assert copy.copied == ()
    assert vow.resume(copy.run_id).result() == "after done"
    assert calls == {"x": 2, "after": 2}


# -- the command line, on pipelines ------------------------------------------------------------

PIPELINE = """\
version: 1
name: flaky
id: "flaky/{{ input.n }}"
input: {n: 1}
fan_out:
  - channel: email
    to: a@example.com
    subject: hi
    body: hello
    options: {latency: 0}
  - channel: slack
    to: "#x"
    body: hello
    options: {latency: 0}
    faults: {fail_attempts: [1], error: permanent}
"""


def test_vow_retry_and_fork_on_a_pipeline(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    from vow.simulation import Ledger

    env = {**os.environ, "VOW_STORE": f"sqlite:{tmp_path / 'vow.sqlite'}", "VOW_SIM_DIR": str(tmp_path / "sim")}

    def vow_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vow", *args], cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=120)

    (tmp_path / "flaky.yaml").write_text(PIPELINE)
    assert vow_cli("run", "flaky.yaml").returncode == 1
    retried = vow_cli("retry", "flaky/1", "--json")
    # The retried slack branch fails again (its faults are part of the pipeline it copied) ...
    assert retried.returncode == 1, retried.stderr
    document = json.loads(retried.stdout)
    assert document["run_id"] == "flaky/1/retry-1" and document["state"] == "rejected"
    # ... but the email that was delivered is reused, not sent again.
    emails = Ledger(tmp_path / "sim" / "ledger.sqlite").deliveries("email")
    assert len(emails) == 1 and emails[0].duplicates == 0
    text = vow_cli("retry", "flaky/1/retry-1")
    assert "flaky/1/retry-2: reuses 2 stored results of flaky/1/retry-1; runs again: flaky/1/retry-1.slack" \
        in text.stdout
    detached = vow_cli("fork", "flaky/1", "--from", "flaky/1.slack", "--id", "flaky/1-fixed", "--detach")
    assert detached.returncode == 0 and detached.stdout.strip() == "flaky/1-fixed"
    listed = vow_cli("ls", "--state", "pending")
    assert "flaky/1-fixed" in listed.stdout  # left for `vow worker`
    refused = vow_cli("retry", "flaky/1-fixed")
    assert refused.returncode == 2 and "is still pending" in refused.stderr


def test_vow_fork_from_the_run_itself_runs_it_here(tmp_path: Path) -> None:
    """A fork from the run itself copies no branch: its header said it "was stored for a worker
    (--detach) and not started yet", though nothing was detached and it runs here."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "VOW_STORE": f"sqlite:{tmp_path / 'vow.sqlite'}", "VOW_SIM_DIR": str(tmp_path / "sim")}
    order = str(Path(__file__).resolve().parents[1] / "examples" / "order-confirmed.yaml")

    def vow_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vow", *args], cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=120)

    ran = vow_cli("run", order, "--id", "order/1")
    assert ran.returncode == 0, ran.stderr
    forked = vow_cli("fork", "order/1", "--from", "order/1")
    assert forked.returncode == 0, forked.stderr
    assert forked.stdout.startswith("order/1/fork-1: reuses 0 stored results of order/1; runs again: "), forked.stdout
    assert "--detach" not in forked.stdout and "not started yet" not in forked.stdout, forked.stdout
    assert "done: order/1/fork-1 succeeded" in forked.stdout, forked.stdout
