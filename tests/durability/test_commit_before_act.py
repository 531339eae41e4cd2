"""Commit before act: a workflow never goes on from a transition that was not stored.

Each test is one way a promise settles other than by its own leaf — a deadline, a resolve or a
cancel from another process — or a value or exception that must come back the same after a
restart, run with real processes and a real SQLite file, and judged from the store and the sink.
"""

from __future__ import annotations

import json
import random
import textwrap
import threading
from pathlib import Path

import pytest

from tests.durability.support import app, importable
from tests.support import TIMEOUT, finish, kill, read_line, spawn, vow_command
from vow import CanceledError, Context, EncodeError, LeafContext, PromiseTimeoutError, Vow
from vow.records import State
from vow.testing import wait_until

RACES = 120

RESOLVER = textwrap.dedent("""
    import sys, time
    from vow import Vow, PromiseTimeoutError
    with Vow(store=sys.argv[1]) as vow:
        print("ready", flush=True)
        for line in sys.stdin:
            pid, when = line.split()
            time.sleep(max(0.0, float(when) - time.time()))
            try:
                vow.resolve(pid, "outside")
                print(pid, "resolved", flush=True)
            except PromiseTimeoutError:
                print(pid, "timedout", flush=True)
""")


def _marks(sink: Path) -> list[tuple[str, str]]:
    if not sink.exists():
        return []
    return [tuple(line.split(" ", 1)) for line in sink.read_text().splitlines()]  # type: ignore[misc]


def test_a_resolve_racing_the_deadline_and_the_workflows_path_agree_with_the_store(tmp_path: Path) -> None:
    """A workflow waits on ``ctx.promise(timeout=)``; another process resolves it around the deadline."""
    store = tmp_path / "vow.sqlite"
    sink = tmp_path / "sink"

    def mark(ctx: LeafContext, path: str) -> str:
        with sink.open("a") as f:
            f.write(f"{ctx.root_id} {path}\n")
        return path

    def gate(ctx: Context):
        promise = yield ctx.promise(f"{ctx.id}.gate", timeout=0.3)
        try:
            yield promise
            path = "resolved"
        except PromiseTimeoutError:
            path = "timedout"
        yield ctx.run(mark, path)  # the path's own effect: it must agree with the stored state
        return path

    resolver = spawn("-c", RESOLVER, f"sqlite:{store}", stdin=True)
    try:
        assert resolver.stdout is not None and resolver.stdin is not None
        assert read_line(resolver).strip() == "ready"
        results: dict[str, str] = {}
        rng = random.Random(7)
        with Vow(store=f"sqlite:{store}", poll_interval=0.01) as vow:
            vow.register(gate)
            for start in range(0, RACES, 20):
                runs = {f"race/{i}": vow.begin_run(f"race/{i}", gate) for i in range(start, start + 20)}
                for rid in runs:
                    record = wait_until(lambda rid=rid: vow.get(f"{rid}.gate"), message=f"{rid}.gate stored")
                    # most within 30 ms of the deadline; a few well before or after, so both paths happen
                    offset = rng.choice([-0.2, 0.2]) if rng.random() < 0.2 else rng.uniform(-0.03, 0.03)
                    resolver.stdin.write(f"{rid}.gate {record.timeout + offset}\n")
                    resolver.stdin.flush()
                for rid, handle in runs.items():
                    results[rid] = handle.result(timeout=60)
            said = dict(read_line(resolver).split() for _ in range(RACES))
            stored = {rid: vow.get(f"{rid}.gate").state for rid in results}
        finish(resolver)  # its input closed: it reads to the end and exits
    finally:
        kill(resolver)  # nothing, once it finished; else no process or pipe left behind
    marks = _marks(sink)
    disagreements = []
    for rid, path in results.items():
        state = stored[rid]
        told = said[f"{rid}.gate"]
        if {State.RESOLVED: "resolved", State.TIMEDOUT: "timedout"}.get(state) != path or told != path \
                or [p for r, p in marks if r == rid] != [path]:
            disagreements.append((rid, state.value, path, told, [p for r, p in marks if r == rid]))
    assert disagreements == []
    paths = list(results.values())
    assert "resolved" in paths and "timedout" in paths, paths  # both sides of the race happened


def test_a_late_resolve_after_a_crash_is_refused_and_the_resumed_run_times_out(tmp_path: Path) -> None:
    store = tmp_path / "vow.sqlite"
    proc = spawn("-c", LATE_APP, f"sqlite:{store}", env=importable())
    with Vow(store=f"sqlite:{store}") as vow:
        try:
            record = wait_until(lambda: vow.get("late/1.gate"), 60, "the gate stored", proc=proc)
        finally:
            kill(proc)
        wait_until(lambda: vow.store.now() > record.timeout + 0.05, message="the deadline to pass")
        with pytest.raises(PromiseTimeoutError):
            vow.resolve("late/1.gate", "late")  # nobody runs it: the store judges the deadline itself
        assert vow.get("late/1.gate").state is State.TIMEDOUT
        vow.register(_late_gate, name="gate")
        assert vow.run("late/1", "gate") == "timed out"


