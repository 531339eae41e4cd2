"""An id given with ``.options(id=...)`` again is the same call: counted at the sink, on memory,
SQLite and PostgreSQL. Each case says what the README promises for it ("that id again, for the
same function, is the same call and gets its outcome"; "a settled promise is never run again")."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vow import (
    CanceledError,
    Constant,
    Context,
    DuplicateIdError,
    LeafContext,
    PermanentError,
    PromiseTimeoutError,
    RunHandle,
    State,
    TransientError,
    Vow,
    VowError,
)
from vow.testing import wait_until

WAIT = 30.0  # only a hang detector: every wait ends on an event


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def vow(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Vow]:
    if request.param == "memory":
        store = "memory:"
    elif request.param == "sqlite":
        store = f"sqlite:{tmp_path / 'vow.sqlite'}"
    else:
        store = request.getfixturevalue("postgres_url")
    client = Vow(store=store)
    yield client
    client.close()


class Sink:
    """What the leaves sent, in order (thread-safe)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []
        self.lock = threading.Lock()

    def add(self, ctx: LeafContext, what: object) -> None:
        with self.lock:
            self.sent.append((ctx.id, what))


def test_an_outside_promise_asked_for_twice_is_one_promise(vow: Vow) -> None:
    """ctx.promise(X) again, while pending and after it was resolved, is the same promise."""

    def approve(ctx: Context):
        first = yield ctx.promise(f"{ctx.id}.ok")
        same = yield ctx.promise(f"{ctx.id}.ok")  # still pending: the same handle
        value = yield first
        later = yield ctx.promise(f"{ctx.id}.ok")  # resolved: its outcome at once
        return [same is first, value, (yield same), (yield later), later.state.value]

    vow.register(approve)
    handle = vow.begin_run("p/1", approve)
    wait_until(lambda: vow.get("p/1.ok") is not None, timeout=WAIT)
    vow.resolve("p/1.ok", 7)
    assert handle.result(timeout=WAIT) == [True, 7, 7, 7, "resolved"]


def test_an_outside_promise_rejected_then_asked_for_again_gets_the_rejection(vow: Vow) -> None:
    def approve(ctx: Context):
        first = yield ctx.promise(f"{ctx.id}.ok")
        errors = []
        for handle in (first, (yield ctx.promise(f"{ctx.id}.ok"))):
            try:
                yield handle
            except Exception as exc:  # noqa: BLE001
                errors.append(str(exc))
        again = yield ctx.promise(f"{ctx.id}.ok")
        try:
            yield again
        except Exception as exc:  # noqa: BLE001
            errors.append(str(exc))
        return errors

    vow.register(approve)
    handle = vow.begin_run("p/2", approve)
    wait_until(lambda: vow.get("p/2.ok") is not None, timeout=WAIT)
    vow.reject("p/2.ok", "no")
    assert handle.result(timeout=WAIT) == ["no", "no", "no"]


def test_a_sleep_given_an_id_twice_sleeps_once(vow: Vow) -> None:
    def nap(ctx: Context):
        yield ctx.sleep(0.05).options(id=f"{ctx.id}.nap")
        again = yield ctx.sleep(60).options(id=f"{ctx.id}.nap")  # slept already: not 60 s more
        return again

    vow.register(nap)
    assert vow.run("s/1", nap, timeout=WAIT) is None


def test_begin_run_then_run_of_the_same_id_runs_the_leaf_once(vow: Vow) -> None:
    sink = Sink()

    def send(ctx: LeafContext, n: int) -> int:
        sink.add(ctx, n)
        return n

    def flow(ctx: Context):
        handle = yield ctx.begin_run(send, 1).options(id=f"{ctx.id}.x")
        value = yield ctx.run(send, 1).options(id=f"{ctx.id}.x")
        return [value, (yield handle), (yield ctx.run(send, 1).options(id=f"{ctx.id}.x"))]

    vow.register(flow)
    assert vow.run("b/1", flow, timeout=WAIT) == [1, 1, 1]
    assert sink.sent == [("b/1.x", 1)]


