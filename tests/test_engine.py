"""The engine's behaviour in one process, on memory and on real SQLite files."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vow import (
    ArgumentMismatchError,
    CanceledError,
    Constant,
    Context,
    DuplicateIdError,
    EncodeError,
    Exponential,
    LeafContext,
    Never,
    NonDeterminismError,
    PermanentError,
    PromiseTimeoutError,
    State,
    Throttled,
    TransientError,
    Vow,
    stored_as,
)
from vow.events import EventKind
from vow.testing import wait_until

WAIT = 30.0  # only a hang detector: every wait ends on an event


@pytest.fixture(params=["memory", "sqlite"])
def vow(request: pytest.FixtureRequest, tmp_path: Path):
    client = Vow(store="memory:" if request.param == "memory" else f"sqlite:{tmp_path / 'vow.sqlite'}")
    yield client
    client.close()


class Calls:
    """Counts leaf executions per promise id (thread-safe)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def hit(self, ctx: LeafContext) -> None:
        with self.lock:
            self.counts[ctx.id] += 1


def fan_in(handles):
    """Yield each handle in turn (a fan-in loop usable with ``yield from``)."""
    values = []
    for h in handles:
        values.append((yield h))
    return values


def test_fan_out_runs_in_parallel(vow: Vow) -> None:
    together = threading.Barrier(4, timeout=60)  # passes only when all four branches run at once

    def work(ctx: LeafContext, i: int) -> int:
        together.wait()
        return i

    @vow.register
    def fan(ctx: Context):
        handles = []
        for i in range(4):
            handles.append((yield ctx.begin_run(work, i)))
        return sum((yield from fan_in(handles)))

    assert vow.run("fan/1", fan) == 6


def test_a_failing_leaf_is_retried_alone(vow: Vow) -> None:
    calls = Calls()

    def send(ctx: LeafContext, channel: str) -> str:
        calls.hit(ctx)
        if channel == "push" and ctx.attempt == 1:
            raise RuntimeError("push service unavailable")
        time.sleep(0.05)
        return f"{channel}:{ctx.attempt}:{ctx.idempotency_key}"

    @vow.register
    def notify(ctx: Context):
        handles = []
        for channel in ("email", "sms", "slack", "push"):
            handles.append((yield ctx.begin_run(send, channel).options(id=f"{ctx.id}.{channel}")))
        return (yield from fan_in(handles))

    result = vow.run("notify/1", notify)
    assert result == ["email:1:notify/1.email", "sms:1:notify/1.sms", "slack:1:notify/1.slack",
                      "push:2:notify/1.push"]
    assert calls.counts == Counter({"notify/1.email": 1, "notify/1.sms": 1, "notify/1.slack": 1,
                                    "notify/1.push": 2})
    assert vow.get("notify/1.push").attempt == 2


def test_running_the_same_id_again_returns_the_stored_result(vow: Vow) -> None:
    calls = Calls()

    def leaf(ctx: LeafContext) -> int:
        calls.hit(ctx)
        return 41

    @vow.register
    def wf(ctx: Context, x: int):
        return (yield ctx.run(leaf)) + x

    assert vow.run("same/1", wf, 1) == 42
    assert vow.run("same/1", wf, 1) == 42
    handles = [vow.begin_run("same/2", wf, 1) for _ in range(5)]
    assert [h.result(10) for h in handles] == [42] * 5
    assert calls.counts == Counter({"same/1.1": 1, "same/2.1": 1})


def test_same_id_with_other_arguments_is_an_error(vow: Vow) -> None:
    @vow.register
    def wf(ctx: Context, x: int):
        yield ctx.sleep(0)
        return x

    assert vow.run("args/1", wf, 1) == 1
    with pytest.raises(ArgumentMismatchError, match=r"args/1.*\[1\].*\[2\]"):
        vow.run("args/1", wf, 2)


def test_a_retried_workflow_reenters_with_the_same_ids(vow: Vow) -> None:
    calls = Calls()
    failures = {"left": 2}

    def leaf(ctx: LeafContext, i: int) -> int:
        calls.hit(ctx)
        return i

    @vow.register(retry=Constant(delay=0.01, max_attempts=3))
    def wf(ctx: Context):
        a = yield ctx.run(leaf, 1)
        b = yield ctx.run(leaf, 2)
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("workflow body failed")
        c = yield ctx.run(leaf, 3)
        return a + b + c

    assert vow.run("retry/1", wf) == 6
    assert calls.counts == Counter({"retry/1.1": 1, "retry/1.2": 1, "retry/1.3": 1})
    assert vow.get("retry/1").attempt == 3


