"""Bad input everywhere: each case gets a clear error, and nothing already stored is lost or altered.

"Nothing altered" is checked on the ``promises`` table, row for row (or on the file's bytes when
the file is refused): leases may change, since taking and giving back a lease is how a client
looks at a run.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.durability.support import app, dump_promises, log_lines
from tests.support import finish, kill
from vow import (
    AlreadySettledError,
    ArgumentMismatchError,
    Constant,
    Context,
    EncodeError,
    LeafContext,
    NonDeterminismError,
    PromiseNotFoundError,
    State,
    TransientError,
    Vow,
    VowError,
)
from vow.errors import StoreError
from vow.simulation import Ledger
from vow.stores.base import FORMAT_VERSION
from vow.stores.sqlite import SQLiteStore, _record
from vow.testing import wait_until


def outcome_of(vow: Vow, handle: Any, timeout: float = 30) -> Any:
    """``handle.result()``, but fail at once if the client's engine thread is gone (the caller would
    otherwise wait forever)."""
    def settled_or_dead() -> bool:
        thread = vow._engine._thread
        return handle.done() or thread is None or not thread.is_alive()

    wait_until(settled_or_dead, timeout=timeout, message="the run's outcome")
    assert handle.done(), "the vow engine thread died: this caller, and every later one, would wait forever"
    return handle.result(0)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Unstorable:
    """Not JSON, not attrs: cannot be stored."""


def greet(ctx: LeafContext, name: str) -> str:
    return f"hello {name}"


def give_back(ctx: LeafContext, value: Any) -> Any:
    return value


def unstorable_result(ctx: LeafContext) -> Any:
    RUNS.append(ctx.id)
    return Unstorable()


RUNS: list[str] = []


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "vow.sqlite"


@pytest.fixture
def vow(path: Path):
    client = Vow(store=f"sqlite:{path}")
    yield client
    client.close()


def two_done_workflows(vow: Vow) -> None:
    """Something worth keeping in the store before the bad input arrives."""
    @vow.register
    def hello(ctx: Context, name: str):
        return (yield ctx.run(greet, name))

    assert vow.run("keep/1", hello, "ada") == "hello ada"
    assert vow.run("keep/2", hello, "grace") == "hello grace"


# ------------------------------------------------------------------------------ values that cannot be stored

def test_unstorable_workflow_arguments_are_refused_before_anything_is_stored(vow: Vow, path: Path) -> None:
    two_done_workflows(vow)
    before = dump_promises(path)

    @vow.register
    def takes(ctx: Context, thing: Any):
        return (yield ctx.run(give_back, 1))

    for start in (vow.run, vow.begin_run, vow.submit):
        with pytest.raises(EncodeError, match=r"arguments of workflow takes \(bad/1\) cannot be stored.*Unstorable"):
            start("bad/1", takes, Unstorable())
    assert vow.get("bad/1") is None
    assert dump_promises(path) == before


def test_unstorable_leaf_arguments_fail_that_call_only(vow: Vow, path: Path) -> None:
    @vow.register
    def wf(ctx: Context):
        first = yield ctx.run(greet, "ada")
        try:
            yield ctx.run(give_back, Unstorable())
        except EncodeError as exc:
            caught = str(exc)
        return [first, caught]

    first, caught = vow.run("args/1", wf)
    assert first == "hello ada"
    assert "give_back" in caught and "args/1.2" in caught and "cannot be stored" in caught
    assert [r.id for r in vow.store.tree("args/1")] == ["args/1", "args/1.1"]  # the bad call stored nothing


BAD_CALLS: dict[str, tuple[Any, type[Exception], str]] = {
    # a nan passes every comparison's False: the sleep or deadline it made never came (the run hung)
    "sleep nan": (lambda ctx: ctx.sleep(math.nan), ValueError, "ctx.sleep() takes seconds >= 0, got nan"),
    "sleep text": (lambda ctx: ctx.sleep("5"), TypeError, "ctx.sleep() takes seconds (a number >= 0), got '5'"),
    "timeout nan": (lambda ctx: ctx.run(greet, "x").options(timeout=math.nan), ValueError,
                    ".options(timeout=...) takes seconds >= 0, got nan"),
    "timeout negative": (lambda ctx: ctx.run(greet, "x").options(timeout=-1), ValueError,
                         ".options(timeout=...) takes seconds >= 0, got -1"),
    "promise timeout nan": (lambda ctx: ctx.promise(timeout=math.nan), ValueError,
                            "ctx.promise(timeout=...) takes seconds >= 0, got nan"),
    # an empty id had been dropped for a numbered one without a word
    "empty id": (lambda ctx: ctx.run(greet, "x").options(id=""), ValueError, ".options(id=...) takes a non-empty id"),
    "empty key": (lambda ctx: ctx.run(greet, "x").options(idempotency_key=""), ValueError,
                  ".options(idempotency_key=...) takes a non-empty key"),
    "non-retryable not a class": (lambda ctx: ctx.run(greet, "x").options(non_retryable=[42]), TypeError,
                                  ".options(non_retryable=...) takes exception classes"),
    # PostgreSQL's text holds no NUL: the run's commit failed there, and the run stopped for good
    "NUL in id": (lambda ctx: ctx.run(greet, "x").options(id="a\x00b"), EncodeError, "the id, idempotency key or"),
    "NUL in key": (lambda ctx: ctx.run(greet, "x").options(idempotency_key="k\x00"), EncodeError,
                   "the id, idempotency key or"),
    # over PostgreSQL's index entry limit: the commit failed there, and the run stopped for good
    "id too long": (lambda ctx: ctx.run(greet, "x").options(id="é" * 513), EncodeError,
                    "the id of tests.durability.test_bad_input.greet is 1026 bytes long"),
    "NUL in tag": (lambda ctx: ctx.run(greet, "x").options(tags={"t": "\x00"}), EncodeError,
                   "the id, idempotency key or"),
    "empty promise id": (lambda ctx: ctx.promise(id=""), ValueError, "ctx.promise(id=...) takes a non-empty id"),
    # not a policy: it had been accepted, and failed only when the call failed
    "retry text": (lambda ctx: ctx.run(greet, "x").options(retry="fast"), TypeError,
                   ".options(retry=...): expected a retry policy (vow.Exponential(...)"),
}


@pytest.mark.parametrize("bad", sorted(BAD_CALLS))
def test_a_bad_call_option_fails_at_the_call_and_stores_nothing_of_it(vow: Vow, bad: str) -> None:
    make, error, message = BAD_CALLS[bad]

    @vow.register
    def wf(ctx: Context):
        first = yield ctx.run(greet, "ada")
        try:
            yield make(ctx)
        except error as exc:
            return [first, str(exc)]
        return [first, "accepted"]

    first, caught = outcome_of(vow, vow.begin_run("opts/1", wf), timeout=10)
    assert first == "hello ada"
    assert caught.startswith(message)
    assert [r.id for r in vow.store.tree("opts/1")] == ["opts/1", "opts/1.1"]


BAD_CLIENT_OPTIONS: dict[str, tuple[dict[str, Any], str]] = {
    "retry": ({"retry": "fast"}, r"Vow\(retry=\.\.\.\): expected a retry policy"),
    # nan: a NOT NULL error from the store at the first run; inf: the lease thread's wait overflowed
    "lease_ttl nan": ({"lease_ttl": math.nan}, "lease_ttl must be a finite number of seconds > 0, got nan"),
    "lease_ttl inf": ({"lease_ttl": math.inf}, "lease_ttl must be a finite number of seconds > 0, got inf"),
    "lease_ttl text": ({"lease_ttl": "15"}, "lease_ttl must be a finite number of seconds > 0, got '15'"),
    "poll_interval 0": ({"poll_interval": 0}, "poll_interval must be a finite number of seconds > 0, got 0"),
    "poll_interval nan": ({"poll_interval": math.nan}, "poll_interval must be a finite number"),
    # nan compared False with every count: no limit at all
    "max_concurrency nan": ({"max_concurrency": math.nan}, "max_concurrency must be a whole number >= 1"),
    "max_recoveries nan": ({"max_recoveries": math.nan}, "max_recoveries must be a whole number >= 0"),
}


@pytest.mark.parametrize("bad", sorted(BAD_CLIENT_OPTIONS))
def test_a_bad_client_option_is_refused_before_the_store_is_opened(path: Path, bad: str) -> None:
    options, message = BAD_CLIENT_OPTIONS[bad]
    with pytest.raises(VowError, match=message):
        Vow(store=f"sqlite:{path}", **options)
    assert not path.exists()


@pytest.mark.parametrize("bad", ["register retry", "run timeout", "run id NUL", "run id too long", "worker poll",
                                 "worker max_running"])
def test_a_bad_option_of_a_client_call_is_a_config_error_naming_it(path: Path, bad: str) -> None:
    def wf(ctx: Context):
        return (yield ctx.run(greet, "ada"))

    with Vow(store=f"sqlite:{path}") as vow:
        if bad == "register retry":
            with pytest.raises(VowError, match=r"register\(retry=\.\.\.\): expected a retry policy .* got 3"):
                vow.register(wf, retry=3)
            return
        vow.register(wf)
        if bad == "run timeout":
            with pytest.raises(VowError, match="a run's timeout must be a number of seconds > 0, got nan"):
                vow.run("t/1", wf, timeout=math.nan)
        elif bad == "run id NUL":
            with pytest.raises(EncodeError, match="holds a NUL character"):
                vow.run("t\x001", wf)
        elif bad == "run id too long":
            with pytest.raises(EncodeError, match="is 1025 bytes long, and an id is at most 1024 bytes"):
                vow.run("r" * 1025, wf)
        else:
            stopped = threading.Event()
            stopped.set()  # a worker that took the option would return at once
            if bad == "worker poll":
                with pytest.raises(VowError, match="poll_interval must be a finite number of seconds > 0, got -1"):
                    vow.worker(stop=stopped, poll_interval=-1)
            else:
                with pytest.raises(VowError, match="max_running must be a whole number >= 1, got 0"):
                    vow.worker(stop=stopped, max_running=0)
        assert [r.id for r in vow.store.search()] == []


def test_an_unstorable_leaf_result_fails_the_leaf_once_without_retries(vow: Vow, path: Path) -> None:
    RUNS.clear()

    @vow.register
    def wf(ctx: Context):
        greeting = yield ctx.run(greet, "ada")
        yield ctx.run(unstorable_result)
        return greeting

    with pytest.raises(EncodeError, match=r"the result of .*unstorable_result \(result/1\.2\) cannot be stored"):
        vow.run("result/1", wf)
    assert RUNS == ["result/1.2"]  # an encoding error is not retried: it would fail the same way
    assert vow.get("result/1.1").value == '"hello ada"'
    assert vow.get("result/1.2").state is State.REJECTED
    rows = dump_promises(path)
    with pytest.raises(EncodeError):  # running it again gives the stored outcome and changes nothing
        vow.run("result/1", wf)
    assert dump_promises(path) == rows and RUNS == ["result/1.2"]


def test_an_unstorable_workflow_result_rejects_the_workflow_and_keeps_its_steps(vow: Vow) -> None:
    @vow.register
    def wf(ctx: Context):
        yield ctx.run(greet, "ada")
        return Unstorable()

    with pytest.raises(EncodeError, match=r"the result of workflow wf \(wfresult/1\) cannot be stored"):
        vow.run("wfresult/1", wf)
    assert vow.get("wfresult/1").state is State.REJECTED
    assert vow.get("wfresult/1.1").value == '"hello ada"'


def test_an_unstorable_value_for_an_outside_promise_leaves_it_pending(vow: Vow) -> None:
    @vow.register
    def wf(ctx: Context):
        return (yield (yield ctx.promise(id="approve/1.gate")))

    handle = vow.begin_run("approve/1", wf)
    wait_until(lambda: vow.get("approve/1.gate") is not None)
    with pytest.raises(EncodeError, match=r"approve/1\.gate"):
        vow.resolve("approve/1.gate", Unstorable())
    assert vow.get("approve/1.gate").state is State.PENDING
    vow.resolve("approve/1.gate", "yes")
    assert handle.result(30) == "yes"


def fails_once(ctx: LeafContext) -> str:
    if ctx.attempt == 1:
        raise TransientError("come back in three centuries")
    return "back"


# A Retry-After of inf or 1e10 s fails its call (longer than vow.retry.MAX_RETRY_AFTER); a policy's
# own back-off may still be that long.
@pytest.mark.parametrize("far", ["sleep inf", "sleep 1e10", "backoff 1e10"])
def test_a_timer_too_far_off_for_a_thread_to_wait_leaves_the_other_runs_going(vow: Vow, far: str) -> None:
    # A thread waits at most threading.TIMEOUT_MAX (about 292 years) in one go: a sleep or back-off
    # longer than that must stay pending, not stop the engine every run of the client depends on.
    what, _, seconds = far.partition(" ")

    @vow.register
    def waits(ctx: Context):
        if what == "sleep":
            return (yield ctx.sleep(float(seconds)))
        return (yield ctx.run(fails_once).options(retry=Constant(delay=float(seconds))))

    @vow.register
    def hello(ctx: Context, name: str):
        return (yield ctx.run(greet, name))

    far_off = vow.begin_run("far/1", waits)
    timer = "far/1.1" if what == "sleep" else "far/1.1.backoff.2"
    wait_until(lambda: vow.get(timer) is not None, message=f"{timer} stored")
    assert outcome_of(vow, vow.begin_run("near/1", hello, "ada")) == "hello ada"
    assert not far_off.done() and vow.get(timer).state is State.PENDING


def echo(ctx: LeafContext, text: str) -> str:
    return text


def test_a_resumed_workflow_sees_the_same_arguments_as_its_first_run(path: Path) -> None:
    gate = threading.Event()
    order = {1: "widget", 2: (3, 4)}  # JSON turns these keys into strings and the tuple into a list

    def wait_for_gate(ctx: LeafContext) -> None:
        gate.wait(30)

    def wf(ctx: Context, order: dict):
        first_seen = yield ctx.run(echo, repr(order))
        yield ctx.run(wait_for_gate)
        return [first_seen, repr(order)]

    first = Vow(store=f"sqlite:{path}")
    first.register(wf)
    first.begin_run("args/9", wf, order)
    wait_until(lambda: first.get("args/9.2") is not None)
    first.close()  # stops with the run pending, as after a crash
    gate.set()
    with Vow(store="memory:") as clean:
        crash_free = clean.run("args/9", wf, order)
    with Vow(store=f"sqlite:{path}") as second:
        second.register(wf)
        assert second.resume("args/9").result(timeout=30) == crash_free


# ------------------------------------------------------------------------------ damaged and foreign files

def test_a_truncated_store_is_refused_and_left_as_it_is(path: Path) -> None:
    with Vow(store=f"sqlite:{path}") as vow:
        two_done_workflows(vow)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    before = digest(path)
    with pytest.raises(StoreError, match=str(path)):
        with Vow(store=f"sqlite:{path}") as vow:
            vow.run("keep/1", "hello", "ada")
    assert digest(path) == before


def test_a_store_from_a_newer_vow_is_refused_and_left_as_it_is(path: Path) -> None:
    with Vow(store=f"sqlite:{path}") as vow:
        two_done_workflows(vow)
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {FORMAT_VERSION + 1}")
    con.close()
    before = digest(path)
    with pytest.raises(StoreError, match=rf"{path}.*newer vow.*format {FORMAT_VERSION + 1}"):
        Vow(store=f"sqlite:{path}")
    assert digest(path) == before


def test_damage_found_during_a_run_is_a_store_error_for_that_run(path: Path) -> None:
    with Vow(store=f"sqlite:{path}") as vow:
        two_done_workflows(vow)
    con = sqlite3.connect(path)
    [(index_page,)] = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_promises_1'")
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    data = bytearray(path.read_bytes())
    start = (index_page - 1) * page_size
    data[start:start + page_size] = b"\xab" * page_size  # the id index: every lookup by id hits it
    path.write_bytes(bytes(data))
    before = digest(path)
    try:
        vow = Vow(store=f"sqlite:{path}")
    except StoreError as exc:  # found at open: as good
        assert str(path) in str(exc)
    else:
        try:
            @vow.register
            def hello(ctx: Context, name: str):
                return (yield ctx.run(greet, name))

            with pytest.raises(StoreError, match=rf"{path}.*damaged"):
                outcome_of(vow, vow.begin_run("keep/1", hello, "ada"))
        finally:
            vow.close()
    assert digest(path) == before


def test_a_store_that_stays_locked_fails_that_run_and_the_client_keeps_working(path: Path) -> None:
    vow = Vow(store=f"sqlite:{path}?busy_timeout=0.3")
    try:
        two_done_workflows(vow)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock longer than busy_timeout
        try:
            with pytest.raises(StoreError, match="busy_timeout"):
                outcome_of(vow, vow.begin_run("locked/1", "hello", "lin"))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert outcome_of(vow, vow.begin_run("locked/2", "hello", "lin")) == "hello lin"
    finally:
        vow.close()


# ------------------------------------------------------------------------------ changed code

def charge(ctx: LeafContext) -> str:
    return "charged"


def refund(ctx: LeafContext) -> str:
    return "refunded"


def test_a_workflow_changed_before_resume_is_refused_naming_both_functions(path: Path) -> None:
    gate = threading.Event()

    def wait_for_gate(ctx: LeafContext) -> str:
        gate.wait(30)
        return "through"

    first = Vow(store=f"sqlite:{path}")

    @first.register(name="order")
    def v1(ctx: Context):
        yield ctx.run(charge)
        yield ctx.run(wait_for_gate)
        return "done"

    first.begin_run("order/9", "order")
    wait_until(lambda: (r := first.get("order/9.1")) is not None and r.settled)
    wait_until(lambda: first.get("order/9.2") is not None)
    first.close()  # stops with the run pending, as after a crash
    gate.set()
    before = dump_promises(path)

    for changed_first_step in ("refund", "sleep"):
        second = Vow(store=f"sqlite:{path}")
        try:
            @second.register(name="order")
            def v2(ctx: Context):
                yield ctx.run(refund) if changed_first_step == "refund" else ctx.sleep(0)  # noqa: B023
                return "done"

            now = r"test_bad_input\.refund" if changed_first_step == "refund" else "sleep"
            with pytest.raises(NonDeterminismError, match=rf"order/9\.1.*test_bad_input\.charge.*{now}"):
                second.resume("order/9").result(timeout=30)
        finally:
            second.close()
        assert dump_promises(path) == before

    third = Vow(store=f"sqlite:{path}")  # the old code finishes the run, from where it stopped
    try:
        third.register(v1, name="order")
        assert third.resume("order/9").result(timeout=30) == "done"
        assert third.get("order/9.1") == first_record(before, "order/9.1")
    finally:
        third.close()


def first_record(rows: list[tuple], pid: str) -> Any:
    return _record(next(row for row in rows if row[0] == pid))


def test_the_four_channel_workflow_changed_after_a_sigkill_is_refused_then_finished(tmp_path: Path, path: Path) -> None:
    """The same check across a real crash: the resumed process runs other code than the killed one."""
    sim = tmp_path / "sim"
    log = tmp_path / "run.log"
    plan = {"stages": [{"send": ["email", "sms", "slack", "push"]}]}
    env = {"VOW_SIM_DIR": str(sim), "DURABILITY_LOG": str(log)}
    args = [f"sqlite:{path}", "order/42", json.dumps(plan)]
    first = app("notify_app", *args, env={**env, "DURABILITY_HOLD_BEFORE": "slack,push"})
    watcher = SQLiteStore(path)
    try:
        wait_until(lambda: len(log_lines(log, "held")) == 2 and all(
            (r := watcher.get(f"order/42.{c}")) is not None and r.settled for c in ("email", "sms")), 60,
                   "two sends held, two settled", proc=first)
    finally:
        watcher.close()
        kill(first)  # the crash (or, when the wait failed, no holding process left behind)
    before = dump_promises(path)

    changed = Vow(store=f"sqlite:{path}")
    try:
        @changed.register(name="notify")
        def notify(ctx: Context, event: dict, plan: dict):
            yield ctx.run(refund).options(id=f"{ctx.id}.email")
            return "refunded instead"

        with pytest.raises(NonDeterminismError,
                           match=r"order/42\.email.*vow\.channels\.deliver.*test_bad_input\.refund"):
            changed.resume("order/42").result(timeout=30)
    finally:
        changed.close()
    assert dump_promises(path) == before

    out, _ = finish(app("notify_app", *args, env=env))
    result = json.loads(out.strip().splitlines()[-1])
    assert sorted(result["receipts"]) == ["email", "push", "slack", "sms"]
    assert [d.duplicates for d in Ledger(sim / "ledger.sqlite").deliveries()] == [0, 0, 0, 0]


def test_a_run_with_other_arguments_or_an_unknown_workflow_changes_nothing(vow: Vow, path: Path) -> None:
    two_done_workflows(vow)
    before = dump_promises(path)
    with pytest.raises(ArgumentMismatchError, match=r"keep/1.*\[\"ada\"\].*\[\"bob\"\]"):
        vow.run("keep/1", "hello", "bob")

    assert dump_promises(path) == before

    vow.submit("keep/3", "hello", "lin")  # pending, for a worker that knows "hello"
    before = dump_promises(path)
    stranger = Vow(store=f"sqlite:{path}")  # knows no workflow
    try:
        with pytest.raises(VowError, match=r"'hello'.*keep/3.*not registered"):
            stranger.resume("keep/3").result(timeout=30)
        assert stranger.store.lease("keep/3").owner == ""  # given back: another worker may run it
    finally:
        stranger.close()
    assert dump_promises(path) == before


# ------------------------------------------------------------------------------ outside promises

def test_an_outside_promise_resolved_twice_keeps_the_first_value(vow: Vow, path: Path) -> None:
    @vow.register
    def wf(ctx: Context):
        decision = yield (yield ctx.promise(id="deploy/1.approval"))
        return decision

    handle = vow.begin_run("deploy/1", wf)
    wait_until(lambda: vow.get("deploy/1.approval") is not None)
    vow.resolve("deploy/1.approval", {"by": "ops"})
    vow.resolve("deploy/1.approval", {"by": "ops"})  # the same value again: nothing to do
    with pytest.raises(AlreadySettledError, match=r"deploy/1\.approval.*already resolved"):
        vow.resolve("deploy/1.approval", {"by": "mallory"})
    with pytest.raises(AlreadySettledError, match=r"deploy/1\.approval"):
        vow.reject("deploy/1.approval", "too late")
    assert handle.result(30) == {"by": "ops"}
    assert json.loads(vow.get("deploy/1.approval").value) == {"by": "ops"}
    with pytest.raises(PromiseNotFoundError, match="deploy/1.nothing"):
        vow.resolve("deploy/1.nothing", 1)
    with pytest.raises(VowError, match="not a promise made by ctx.promise"):
        vow.resolve("deploy/1", "hijack")
    assert vow.run("deploy/1", wf) == {"by": "ops"}


def test_two_clients_racing_to_resolve_one_promise_agree_on_one_value(vow: Vow, path: Path) -> None:
    @vow.register
    def wf(ctx: Context):
        return (yield (yield ctx.promise(id="race/1.vote")))

    handle = vow.begin_run("race/1", wf)
    wait_until(lambda: vow.get("race/1.vote") is not None)
    clients = [Vow(store=f"sqlite:{path}") for _ in range(4)]
    outcomes: list[Any] = [None] * 4
    go = threading.Barrier(4)

    def vote(i: int) -> None:
        go.wait()
        try:
            clients[i].resolve("race/1.vote", f"choice {i}")
            outcomes[i] = "won"
        except AlreadySettledError:
            outcomes[i] = "lost"

    threads = [threading.Thread(target=vote, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in clients:
        c.close()
    assert outcomes.count("won") == 1 and outcomes.count("lost") == 3
    winner = f"choice {outcomes.index('won')}"
    assert handle.result(30) == winner
    assert json.loads(vow.get("race/1.vote").value) == winner