LATE_APP = textwrap.dedent("""
    import sys
    from vow import Vow
    from tests.durability.test_commit_before_act import _late_gate
    with Vow(store=sys.argv[1]) as vow:
        vow.register(_late_gate, name="gate")
        vow.run("late/1", "gate")
""")


def _late_gate(ctx: Context):
    try:
        return (yield (yield ctx.promise("late/1.gate", timeout=1.0)))
    except PromiseTimeoutError:
        return "timed out"


def _cancel_from_another_process(store: Path, pid: str) -> None:
    done = vow_command("cancel", pid, "--store", f"sqlite:{store}")
    assert done.returncode == 0, done.stderr


def test_a_canceled_child_workflow_stops_and_its_parent_sees_the_stored_cancel(tmp_path: Path) -> None:
    store = tmp_path / "vow.sqlite"
    started: list[int] = []
    release = threading.Event()

    def step(ctx: LeafContext, k: int) -> int:
        started.append(k)
        if k == 2:
            release.wait(60)  # in flight when the cancel lands
        return k

    def steps(ctx: Context):
        total = 0
        for k in range(1, 6):
            total += yield ctx.run(step, k)
        return total

    def parent(ctx: Context):
        try:
            return (yield ctx.run(steps))
        except CanceledError:
            return "child canceled"

    with Vow(store=f"sqlite:{store}", poll_interval=0.01) as vow:
        vow.register(parent)
        handle = vow.begin_run("par/1", parent)
        wait_until(lambda: 2 in started, message="step 2 to start")
        _cancel_from_another_process(store, "par/1.1")
        assert handle.result(timeout=60) == "child canceled"  # while step 2 still runs
        release.set()
        assert vow.get("par/1.1").state is State.CANCELED
        assert vow.get("par/1.1.2").state is State.CANCELED  # its late result is discarded
        wait_until(lambda: vow._engine.leaves.in_flight() == 0, message="step 2 to return")
        assert started == [1, 2]  # nothing started after the cancel, nothing retried
        assert vow.get("par/1.1.2").state is State.CANCELED and vow.get("par/1.1.3") is None
        assert json.loads(vow.get("par/1").value) == "child canceled"


def test_a_canceled_leaf_or_sleep_wakes_the_workflow_with_canceled_error(tmp_path: Path) -> None:
    store = tmp_path / "vow.sqlite"
    release = threading.Event()

    def slow(ctx: LeafContext) -> str:
        release.wait(60)
        return "done"

    def waits(ctx: Context, what: str):
        call = ctx.run(slow) if what == "leaf" else ctx.sleep(3600)
        try:
            return (yield call)
        except CanceledError:
            return f"{what} canceled"

    with Vow(store=f"sqlite:{store}", poll_interval=0.01) as vow:
        vow.register(waits)
        leaf_run, sleep_run = vow.begin_run("w/leaf", waits, "leaf"), vow.begin_run("w/sleep", waits, "sleep")
        wait_until(lambda: vow._engine.leaves.in_flight() == 1 and vow.get("w/sleep.1"), message="both waiting")
        _cancel_from_another_process(store, "w/leaf.1")
        _cancel_from_another_process(store, "w/sleep.1")
        assert leaf_run.result(timeout=60) == "leaf canceled"  # the leaf is still running: not waited for
        assert sleep_run.result(timeout=60) == "sleep canceled"
        release.set()
        wait_until(lambda: vow._engine.leaves.in_flight() == 0, message="the leaf to return")
        assert vow.get("w/leaf.1").state is State.CANCELED and vow.get("w/leaf.1").attempt == 1