def test_one_id_several_times_in_one_all_runs_once(vow: Vow) -> None:
    sink = Sink()

    def send(ctx: LeafContext, n: int) -> int:
        sink.add(ctx, n)
        return n

    def flow(ctx: Context):
        handles = []
        for _ in range(3):
            handles.append((yield ctx.begin_run(send, 1).options(id=f"{ctx.id}.x")))
        handles.append((yield ctx.begin_run(send, 2)))
        values = yield ctx.all(handles)
        settled = yield ctx.all_settled(handles)
        first = yield ctx.any(handles)
        more = []
        for _ in range(2):
            more.append((yield ctx.begin_run(send, 1).options(id=f"{ctx.id}.x")))
        return [values, [o.value for o in settled], first, (yield ctx.all(more))]

    vow.register(flow)
    assert vow.run("a/1", flow, timeout=WAIT) == [[1, 1, 1, 2], [1, 1, 1, 2], 1, [1, 1]]
    assert sorted(sink.sent) == [("a/1.4", 2), ("a/1.x", 1)]


def test_one_failing_id_several_times_in_one_all_fails_it_once(vow: Vow) -> None:
    sink = Sink()

    def fail(ctx: LeafContext) -> None:
        sink.add(ctx, ctx.attempt)
        raise PermanentError("no")

    def flow(ctx: Context):
        handles = []
        for _ in range(3):
            handles.append((yield ctx.begin_run(fail).options(id=f"{ctx.id}.x")))
        try:
            yield ctx.all(handles)
        except PermanentError as exc:
            first = str(exc)
        settled = yield ctx.all_settled(handles)
        try:
            yield ctx.any(handles)
        except PermanentError as exc:
            anyone = str(exc)
        return [first, [o.state.value for o in settled], anyone]

    vow.register(flow)
    assert vow.run("a/2", flow, timeout=WAIT) == ["no", ["rejected"] * 3, "no"]
    assert sink.sent == [("a/2.x", 1)]


def test_a_child_and_its_parent_share_an_id_the_leaf_runs_once(vow: Vow) -> None:
    sink = Sink()

    def send(ctx: LeafContext, n: int) -> int:
        sink.add(ctx, n)
        return n

    def child(ctx: Context, shared: str):
        return (yield ctx.run(send, 1).options(id=shared))

    def parent(ctx: Context):
        shared = f"{ctx.id}.shared"
        kid = yield ctx.begin_run(child, shared)
        mine = yield ctx.run(send, 1).options(id=shared)
        theirs = yield kid
        late = yield ctx.run(child, shared).options(id=f"{ctx.id}.kid2")  # a second child, after it settled
        return [mine, theirs, late, (yield ctx.run(send, 1).options(id=shared))]

    vow.register(child)
    vow.register(parent)
    assert vow.run("c/1", parent, timeout=WAIT) == [1, 1, 1, 1]
    assert sink.sent == [("c/1.shared", 1)]


def test_a_failed_leaf_met_again_gets_its_rejection_not_a_new_run(vow: Vow) -> None:
    sink = Sink()

    def fail(ctx: LeafContext) -> None:
        sink.add(ctx, ctx.attempt)
        raise TransientError(f"down {ctx.attempt}")

    def flow(ctx: Context):
        errors = []
        for _ in range(3):
            try:
                yield ctx.run(fail).options(id=f"{ctx.id}.x", retry=Constant(0.01, max_attempts=2))
            except TransientError as exc:
                errors.append(str(exc))
            if len(errors) == 2:
                yield ctx.sleep(0.02)  # a later round too
        return errors

    vow.register(flow)
    assert vow.run("f/1", flow, timeout=WAIT) == ["down 2"] * 3
    assert sink.sent == [("f/1.x", 1), ("f/1.x", 2)]


def test_a_timed_out_leaf_met_again_gets_its_timeout_not_a_new_run(vow: Vow) -> None:
    sink = Sink()
    release = threading.Event()

    def slow(ctx: LeafContext) -> None:
        sink.add(ctx, ctx.attempt)
        release.wait(WAIT)

    def flow(ctx: Context):
        errors = []
        for _ in range(2):
            try:
                yield ctx.run(slow).options(id=f"{ctx.id}.x", timeout=0.1)
            except PromiseTimeoutError as exc:
                errors.append(type(exc).__name__)
        yield ctx.sleep(0.02)
        try:
            yield ctx.run(slow).options(id=f"{ctx.id}.x", timeout=0.1)
        except PromiseTimeoutError as exc:
            errors.append(type(exc).__name__)
        return errors

    vow.register(flow)
    try:
        assert vow.run("t/1", flow, timeout=WAIT) == ["PromiseTimeoutError"] * 3
    finally:
        release.set()
    assert sink.sent == [("t/1.x", 1)]
    assert vow.get("t/1.x").state is State.TIMEDOUT