def test_a_workflow_that_fails_for_good_stores_its_error(vow: Vow) -> None:
    def leaf(ctx: LeafContext) -> None:
        raise PermanentError("recipient unknown", code="21211")

    @vow.register
    def wf(ctx: Context):
        yield ctx.run(leaf)

    with pytest.raises(PermanentError, match="recipient unknown"):
        vow.run("fail/1", wf)
    assert vow.get("fail/1").state is State.REJECTED
    assert vow.get("fail/1.1").attempt == 1  # permanent: never retried
    with pytest.raises(PermanentError, match="recipient unknown"):  # the stored error comes back
        vow.run("fail/1", wf)


def test_all_settled_keeps_every_branch_result(vow: Vow) -> None:
    def leaf(ctx: LeafContext, i: int) -> int:
        if i == 1:
            raise ValueError("bad branch")
        return i

    @vow.register
    def wf(ctx: Context):
        handles = []
        for i in range(3):
            handles.append((yield ctx.begin_run(leaf, i).options(retry=Never())))
        outcomes = yield ctx.all_settled(handles)
        return [(o.id, o.ok, o.value, type(o.error).__name__ if o.error else None) for o in outcomes]

    assert vow.run("settled/1", wf) == [
        ["settled/1.1", True, 0, None], ["settled/1.2", False, None, "ValueError"], ["settled/1.3", True, 2, None]]


def test_all_fails_fast_and_any_and_first_pick_one(vow: Vow) -> None:
    def leaf(ctx: LeafContext, delay: float, fail: bool) -> float:
        time.sleep(delay)
        if fail:
            raise ValueError(f"failed after {delay}")
        return delay

    @vow.register
    def wf(ctx: Context):
        slow = yield ctx.begin_run(leaf, 0.3, False).options(retry=Never())
        fast_fail = yield ctx.begin_run(leaf, 0.01, True).options(retry=Never())
        medium = yield ctx.begin_run(leaf, 0.1, False).options(retry=Never())
        try:
            yield ctx.all([slow, fast_fail, medium])
            all_result = "no error"
        except ValueError as exc:
            all_result = str(exc)
        any_result = yield ctx.any([slow, fast_fail, medium])
        try:
            first_result = yield ctx.first([fast_fail, slow])
        except ValueError:
            first_result = "first failed"
        return [all_result, any_result, first_result]

    assert vow.run("comb/1", wf) == ["failed after 0.01", 0.1, "first failed"]


def test_changed_workflow_raises_nondeterminism_naming_both_functions(vow: Vow) -> None:
    gate = threading.Event()

    def charge(ctx: LeafContext) -> str:
        return "charged"

    def refund(ctx: LeafContext) -> str:
        return "refunded"

    def wait_for_gate(ctx: LeafContext) -> None:
        gate.wait(10)

    @vow.register(name="order")
    def v1(ctx: Context):
        yield ctx.run(charge)
        yield ctx.run(wait_for_gate)
        return "done"

    handle = vow.begin_run("nd/1", "order")
    wait_until(lambda: vow.get("nd/1.1") is not None and vow.get("nd/1.1").settled, message="nd/1.1 settled")
    vow._engine.call_soon(lambda: vow._engine._roots.pop("nd/1").__setattr__("done", True))  # simulate a crash
    gate.set()
    # the "crashed" run's last leaf has answered, and the engine has dropped the answer
    wait_until(lambda: vow._engine.leaves.in_flight() == 0, message="the last leaf answered")
    store = vow.store
    store.release(store.lease("nd/1"))

    other = Vow(store=store)
    try:
        @other.register(name="order")
        def v2(ctx: Context):
            yield ctx.run(refund)
            return "done"

        with pytest.raises(NonDeterminismError, match=r"nd/1\.1.*charge.*refund"):
            other.run("nd/1", "order")
        assert other.get("nd/1").state is State.PENDING  # nothing stored was altered
        assert other.get("nd/1.1").value == '"charged"'
    finally:
        other.close()  # closes the store it shares with the fixture's client, which closes it again: no harm
    del handle