def _deep(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def test_a_value_that_cannot_be_stored_fails_its_own_call_at_once(memory_vow: Vow) -> None:
    def deep_leaf(ctx: LeafContext) -> list:
        return _deep(100_000)

    def uses_leaf(ctx: Context):
        return (yield ctx.run(deep_leaf))

    def returns_deep(ctx: Context):
        yield ctx.sleep(0)
        return _deep(100_000)

    memory_vow.register(uses_leaf)
    memory_vow.register(returns_deep)
    with pytest.raises(EncodeError, match="deep_leaf"):
        memory_vow.run("deep/leaf", uses_leaf)
    assert memory_vow.get("deep/leaf.1").state is State.REJECTED and memory_vow.get("deep/leaf.1").attempt == 1
    with pytest.raises(EncodeError, match="returns_deep"):
        memory_vow.run("deep/result", returns_deep)
    assert memory_vow.get("deep/result").state is State.REJECTED
    with pytest.raises(EncodeError):  # the same id again answers from the store, no hang
        memory_vow.run("deep/result", returns_deep)


@pytest.mark.parametrize("bad", ["id", "tag"])
def test_a_lone_surrogate_fails_only_its_own_run_in_a_shared_commit(memory_vow: Vow, bad: str) -> None:
    def leaf(ctx: LeafContext) -> str:
        return "ok"

    def flow(ctx: Context, poison: bool):
        call = ctx.run(leaf)
        if poison:
            call = call.options(id=f"{ctx.id}.\ud800") if bad == "id" else call.options(tags={"k": "\udfff"})
        return (yield call)

    memory_vow.register(flow)
    gate = threading.Event()
    memory_vow._engine.call_soon(gate.wait)  # hold the engine: every start lands in one round and one commit
    handles = [memory_vow.begin_run(f"s/{i}", flow, i == 3) for i in range(6)]
    wait_until(lambda: memory_vow._engine.inbox.qsize() >= 6, message="the starts queued")
    gate.set()
    for i, handle in enumerate(handles):
        if i == 3:
            with pytest.raises(EncodeError, match="surrogate"):
                handle.result(timeout=30)
        else:
            assert handle.result(timeout=30) == "ok"


def test_a_workflow_gets_the_same_exception_live_and_after_a_restart(tmp_path: Path) -> None:
    store, sink = tmp_path / "vow.sqlite", tmp_path / "sink"
    proc = app("transitions_app", str(store), str(sink), "http_status", "http/1")
    with Vow(store=f"sqlite:{store}") as vow:
        try:
            wait_until(lambda: vow.get("http/1.gate"), 60, "the gate stored", proc=proc)
        finally:
            kill(proc)
        [(_, live)] = _marks(sink)
        assert live == "live HTTPStatusError 503 7"
        resumed = app("transitions_app", str(store), str(sink), "http_status", "http/1")
        try:
            wait_until(lambda: vow.store.lease("http/1").owner not in ("",) and vow.store.lease_free("http/1") is False,
                       60, "the resumed run to hold its lease", proc=resumed)
            vow.resolve("http/1.gate", None)
            out, _ = finish(resumed)
        finally:
            kill(resumed)
    assert out.strip() == repr("HTTPStatusError 503 7")  # computed again from the stored error
    assert [m for _, m in _marks(sink)] == ["live HTTPStatusError 503 7"]  # the note was not sent again


def test_a_replay_that_calls_a_step_with_other_arguments_raises_and_alters_nothing(tmp_path: Path) -> None:
    store, sink = tmp_path / "vow.sqlite", tmp_path / "sink"
    proc = app("transitions_app", str(store), str(sink), "order", "order/1")
    with Vow(store=f"sqlite:{store}") as vow:
        try:
            wait_until(lambda: vow.get("order/1.gate"), 60, "the gate stored", proc=proc)
        finally:
            kill(proc)
        before = vow.store.tree("order/1")
        changed = app("transitions_app", str(store), str(sink), "order", "order/1", "2")
        out, err = changed.communicate(timeout=120)
        assert changed.returncode != 0
        assert "NonDeterminismError" in err and "order/1.1" in err and "[100]" in err and "[150]" in err
        assert vow.store.tree("order/1") == before  # nothing stored was altered
        # the change guarded by ctx.patched: the old run keeps its path, a new run takes the new one
        vow.resolve("order/1.gate", None)
        resumed = app("transitions_app", str(store), str(sink), "order", "order/1", "patched")
        assert finish(resumed)[0].strip() == "150"
        fresh = app("transitions_app", str(store), str(sink), "order", "order/2", "patched")
        try:
            wait_until(lambda: vow.get("order/2.gate"), 60, "the new run's gate", proc=fresh)
            vow.resolve("order/2.gate", None)
            assert finish(fresh)[0].strip() == "200"
        finally:
            kill(fresh)
    assert [m for r, m in _marks(sink)] == ["charge 100", "charge 50", "charge 150", "charge 50"]


def test_a_run_started_as_a_script_is_resumed_by_a_worker_importing_the_module(tmp_path: Path) -> None:
    store = tmp_path / "vow.sqlite"
    (tmp_path / "shop.py").write_text(textwrap.dedent(f"""
        import sys
        from vow import Vow

        vow = Vow(store={f'sqlite:{store}'!r})

        def invoice(ctx, n):
            return n * 2

        @vow.register
        def order(ctx, n):
            total = yield ctx.run(invoice, n)
            yield (yield ctx.promise(f"{{ctx.id}}.gate"))
            return total

        if __name__ == "__main__":
            vow.run("shop/1", order, 21)
    """))
    script = spawn("shop.py", cwd=tmp_path)
    with Vow(store=f"sqlite:{store}") as vow:
        try:
            wait_until(lambda: vow.get("shop/1.gate"), 60, "the gate stored", proc=script)
        finally:
            kill(script)
        assert vow.get("shop/1.1").func == "shop.invoice"  # its import name, not "invoice"
        worker = spawn("-m", "vow", "worker", "--app", "shop", "--store", f"sqlite:{store}", "--poll", "0.05",
                       cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
        try:
            wait_until(lambda: not vow.store.lease_free("shop/1"), 60, "the worker to take the run", proc=worker)
            vow.resolve("shop/1.gate", None)
            wait_until(lambda: vow.get("shop/1").settled, 60, "the run to finish", proc=worker)
            assert vow.result("shop/1") == 42
        finally:
            worker.terminate()
            worker.communicate(timeout=TIMEOUT)  # reaped, its pipes read to the end and closed