def test_an_explicit_id_equal_to_a_later_auto_id_is_that_call(vow: Vow) -> None:
    """`{ctx.id}.2` given to the first call is the id the second call gets by counting: for the same
    function it is the same call (its outcome); for another function the second call fails."""
    sink = Sink()

    def send(ctx: LeafContext, n: int) -> int:
        sink.add(ctx, n)
        return n

    def other(ctx: LeafContext) -> None:
        sink.add(ctx, "other")

    def same(ctx: Context):
        first = yield ctx.run(send, 1).options(id=f"{ctx.id}.2")
        return [first, (yield ctx.run(send, 1))]  # counted: {ctx.id}.2

    def clash(ctx: Context):
        first = yield ctx.run(send, 1).options(id=f"{ctx.id}.2")
        try:
            yield ctx.run(other)
        except DuplicateIdError as exc:
            return [first, str(exc)]
        return [first, "no error"]

    vow.register(same)
    vow.register(clash)
    assert vow.run("e/1", same, timeout=WAIT) == [1, 1]
    first, error = vow.run("e/2", clash, timeout=WAIT)
    assert first == 1 and "e/2.2" in error
    assert sink.sent == [("e/1.2", 1), ("e/2.2", 1)]


def test_a_retried_workflow_meets_its_ids_again_and_runs_no_leaf_twice(vow: Vow) -> None:
    sink = Sink()
    tries: list[int] = []

    def send(ctx: LeafContext, n: int) -> int:
        sink.add(ctx, n)
        return n

    def body(ctx: Context):
        tries.append(1)
        a = yield ctx.run(send, 1).options(id=f"{ctx.id}.a")
        b = yield ctx.run(send, 2).options(id=f"{ctx.id}.a")
        c = yield ctx.run(send, 3)
        if len(tries) < 3:
            raise TransientError("again")
        return [a, b, c]

    def parent(ctx: Context):
        return (yield ctx.run(body).options(retry=Constant(0.01, max_attempts=5)))

    vow.register(body)
    vow.register(parent)
    assert vow.run("r/1", parent, timeout=WAIT) == [1, 1, 3]
    assert sorted(sink.sent) == [("r/1.1.3", 3), ("r/1.1.a", 1)]


def test_a_leaf_canceled_from_outside_met_again_is_canceled(vow: Vow) -> None:
    """A leaf canceled with vow.cancel, met again by id: its outcome (canceled), not a new run."""
    sink = Sink()
    gate = threading.Event()

    def slow(ctx: LeafContext) -> None:
        sink.add(ctx, 1)
        gate.wait(WAIT)

    def flow(ctx: Context):
        outcomes = []
        for _ in range(2):
            try:
                yield ctx.run(slow).options(id=f"{ctx.id}.slow")
            except CanceledError:
                outcomes.append("canceled")
        return outcomes

    vow.register(flow)
    handle = vow.begin_run("x/1", flow)
    try:
        wait_until(lambda: sink.sent, timeout=WAIT)
        vow.cancel("x/1.slow")
        assert handle.result(timeout=WAIT) == ["canceled", "canceled"]
    finally:
        gate.set()
    assert sink.sent == [("x/1.slow", 1)]