def test_a_step_that_moved_keeps_its_stored_name_with_stored_as(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'vow.sqlite'}"
    calls: list[str] = []

    @stored_as("shop.invoice")
    def invoice(ctx: LeafContext, n: int) -> int:
        calls.append("old")
        return n * 2

    with Vow(store=store) as first:
        @first.register(name="order")
        def order_v1(ctx: Context, n: int):
            total = yield ctx.run(invoice, n)
            yield (yield ctx.promise(f"{ctx.id}.gate"))
            return total

        first.begin_run("moved/1", "order", 21)
        wait_until(lambda: first.get("moved/1.gate") is not None, message="the gate stored")
        assert first.get("moved/1.1").func == "shop.invoice"

    @stored_as("shop.invoice")
    def renamed_invoice(ctx: LeafContext, n: int) -> int:  # the same step, moved and renamed
        calls.append("new")
        return n * 2

    with Vow(store=store) as second:
        @second.register(name="order")
        def order_v2(ctx: Context, n: int):
            total = yield ctx.run(renamed_invoice, n)
            yield (yield ctx.promise(f"{ctx.id}.gate"))
            return total

        handle = second.begin_run("moved/1", "order", 21)
        second.resolve("moved/1.gate", None)
        assert handle.result(10) == 42
    assert calls == ["old"]  # replayed from the store, not run again, and no NonDeterminismError


def test_durable_sleep_and_timeouts(vow: Vow) -> None:
    def slow(ctx: LeafContext) -> str:
        time.sleep(0.5)
        return "late"

    @vow.register
    def wf(ctx: Context):
        started = time.time()
        yield ctx.sleep(0.1)
        slept = time.time() - started
        try:
            yield ctx.run(slow).options(timeout=0.1)
            outcome = "finished"
        except PromiseTimeoutError:
            outcome = "timed out"
        return [slept >= 0.1, outcome]

    assert vow.run("sleep/1", wf) == [True, "timed out"]
    assert vow.get("sleep/1.2").state is State.TIMEDOUT


def test_transient_error_retry_after_is_honoured(vow: Vow) -> None:
    times: list[float] = []

    def leaf(ctx: LeafContext) -> int:
        times.append(time.monotonic())
        if ctx.attempt == 1:
            raise TransientError("429 too many requests", retry_after=0.3)
        return ctx.attempt

    @vow.register
    def wf(ctx: Context):
        return (yield ctx.run(leaf).options(retry=Exponential(delay=0.01, jitter=0)))

    assert vow.run("ra/1", wf) == 2
    assert times[1] - times[0] >= 0.3


def test_non_retryable_types_fail_at_once(vow: Vow) -> None:
    calls = Calls()

    def leaf(ctx: LeafContext) -> None:
        calls.hit(ctx)
        raise KeyError("nope")

    @vow.register
    def wf(ctx: Context):
        yield ctx.run(leaf).options(non_retryable=[KeyError])

    with pytest.raises(KeyError):
        vow.run("nr/1", wf)
    assert calls.counts["nr/1.1"] == 1


def test_async_leaves_and_async_callers(vow: Vow) -> None:
    together = asyncio.Barrier(50)  # passes only when all fifty coroutines are awaiting at once

    async def fetch(ctx: LeafContext, i: int) -> int:
        await asyncio.wait_for(together.wait(), 60)
        return i * 2

    @vow.register
    def wf(ctx: Context):
        handles = []
        for i in range(50):
            handles.append((yield ctx.begin_run(fetch, i)))
        return sum((yield ctx.all(handles)))

    async def main() -> int:
        return await vow.run_async("async/1", wf)

    assert asyncio.run(main()) == sum(i * 2 for i in range(50))


def test_thousand_blocking_calls_run_at_once(tmp_path: Path) -> None:
    vow = Vow(store=f"sqlite:{tmp_path / 'v.sqlite'}")
    together = threading.Barrier(1000, timeout=120)  # passes only when all thousand block at the same time

    def block(ctx: LeafContext, i: int) -> int:
        together.wait()
        return i

    @vow.register
    def wf(ctx: Context):
        handles = []
        for i in range(1000):
            handles.append((yield ctx.begin_run(block, i)))
        return sum((yield ctx.all(handles)))

    try:
        assert vow.run("wide/1", wf) == sum(range(1000))
    finally:
        vow.close()


