"""Failure paths of the engine's commits: a value is reported only once it is stored; a root whose
commit is refused stops alone; a finished run leaves nothing behind."""

from __future__ import annotations

import threading

import pytest

from vow import Vow
from vow.errors import LeaseLostError, PromiseTimeoutError, VowError
from vow.records import Batch, Lease, Settle, State
from vow.stores.memory import MemoryStore
from vow.testing import wait_until


class RecordingStore(MemoryStore):
    """A memory store that remembers which roots its commits refused (and can fail some commits)."""

    def __init__(self, fail_settles_of: str | None = None) -> None:
        super().__init__()
        self.refused: list[str] = []
        self.refused_now = threading.Event()
        self.fail_settles_of = fail_settles_of

    def apply(self, batch: Batch):
        if self.fail_settles_of is not None and any(s.id == self.fail_settles_of for s in batch.settles):
            raise RuntimeError("disk full")
        try:
            return super().apply(batch)
        except LeaseLostError as exc:
            self.refused.extend(exc.roots)
            self.refused_now.set()
            raise


def _steal(store: MemoryStore, root: str) -> None:
    """Another worker takes ``root``'s lease: one on another machine, after this worker's lease expired
    while it was paused (the store could not tell this worker was alive)."""
    current = store.lease(root)
    assert current is not None
    store._leases[root] = Lease(root, "elsewhere:1:0123456789abcdef", current.token + 1, store.now() + 1000)


def _hold_engine(v: Vow) -> threading.Event:
    """Keep the engine thread busy until the returned event is set (its inbox fills meanwhile)."""
    gate = threading.Event()
    v._engine.call_soon(gate.wait)
    return gate


def test_a_root_whose_lease_was_taken_reports_only_the_stored_result() -> None:
    store = RecordingStore()
    release, started = threading.Event(), threading.Event()

    def leaf(ctx):
        started.set()
        release.wait(30)
        return 1

    def wf(ctx):
        x = yield ctx.run(leaf)
        return x + 1

    with Vow(store=store, poll_interval=0.01) as v:
        handle = v.begin_run("r1", wf)
        assert started.wait(30)
        _steal(store, "r1")
        release.set()
        assert store.refused_now.wait(30), "the commit of the leaf's result was not refused"
        assert store.refused == ["r1"]
        assert not handle.done(), "the caller got a value that was never stored"
        assert store.get("r1").state is State.PENDING and store.get("r1.1").state is State.PENDING
        # the thief finishes the run: the caller gets the stored result, not the local one
        store.apply(Batch(settles=[Settle("r1", State.RESOLVED, "42", store.now())], outside=True))
        assert handle.result(timeout=30) == 42


def test_a_refused_root_does_not_hold_back_the_others_in_the_same_commit() -> None:
    store = RecordingStore()
    release = threading.Event()
    started = []

    def leaf(ctx):
        started.append(ctx.root_id)
        release.wait(30)
        return 1

    def custom(ctx):
        return 5
        yield  # a generator

    def wf1(ctx):
        yield ctx.run(leaf)
        return (yield ctx.run(custom).options(id="custom-child"))

    def wf2(ctx):
        return (yield ctx.run(leaf))

    with Vow(store=store, poll_interval=0.01) as v:
        h1, h2 = v.begin_run("r1", wf1), v.begin_run("r2", wf2)
        wait_until(lambda: len(started) == 2, message="both leaves to start")
        _steal(store, "r1")
        gate = _hold_engine(v)
        release.set()
        # both outcomes wait in the inbox, so they land in one round and one group commit
        wait_until(lambda: v._engine.inbox.qsize() >= 2, message="both leaves to report")
        gate.set()
        assert h2.result(timeout=30) == 1
        assert store.get("r2").state is State.RESOLVED
        assert store.refused == ["r1"]
        assert store.get("r1").state is State.PENDING and store.get("r1.1").state is State.PENDING
        assert store.get("custom-child") is None  # r1's writes were dropped, custom ids included
        assert not h1.done()


def test_a_store_failure_fails_only_the_root_whose_commit_failed() -> None:
    store = RecordingStore(fail_settles_of="r3")

    def leaf(ctx):
        return 1

    def wf(ctx):
        x = yield ctx.run(leaf)
        return x + 1

    with Vow(store=store) as v:
        bad, good = v.begin_run("r3", wf), v.begin_run("r4", wf)
        with pytest.raises(RuntimeError, match="disk full"):
            bad.result(timeout=30)
        assert good.result(timeout=30) == 2
        assert store.get("r3").state is State.PENDING  # never reported as done: it is not stored
        assert store.get("r4").state is State.RESOLVED


def test_a_finished_run_leaves_nothing_behind() -> None:
    def quick(ctx):
        return "fast"

    def wf(ctx):
        approval = yield ctx.promise("approval")
        fast = yield ctx.begin_run(quick)
        return (yield ctx.first([approval, fast]))

    with Vow(store="memory:", poll_interval=0.01) as v:
        assert v.run("w1", wf) == "fast"
        assert v.store.get("approval").state is State.CANCELED  # nobody waits for it any more
        engine = v._engine
        assert engine._roots == {} and engine._remote == {} and engine._orphans == {}
        assert engine.keeper.forget("w1") is None  # no lease is renewed for it
        assert engine.store.lease("w1").owner == ""  # released