def test_an_id_in_the_form_of_vows_own_timers_is_refused_at_the_call(vow: Vow) -> None:
    """An id shaped like the engine's own bookkeeping (a retry's back-off ``{id}.backoff.{n}``, a rate-limit
    wait ``{id}.throttle.{n}.{m}``, a ``ctx.patched`` marker ``{run}.patched.{name}``) fails its call with
    DuplicateIdError. Before, a leaf given ``{ctx.id}.x.backoff.2`` shared its row with the back-off timer of
    ``{ctx.id}.x``'s retry: the timer's end stored ``null`` as the leaf's outcome, and the workflow got
    None for a leaf that returned 5 (its outcome lost)."""
    sink = Sink()
    both = threading.Event()

    def send(ctx: LeafContext, n: int) -> int:
        sink.add(ctx, n)
        both.wait(WAIT)  # pending while the other call retries: its back-off timer comes in meanwhile
        return n

    def flaky(ctx: LeafContext) -> str:
        sink.add(ctx, ctx.attempt)
        if ctx.attempt == 1:
            raise TransientError("once")
        both.set()
        return "ok"

    def flow(ctx: Context):
        try:
            handle = yield ctx.begin_run(send, 5).options(id=f"{ctx.id}.x.backoff.2")
        except DuplicateIdError as exc:
            return ["refused", "vow's own" in str(exc)]
        return [(yield ctx.run(flaky).options(id=f"{ctx.id}.x", retry=Constant(0.01, max_attempts=3))),
                (yield handle)]  # before: None, the back-off timer's end

    def others(ctx: Context):
        refused = []
        for taken in (f"{ctx.id}.y.throttle.1.1", f"{ctx.id}.patched.new"):
            try:
                yield ctx.begin_run(send, 6).options(id=taken)
            except DuplicateIdError as exc:
                refused.append(taken in str(exc))
        try:
            yield ctx.promise(f"{ctx.id}.z.backoff.3")
        except DuplicateIdError as exc:
            refused.append(f"{ctx.id}.z.backoff.3" in str(exc))
        return refused

    def named(ctx: Context):
        return (yield ctx.run(flaky).options(id=f"{ctx.id}.fine", retry=Constant(0.01, max_attempts=3)))

    vow.register(others)
    vow.register(named)
    vow.register(flow)
    try:
        assert vow.run("v/1", flow, timeout=WAIT) == ["refused", True]
        assert vow.run("v/2", others, timeout=WAIT) == [True, True, True]
        assert vow.run("v/3.patched.b", named, timeout=WAIT) == "ok"  # the form only at the end of an id
    finally:
        both.set()
    assert sink.sent == [("v/3.patched.b.fine", 1), ("v/3.patched.b.fine", 2)]


def test_an_id_that_only_ends_in_a_line_break_after_such_a_form_is_not_refused() -> None:
    """``{ctx.id}.x.backoff.2\\n`` is no id the engine makes (its timers' ids end in digits). The check's ``$``
    matched before the final line break, so the call failed with DuplicateIdError and its leaf never ran."""
    sink = Sink()

    def send(ctx: LeafContext, n: int) -> int:
        sink.add(ctx, n)
        return n

    def flow(ctx: Context):
        return (yield ctx.run(send, 5).options(id=f"{ctx.id}.x.backoff.2\n"))

    with Vow(store="memory:") as client:
        assert client.run("v/4", flow, timeout=WAIT) == 5
    assert sink.sent == [("v/4.x.backoff.2\n", 5)]


def test_a_call_given_the_id_of_a_workflow_it_is_made_in_fails_instead_of_waiting_for_itself(vow: Vow) -> None:
    """The same function under the id of the workflow making the call (or of one it runs under) is that
    workflow: waiting for it would wait for itself. The call fails with DuplicateIdError. Before, the run
    hung until its timeout (a root calling itself as a child; a child calling itself; a grandchild calling
    the root's function with the root's id)."""

    def itself(ctx: Context, depth: int):
        if depth:
            return "deep"
        try:
            return (yield ctx.run(itself, 1).options(id=ctx.id))
        except DuplicateIdError as exc:
            return f"refused: {ctx.id in str(exc)}"

    def inner(ctx: Context, root: str):
        try:
            return (yield ctx.run(top, 1).options(id=root))
        except DuplicateIdError as exc:
            return f"refused: {root in str(exc)}"

    def middle(ctx: Context, root: str):
        mine = yield ctx.run(itself, 0)  # a child calling itself under its own id
        return [mine, (yield ctx.run(inner, root))]

    def top(ctx: Context, depth: int):
        if depth:
            return "again"
        return (yield ctx.run(middle, ctx.id))

    for fn in (itself, inner, middle, top):
        vow.register(fn)
    assert vow.run("w/1", itself, 0, timeout=WAIT) == "refused: True"
    assert vow.run("w/2", top, 0, timeout=WAIT) == ["refused: True", "refused: True"]