def test_concurrency_limits(tmp_path: Path) -> None:
    vow = Vow(store="memory:", max_concurrency=3)
    live = {"now": 0, "max": 0}
    lock = threading.Lock()

    def leaf(ctx: LeafContext) -> None:
        with lock:
            live["now"] += 1
            live["max"] = max(live["max"], live["now"])
        time.sleep(0.02)
        with lock:
            live["now"] -= 1

    @vow.register(concurrency=2)
    def limited(ctx: Context):
        handles = []
        for _ in range(8):
            handles.append((yield ctx.begin_run(leaf)))
        yield ctx.all(handles)

    @vow.register
    def unlimited(ctx: Context):
        handles = []
        for _ in range(8):
            handles.append((yield ctx.begin_run(leaf)))
        yield ctx.all(handles)

    try:
        vow.run("lim/1", limited)
        assert live["max"] == 2
        live["max"] = 0
        vow.run("lim/2", unlimited)
        assert live["max"] == 3
    finally:
        vow.close()


def test_values_that_cannot_be_stored_get_a_clear_error(vow: Vow) -> None:
    def leaf(ctx: LeafContext) -> object:
        return object()

    @vow.register
    def wf(ctx: Context, arg: object = None):
        try:
            yield ctx.run(leaf)
        except EncodeError as exc:
            return str(exc)

    assert "cannot be stored" in vow.run("enc/1", wf)
    with pytest.raises(EncodeError, match="arguments of workflow wf"):
        vow.run("enc/2", wf, {1, 2j})
    assert vow.get("enc/2") is None  # nothing half-written


def test_an_int_too_long_to_print_is_an_encode_error_not_a_hang(vow: Vow) -> None:
    # Python prints no int of more than 4,300 digits (sys.get_int_max_str_digits): encoding one raised a bare
    # ValueError on the engine thread, and the caller's vow.run waited for ever.
    def leaf(ctx: LeafContext) -> int:
        return 10**5000

    @vow.register
    def wf(ctx: Context):
        try:
            yield ctx.run(leaf)
        except EncodeError as exc:
            return str(exc)

    @vow.register
    def returns_it(ctx: Context):
        return 10**5000
        yield

    assert "cannot be stored" in vow.run("long/1", wf)
    with pytest.raises(EncodeError, match=r"the result of workflow returns_it \(long/2\) cannot be stored: a "
                                          r"whole number of more than 4,300 digits cannot be written as JSON; store it "
                                          r"as text"):
        vow.begin_run("long/2", returns_it).result(30)


def test_outside_promise_resolve_reject_and_cancel(vow: Vow) -> None:
    @vow.register
    def wf(ctx: Context):
        p = yield ctx.promise(id=f"{ctx.id}.approval")
        return (yield p)

    handle = vow.begin_run("ext/1", wf)
    wait_until(lambda: vow.get("ext/1.approval"), message="ext/1.approval stored")
    vow.resolve("ext/1.approval", "yes")
    vow.resolve("ext/1.approval", "yes")  # the same outcome again: no-op
    from vow import AlreadySettledError

    with pytest.raises(AlreadySettledError):
        vow.resolve("ext/1.approval", "no")
    assert handle.result(5) == "yes"
    assert vow.get("ext/1.approval").value == '"yes"'

    cancelled = vow.begin_run("ext/2", wf)
    wait_until(lambda: vow.get("ext/2.approval"), message="ext/2.approval stored")
    vow.cancel("ext/2")
    with pytest.raises(CanceledError):
        cancelled.result(5)
    assert vow.get("ext/2.approval").state is State.CANCELED


def test_observers_see_the_lifecycle(tmp_path: Path) -> None:
    events = []

    class Recorder:
        def on_event(self, event) -> None:
            events.append((event.kind, event.id, event.attempt))

    vow = Vow(store="memory:", observers=[Recorder()])

    def leaf(ctx: LeafContext) -> int:
        if ctx.attempt == 1:
            raise TransientError("try again")
        return 1

    @vow.register
    def wf(ctx: Context):
        return (yield ctx.run(leaf).options(retry=Constant(delay=0.01)))

    try:
        vow.run("ev/1", wf)
    finally:
        vow.close()
    kinds = [(k.value, i, a) for k, i, a in events]
    assert kinds == [
        ("created", "ev/1", 1), ("started", "ev/1", 1), ("created", "ev/1.1", 1), ("started", "ev/1.1", 1),
        ("retry_scheduled", "ev/1.1", 1), ("started", "ev/1.1", 2), ("settled", "ev/1.1", 2),
        ("settled", "ev/1", 1)]
    assert EventKind.RESUMED.value == "resumed"


def test_a_dict_with_mixed_key_types_gets_a_clear_encode_error() -> None:
    from vow.encoding import encode

    with pytest.raises(EncodeError, match=r"the result of x cannot be stored: a dict mixes key types"):
        encode({1: "a", "t": 2}, what="the result of x")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(), st.text(), st.booleans(), st.none(), st.floats(allow_nan=False)),
                max_size=6))