def test_a_replay_keeps_the_outcome_of_a_leaf_whose_commit_was_refused() -> None:
    """A leaf's result and a deadline land in one round; the deadline's timeout loses to a resolve
    stored from outside, so the whole round is refused and the run replayed: the leaf must not run
    again (its outcome is carried into the replay)."""
    release, started = threading.Event(), []

    def leaf(ctx):
        started.append(ctx.attempt)
        release.wait(30)
        return "L"

    def wf(ctx):
        gate = yield ctx.promise(f"{ctx.id}.gate", timeout=0.5)
        branch = yield ctx.begin_run(leaf)
        try:
            seen = yield gate
        except PromiseTimeoutError:
            seen = "timed out"
        return [seen, (yield branch)]

    with Vow(store="memory:", poll_interval=60) as v:  # the engine hears of the resolve only by its commit
        handle = v.begin_run("rp/1", wf)
        wait_until(lambda: started, message="the leaf to start")
        held = _hold_engine(v)
        release.set()
        wait_until(lambda: v._engine.inbox.qsize() >= 1, message="the leaf's answer queued")
        v.store.settle("rp/1.gate", State.RESOLVED, '"outside"', outside=True)
        deadline = v.get("rp/1.gate").timeout
        wait_until(lambda: v.store.now() > deadline, message="the gate's deadline to pass")
        held.set()
        assert handle.result(timeout=30) == ["outside", "L"]
    assert started == [1]


class BatchSizes(MemoryStore):
    """A memory store that records how many promises each commit creates."""

    def __init__(self) -> None:
        super().__init__()
        self.creates: list[int] = []

    def apply(self, batch: Batch):
        self.creates.append(len(batch.creates))
        return super().apply(batch)


@pytest.mark.parametrize("inline_leaves", [True, False])
def test_a_wide_fan_out_commits_its_promises_in_chunks_each_before_its_leaves(inline_leaves: bool) -> None:
    """A workflow that makes 2,500 branches without waiting commits them a thousand at a time (their
    records do not all wait in memory for one commit, and pool leaves start early), and still no
    leaf runs before its own promise is stored."""
    store = BatchSizes()
    unstored_at_start: list[str] = []

    def leaf(ctx, i):
        if store.get(ctx.id) is None:
            unstored_at_start.append(ctx.id)
        return i

    def wide(ctx, n):
        handles = []
        for i in range(n):
            handles.append((yield ctx.begin_run(leaf, i)))
        return sum((yield ctx.all(handles)))

    with Vow(store=store, inline_leaves=inline_leaves) as v:
        assert v.run("wide/1", wide, 2500) == sum(range(2500))
    assert sum(store.creates) == 2501  # the root and its branches, each once
    assert max(store.creates) == 1000
    assert unstored_at_start == []


def test_a_store_that_keeps_failing_is_reported_once_not_at_every_look(tmp_path, caplog) -> None:
    """A server restarting for half a minute made the watcher log a warning with a traceback at
    each look, 20 a second: 600 tracebacks. Now one line when it starts failing, and one when it
    works again."""
    import logging

    from vow.engine.watcher import Watcher
    from vow.errors import StoreError
    from vow.stores.sqlite import SQLiteStore

    store = SQLiteStore(str(tmp_path / "vow.sqlite"))
    real_changes = store.changes
    looks = 0
    recovered = threading.Event()

    def changes(since):  # the store is down for the first 40 looks after the watcher starts
        nonlocal looks
        looks += 1
        if 1 < looks <= 41:
            raise StoreError("SQLite store: the server is restarting")
        if looks > 45:
            recovered.set()
        return real_changes(since)

    store.changes = changes  # type: ignore[method-assign]
    watcher = Watcher(store, 0.005, on_changes=lambda feed: None, on_remote=lambda records, free: None)
    with caplog.at_level(logging.INFO, logger="vow.engine"):
        watcher.start()
        try:
            assert recovered.wait(30)
        finally:
            watcher.stop()
            store.close()
    said = [r for r in caplog.records if "watching the store" in r.getMessage()]
    assert [(r.levelname, r.exc_info) for r in said] == [("WARNING", None), ("INFO", None)], [
        r.getMessage() for r in said]
    assert said[0].getMessage() == ("watching the store failed: SQLite store: the server is restarting; looking "
                                    "again every 0.005 s")
    assert said[1].getMessage() == "watching the store works again, after 40 failed looks"


def test_after_the_engine_stops_on_an_internal_error_runs_fail_at_once_instead_of_hanging(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    def add(ctx, a):
        return a + 1

    def wf(ctx):
        return (yield ctx.run(add, 1))

    with Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}") as v:
        v.register(wf)

        def broken(msg: object) -> None:
            raise SystemExit("an engine bug")  # stands for any error that escapes the engine's loop

        monkeypatch.setattr(v._engine, "_handle", broken)
        # before the fix: the run being handled and every later one waited for ever
        for run_id in ("first", "second"):
            with pytest.raises(VowError, match="internal error"):
                v.begin_run(run_id, wf).result(30)