def test_runs_that_give_one_id_in_the_same_commit_run_its_leaf_once(vow: Vow) -> None:
    """Ids given with .options(id=...) belong to one run: of several runs that create the same id in one
    commit, the first keeps it and the others fail with VowError. Before, the commit's answer was kept by
    id, so it reached only the last of them: the ones between ran the leaf too (three sends for one id),
    and their settle overwrote the owner's outcome (the owner got another run's value)."""
    sink = Sink()
    entered, release = threading.Event(), threading.Event()

    def send(ctx: LeafContext, n: int) -> int:
        sink.add(ctx, n)
        return n

    def flow(ctx: Context, n: int):
        return (yield ctx.run(send, n).options(id="shared/1"))

    def outcome(handle: RunHandle) -> object:
        try:
            return handle.result(timeout=WAIT)
        except VowError as exc:  # the run fails, as for an id another run stored earlier
            return "already used" if "already used by run 'own/0'" in str(exc) else repr(exc)

    def blocker(ctx: Context):
        entered.set()
        release.wait(WAIT)  # holds the engine thread: the runs below start in one round, one commit
        return 0
        yield

    vow.register(flow)
    vow.register(blocker)
    held = vow.begin_run("hold/1", blocker)
    assert entered.wait(WAIT)
    handles = [vow.begin_run(f"own/{n}", flow, n) for n in range(4)]
    release.set()
    assert held.result(timeout=WAIT) == 0
    results = [outcome(h) for h in handles]
    assert sorted(results, key=str) == [0, "already used", "already used", "already used"], results
    assert sink.sent == [("shared/1", 0)]
    assert vow.get("shared/1").value == "0"


def test_a_child_met_again_after_it_settled_leaves_nothing_pending(vow: Vow) -> None:
    """A child workflow's id again, with arguments that make its body start more branches than the
    first time: the stored outcome stands, the body stops, and the branches it made before the commit
    that found the child settled end canceled. Before, those the first body never made stayed pending in
    the store for ever, under a resolved child of a resolved run."""
    sink = Sink()

    def send(ctx: LeafContext, n: int) -> int:
        sink.add(ctx, n)
        return n

    def child(ctx: Context, k: int):
        handles = []
        for i in range(k):
            handles.append((yield ctx.begin_run(send, i)))
        return (yield ctx.all(handles))

    def parent(ctx: Context):
        first = yield ctx.run(child, 1).options(id=f"{ctx.id}.kid")
        return [first, (yield ctx.run(child, 3).options(id=f"{ctx.id}.kid"))]

    vow.register(child)
    vow.register(parent)
    assert vow.run("k/1", parent, timeout=WAIT) == [[0], [0]]
    assert sink.sent == [("k/1.kid.1", 0)]
    states = {r.id: r.state for r in vow.store.tree("k/1")}
    assert states == {"k/1": State.RESOLVED, "k/1.kid": State.RESOLVED, "k/1.kid.1": State.RESOLVED,
                      "k/1.kid.2": State.CANCELED, "k/1.kid.3": State.CANCELED}


def test_a_settled_childs_id_given_to_another_child_workflow_fails_that_call_only(vow: Vow) -> None:
    """The id of a settled child workflow given to another workflow function: that call fails with
    DuplicateIdError (README), the run goes on. Before, the second child's body had met the first child's
    branch ({id}.1, settled) and the engine canceled it over its stored outcome: the commit was refused,
    the run replayed, and stopped with NonDeterminismError, left pending."""
    sink = Sink()

    def send(ctx: LeafContext, n: int) -> int:
        sink.add(ctx, n)
        return n

    def child_a(ctx: Context):
        return (yield ctx.run(send, 1))

    def child_b(ctx: Context):
        return (yield ctx.run(send, 2))

    def parent(ctx: Context):
        first = yield ctx.run(child_a).options(id=f"{ctx.id}.kid")
        try:
            yield ctx.run(child_b).options(id=f"{ctx.id}.kid")
        except DuplicateIdError as exc:
            return [first, "child_a" in str(exc)]
        return [first, "no error"]

    for fn in (child_a, child_b, parent):
        vow.register(fn)
    assert vow.run("g/1", parent, timeout=WAIT) == [1, True]
    assert sink.sent == [("g/1.kid.1", 1)]
    assert {r.id: r.state for r in vow.store.tree("g/1")} == {
        "g/1": State.RESOLVED, "g/1.kid": State.RESOLVED, "g/1.kid.1": State.RESOLVED}