def test_call_arguments_encode_exactly_as_the_json_encoder_writes_them(args: list) -> None:
    """Ints and strings take a shortcut; a replay compares the text byte for byte with what earlier
    versions stored through the encoder, so the two must never differ."""
    import json

    from vow.encoding import encode_args

    reference = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode(args)
    assert encode_args(tuple(args), {}, what="f") == reference
    assert encode_args(tuple(args), {}, what=lambda: "f") == reference


def test_a_worker_keeps_going_when_the_store_fails_for_a_while() -> None:
    from vow.errors import StoreError
    from vow.stores.memory import MemoryStore

    class Flaky(MemoryStore):
        failures = 2

        def claimable(self, **kwargs):
            if self.failures:
                self.failures -= 1
                raise StoreError("database is busy (simulated)")
            return super().claimable(**kwargs)

    vow = Vow(store=Flaky())

    def leaf(ctx: LeafContext, x: int) -> int:
        return x + 1

    @vow.register
    def wf(ctx: Context, x: int):
        return (yield ctx.run(leaf, x))

    stop = threading.Event()
    worker = threading.Thread(target=vow.worker, kwargs={"stop": stop, "poll_interval": 0.01})
    try:
        vow.submit("w/1", wf, 41)
        worker.start()
        wait_until(lambda: vow.get("w/1").state is not State.PENDING, message="the worker gave up")
        assert vow.result("w/1") == 42 and vow.store.failures == 0
    finally:
        stop.set()
        worker.join(5)
        vow.close()


def test_a_busy_worker_claims_a_batch_of_runs_at_a_time_not_one_per_run_that_ended() -> None:
    """One claim transaction per CLAIM_BATCH runs that ended, not one per run (each claim holds the
    store's single writer): with every slot taken, the worker waits for a batch's worth of room."""
    from vow.client import CLAIM_BATCH
    from vow.stores.memory import MemoryStore

    class Counting(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.claims: list[int] = []

        def claim_many(self, roots, *args, **kwargs):
            self.claims.append(len(roots))
            return super().claim_many(roots, *args, **kwargs)

    store = Counting()
    vow = Vow(store=store)

    gate = threading.Semaphore(0)

    def leaf(ctx: LeafContext, x: int) -> int:
        gate.acquire(timeout=60)
        return x

    @vow.register
    def wf(ctx: Context, x: int):
        return (yield ctx.run(leaf, x))

    runs = 10 * CLAIM_BATCH + 7
    for i in range(runs):
        vow.submit(f"batch/{i}", wf, i)
    stop = threading.Event()
    # a poll interval longer than the test: only a batch's worth of room makes the worker claim
    worker = threading.Thread(target=vow.worker, kwargs={"stop": stop, "poll_interval": 3.0,
                                                         "max_running": 4 * CLAIM_BATCH})
    try:
        worker.start()
        for _ in range(runs):  # runs end one by one
            gate.release()
            time.sleep(0.001)
        wait_until(lambda: all(vow.get(f"batch/{i}").state is State.RESOLVED for i in range(runs)), 60,
                   "every run resolved")
    finally:
        stop.set()
        worker.join(10)
        vow.close()
    assert sum(store.claims) == runs
    assert store.claims == [CLAIM_BATCH] * (runs // CLAIM_BATCH) + [runs % CLAIM_BATCH]


def test_a_worker_that_loses_a_claim_to_another_worker_looks_again_at_once() -> None:
    """Workers sharing a store read the same oldest runs: one whose every run was taken by another
    worker between its read and its claim claims the next ones at once, not a poll interval later
    (it idled while runs piled up: two workers did 1.4x one, not 1.6x)."""
    from vow.client import CLAIM_BATCH
    from vow.stores.memory import MemoryStore

    class Raced(MemoryStore):
        """The first claim loses every run to a rival worker, which claims them just before it."""

        def __init__(self) -> None:
            super().__init__()
            self.claims: list[int] = []
            self.claimed_again = threading.Event()

        def claim_many(self, roots, owner, ttl, **kwargs):
            self.claims.append(len(roots))
            if len(self.claims) == 1:
                super().claim_many(roots, "rival-worker", 600.0)
            else:
                self.claimed_again.set()
            return super().claim_many(roots, owner, ttl, **kwargs)

    store = Raced()
    vow = Vow(store=store)

    def double(ctx: LeafContext, x: int) -> int:
        return 2 * x

    @vow.register
    def wf(ctx: Context, x: int):
        return (yield ctx.run(double, x))

    runs = 2 * CLAIM_BATCH
    for i in range(runs):
        vow.submit(f"raced/{i:03}", wf, i)
    stop = threading.Event()
    # a poll interval longer than the test: only looking again at once claims the second batch
    worker = threading.Thread(target=vow.worker, kwargs={"stop": stop, "poll_interval": 600.0,
                                                         "max_running": CLAIM_BATCH})
    try:
        worker.start()
        assert store.claimed_again.wait(30), f"the worker did not claim again after losing a race: {store.claims}"
        wait_until(lambda: all(vow.get(f"raced/{i:03}").state is State.RESOLVED
                               for i in range(CLAIM_BATCH, runs)), 60, "the second batch resolved")
        assert all(vow.get(f"raced/{i:03}").state is State.PENDING for i in range(CLAIM_BATCH))  # the rival's
    finally:
        stop.set()
        worker.join(10)
        vow.close()
    assert store.claims[:2] == [CLAIM_BATCH, CLAIM_BATCH]


def test_a_child_workflow_that_returns_before_its_branch_settles_cancels_the_branch(vow: Vow) -> None:
    gate = threading.Event()

    def slow(ctx: LeafContext) -> str:
        gate.wait(30)
        return "late"

    def child(ctx: Context):
        yield ctx.begin_run(slow)  # begun, never waited for
        return "child done"

    @vow.register
    def parent(ctx: Context):
        return (yield ctx.run(child))

    try:
        assert vow.run("early/1", parent) == "child done"
        assert vow.get("early/1.1").state is State.RESOLVED
        assert vow.get("early/1.1.1").state is State.CANCELED  # nobody waits for it any more
    finally:
        gate.set()


def test_a_run_timeout_times_out_the_run_and_its_pending_promises(vow: Vow) -> None:
    release = threading.Event()

    def slow(ctx: LeafContext) -> str:
        release.wait(30)
        return "late"

    @vow.register(timeout=0.3)
    def wf(ctx: Context):
        first = yield ctx.begin_run(slow)
        yield ctx.sleep(3600)
        return (yield first)

    try:
        with pytest.raises(PromiseTimeoutError):
            vow.run("to/1", wf)
        assert vow.get("to/1").state is State.TIMEDOUT
        assert {vow.get("to/1.1").state, vow.get("to/1.2").state} == {State.TIMEDOUT}
        with pytest.raises(PromiseTimeoutError):  # run(timeout=) overrides register(timeout=)
            vow.run("to/2", wf, timeout=0.2)
        assert vow.get("to/2").timeout - vow.get("to/2").created_at == pytest.approx(0.2)
    finally:
        release.set()


def test_a_client_wide_retry_policy_applies_to_leaves_without_their_own(tmp_path: Path) -> None:
    calls: list[int] = []

    def flaky(ctx: LeafContext) -> None:
        calls.append(ctx.attempt)
        raise TransientError("down")

    with Vow(store="memory:", retry=Constant(delay=0.01, max_attempts=3)) as vow:
        @vow.register
        def wf(ctx: Context):
            yield ctx.run(flaky)

        with pytest.raises(TransientError):
            vow.run("cr/1", wf)
    assert calls == [1, 2, 3]


def test_a_throttled_leaf_waits_durably_and_runs_again_as_the_same_attempt(vow: Vow) -> None:
    seen: list[int] = []

    def limited(ctx: LeafContext) -> int:
        seen.append(ctx.attempt)
        if len(seen) < 3:
            raise Throttled(wait=0.05)
        return len(seen)

    @vow.register
    def wf(ctx: Context):
        return (yield ctx.run(limited))

    assert vow.run("th/1", wf) == 3
    assert seen == [1, 1, 1]  # waiting for a token is not a failed attempt
    waits = [(r.id, r.func, r.state) for r in vow.store.children("th/1.1")]
    assert waits == [("th/1.1.throttle.1.1", "rate limit wait", State.RESOLVED),
                     ("th/1.1.throttle.1.2", "rate limit wait", State.RESOLVED)]
    assert vow.get("th/1.1").attempt == 1


def test_a_leaf_throttled_for_ever_fails_at_once_instead_of_waiting_for_ever(vow: Vow) -> None:
    """``Throttled(wait=inf)`` (a leaf's own limiter saying "never") held the branch with a timer that
    never fires: a run without a timeout never ended."""
    def never(ctx: LeafContext) -> int:
        raise Throttled("quota gone", wait=float("inf"))

    @vow.register
    def wf(ctx: Context):
        return (yield ctx.run(never))

    with pytest.raises(PermanentError, match=r"quota gone.*wait for ever"):
        vow.begin_run("th/inf", wf).result(timeout=10)
    assert [r.func for r in vow.store.children("th/inf.1")] == []  # no timer was stored


def test_the_store_clock_offset_is_taken_from_the_quickest_round_trip() -> None:
    from vow.engine.core import store_clock

    class SlowServer:
        """A server 30 s ahead; its first answers come late, after a slow round trip."""

        def __init__(self) -> None:
            self.delays = [0.05, 0.04, 0.03, 0.0, 0.02, 0.05]

        def now(self) -> float:
            delay = self.delays.pop(0) if self.delays else 0.0
            time.sleep(delay / 2)  # the server reads its clock half way through the round trip
            theirs = time.time() + 30.0
            time.sleep(delay / 2)
            return theirs

    clock = store_clock(SlowServer())
    assert abs(clock() - (time.time() + 30.0)) < 0.005  # not skewed by a slow round trip's half length

    class SameClock:
        def now(self) -> float:
            return time.time()

    assert store_clock(SameClock()) is time.time  # SQLite and memory: no shift, no extra work per read


def test_a_handle_is_one_object_per_promise_and_comes_only_from_the_engine(vow: Vow) -> None:
    import copy

    from vow import Handle

    seen = {}

    def double(ctx: LeafContext, n: int) -> int:
        return 2 * n

    def wf(ctx: Context):
        h = yield ctx.begin_run(double, 21)
        seen["copies"] = (copy.copy(h) is h, copy.deepcopy(h) is h, repr(h))
        first = yield copy.copy(h)  # a copy is the handle itself: it is woken with it
        both = yield ctx.all([copy.deepcopy(h), h])
        try:
            Handle()
        except TypeError as exc:
            seen["by hand"] = str(exc)
        return [first, both]

    assert vow.run("handles/1", wf, timeout=30) == [42, [42, 42]]
    assert seen["copies"][:2] == (True, True) and seen["copies"][2].startswith("<Handle handles/1.1 ")
    assert "cannot be made by hand" in seen["by hand"]


def test_a_handle_of_another_run_is_refused_where_it_is_yielded(vow: Vow) -> None:
    """A handle smuggled to another run (a global, a closure) would tie that run to a promise it
    cannot find again after a restart: yielding it fails, naming both runs."""
    shared: dict[str, Any] = {}
    released = threading.Event()

    def waits(ctx: LeafContext) -> int:
        released.wait(WAIT)
        return 7

    def owner(ctx: Context):
        shared["handle"] = yield ctx.begin_run(waits)
        return (yield shared["handle"])

    def borrower(ctx: Context, how: str):
        handle = shared["handle"]
        try:
            return (yield handle if how == "handle" else ctx.all([handle]))
        except TypeError as exc:
            return str(exc)

    first = vow.begin_run("owner", owner)
    wait_until(lambda: "handle" in shared)
    for how in ("handle", "all"):
        refused = vow.run(f"borrower/{how}", borrower, how, timeout=30)
        assert "owner.1" in refused and f"borrower/{how}" in refused and "belongs to run 'owner'" in refused
    released.set()
    assert first.result(WAIT) == 7


def test_one_id_given_to_two_different_calls_fails_the_second_call(vow: Vow) -> None:
    """``.options(id=...)`` names one call: the same id again for the same function is that call
    (its stored outcome), but for another function it is a mistake in the workflow. The second call
    fails where it is made; before, it took the first call's result, or stopped the run for good."""
    def charge(ctx: LeafContext) -> str:
        return "charged"

    def refund(ctx: LeafContext) -> str:
        return "refunded"

    def after_it_settled(ctx: Context):
        first = yield ctx.run(charge).options(id=f"{ctx.id}.payment")
        again = yield ctx.run(charge).options(id=f"{ctx.id}.payment")  # the same call: its outcome
        try:
            yield ctx.run(refund).options(id=f"{ctx.id}.payment")
        except DuplicateIdError as exc:
            return [first, again, str(exc)]
        return None

    def while_it_runs(ctx: Context):
        first = yield ctx.begin_run(charge).options(id=f"{ctx.id}.payment")
        try:
            yield ctx.begin_run(refund).options(id=f"{ctx.id}.payment")
        except DuplicateIdError as exc:
            return [(yield first), str(exc)]
        return None

    first, again, error = vow.run("dup/settled", after_it_settled, timeout=30)
    assert first == again == "charged"
    assert "'dup/settled.payment'" in error and "charge" in error and "refund" in error
    result, error = vow.run("dup/live", while_it_runs, timeout=30)
    assert result == "charged" and "'dup/live.payment'" in error


def test_an_id_met_again_after_its_call_settled_takes_its_outcome_without_running_again(vow: Vow) -> None:
    """The same id again, once the first call has settled, is that call: the leaf does not run a second
    time. It did: the workflow's second call comes in the round that settles the first, so the store
    found the id pending (this round's settle not applied yet) and the engine started the leaf again.
    Counted at the sink, also with other arguments (the stored outcome stands) and across rounds."""
    sent: list[tuple[str, int]] = []

    def send(ctx: LeafContext, n: int) -> int:
        sent.append((ctx.id, n))
        return n

    def twice(ctx: Context, second: int):
        first = yield ctx.run(send, 1).options(id=f"{ctx.id}.email")
        again = yield ctx.run(send, second).options(id=f"{ctx.id}.email")
        yield ctx.sleep(0.01)  # a later round: the first call's settle is committed by now
        late = yield ctx.run(send, 1).options(id=f"{ctx.id}.email")
        return [first, again, late]

    def inner(ctx: Context, n: int):
        return (yield ctx.run(send, n))

    def child_twice(ctx: Context):
        first = yield ctx.run(inner, 1).options(id=f"{ctx.id}.child")
        return [first, (yield ctx.run(inner, 1).options(id=f"{ctx.id}.child"))]  # its body ran again too

    vow.register(inner)
    assert vow.run("again/1", twice, 1, timeout=30) == [1, 1, 1]
    assert vow.run("again/2", twice, 2, timeout=30) == [1, 1, 1]
    assert vow.run("again/3", child_twice, timeout=30) == [1, 1]
    assert sent == [("again/1.email", 1), ("again/2.email", 1), ("again/3.child.1", 1)]
    assert vow.get("again/2.email").value == "1"


def test_a_child_workflow_given_an_earlier_calls_id_starts_nothing(vow: Vow) -> None:
    """The second call with a used id is a child workflow: its body starts before the commit that
    finds the id taken, so what it started must be stopped before any of its leaves runs."""
    ran: list[str] = []

    def charge(ctx: LeafContext) -> str:
        return "charged"

    def side_effect(ctx: LeafContext) -> str:
        ran.append(ctx.id)
        return "sent"

    def refund(ctx: Context):
        return (yield ctx.run(side_effect))

    def pays(ctx: Context):
        yield ctx.run(charge).options(id=f"{ctx.id}.payment")
        try:
            yield ctx.run(refund).options(id=f"{ctx.id}.payment")
        except DuplicateIdError:
            return "refused"
        return None

    assert vow.run("dup/child", pays, timeout=30) == "refused"
    assert ran == []
    assert {r.id: r.state for r in vow.store.tree("dup/child") if r.id.startswith("dup/child.payment.")} in (
        {}, {"dup/child.payment.1": State.CANCELED})  # made in the same commit, then canceled


def test_a_caller_cancelling_as_its_run_finishes_leaves_the_engine_running(vow: Vow) -> None:
    """``await handle`` cancelled (``asyncio.wait_for`` timing out) cancels the run's future from the
    caller's thread. A cancel landing between the engine's ``done()`` check and its answer must cost
    that caller its answer, not every run of the process: the engine answers, and runs, the others."""
    gate = threading.Event()

    def held(ctx: LeafContext) -> int:
        assert gate.wait(WAIT)
        return 1

    def flow(ctx: Context):
        return (yield ctx.run(held))

    handles = [vow.begin_run(f"cancelled/{i}", flow) for i in range(2)]
    wait_until(lambda: all(vow.get(f"cancelled/{i}.1") for i in range(2)), WAIT)
    future = handles[0]._future
    checked = future.done

    def cancelled_right_after_the_check() -> bool:  # the caller's cancel lands in the window, every time
        answer = checked()
        future.cancel()
        return answer

    future.done = cancelled_right_after_the_check  # type: ignore[method-assign]
    gate.set()
    wait_until(future.cancelled, WAIT)  # the engine came to answer it
    assert handles[1].result(WAIT) == 1
    assert vow.run("after/1", flow) == 1
