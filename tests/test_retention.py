"""Retention: ``Vow.prune`` through the real engine, SQLite's space and log, ``AutoPrune``.

The store rules themselves (whole runs only, never a pending one, the states asked for, dry
runs) are in the contract suite, :class:`vow.testing.StoreContract`; here they are checked
again end to end, counting at the store.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from vow import CanceledError, Context, LeafContext, PermanentError, State, Vow
from vow.errors import ConfigError
from vow.records import Batch, Kind
from vow.retention import AutoPrune, parse_duration, parse_states
from vow.stores.sqlite import SQLiteStore
from vow.testing import make_record, wait_until


def leaf(ctx: LeafContext, value: str) -> str:
    return value


def fails(ctx: LeafContext) -> str:
    raise PermanentError("no such recipient")


def fan_out(ctx: Context, n: int):
    handles = []
    for i in range(n):
        handles.append((yield ctx.begin_run(leaf, f"v{i}").options(id=f"{ctx.id}.{i}")))
    return (yield ctx.all(handles))


def failing(ctx: Context):
    return (yield ctx.run(fails))


def gated(ctx: Context):
    """Settles two children, then waits for an outside promise: a pending run with old settled parts."""
    first = yield ctx.run(leaf, "a")
    second = yield ctx.run(leaf, "b")
    approval = yield (yield ctx.promise(f"{ctx.id}.approval"))
    return [first, second, approval]


@pytest.mark.parametrize(("text", "seconds"), [
    ("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("45s", 45), ("2w", 14 * 86400), ("1d12h", 129600),
    ("1.5h", 5400), (" 7D ", 7 * 86400), ("0s", 0), (3600, 3600.0)])
def test_durations(text, seconds) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "30x", "d", "", "-3d", "3 d", "1d-2h"])
def test_a_bad_duration_says_what_is_allowed(text) -> None:
    with pytest.raises(ConfigError, match=r"--older-than: .* is not a duration; write a number and a unit, like 30d"):
        parse_duration(text, what="--older-than")


def test_state_names() -> None:
    assert parse_states("succeeded") == {State.RESOLVED}
    assert parse_states("failed,canceled") == {State.REJECTED, State.TIMEDOUT, State.CANCELED}
    assert parse_states(None) == parse_states("succeeded,failed,canceled") == {s for s in State if s.settled}
    assert parse_states(["resolved", State.TIMEDOUT]) == {State.RESOLVED, State.TIMEDOUT}
    with pytest.raises(ConfigError, match=r"--state: unknown state 'pending' \(a pending run is never pruned\); "
                                          r"allowed: resolved, rejected, timedout, canceled "
                                          r"\(or succeeded, failed, cancelled\)"):
        parse_states("succeeded,pending", what="--state")
    with pytest.raises(ConfigError, match="unknown state 'done'"):
        parse_states("done")


@pytest.fixture
def vow(tmp_path: Path):
    with Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}") as client:
        for fn in (fan_out, failing, gated):
            client.register(fn)
        yield client


def wait_for_record(vow: Vow, pid: str) -> None:
    wait_until(lambda: vow.get(pid) is not None, 30, f"{pid} to be stored")


def counts(vow: Vow) -> dict[str, int]:
    """Records per run, read at the store."""
    return {root.id: len(vow.store.tree(root.id)) for root in vow.store.search(roots_only=True)}


def test_prune_removes_finished_runs_whole_and_never_a_pending_one(vow: Vow) -> None:
    vow.run("ok/1", fan_out, 3)
    vow.run("ok/2", fan_out, 2)
    with pytest.raises(PermanentError):
        vow.run("bad/1", failing)
    waiting = vow.begin_run("wait/1", gated)
    stopped = vow.begin_run("stop/1", gated)
    wait_for_record(vow, "wait/1.approval")  # its two leaves settled; it waits for the outside
    wait_for_record(vow, "stop/1.approval")
    vow.cancel("stop/1")
    with pytest.raises(CanceledError):
        stopped.result(30)
    before = counts(vow)
    assert before == {"ok/1": 4, "ok/2": 3, "bad/1": 2, "wait/1": 4, "stop/1": before["stop/1"]}
    pending_before = {r.id: r for r in vow.store.tree("wait/1")}
    assert [r.id for r in pending_before.values() if r.settled] == ["wait/1.1", "wait/1.2"]

    # Cutoff now: every settled promise, the pending run's children too, settled before it.
    result = vow.prune(0, dry_run=True)
    assert sorted(r.id for r in result.runs) == ["bad/1", "ok/1", "ok/2", "stop/1"] and counts(vow) == before
    result = vow.prune("0s")
    assert sorted((r.id, r.state.value, r.promises) for r in result.runs) == [
        ("bad/1", "rejected", 2), ("ok/1", "resolved", 4), ("ok/2", "resolved", 3),
        ("stop/1", "canceled", before["stop/1"])]
    assert result.promises == sum(before[r] for r in ("bad/1", "ok/1", "ok/2", "stop/1"))
    assert counts(vow) == {"wait/1": 4}
    assert {r.id: r for r in vow.store.tree("wait/1")} == pending_before  # untouched, record for record

    vow.resolve("wait/1.approval", "yes")
    assert waiting.result(30) == ["a", "b", "yes"]
    assert vow.prune("0s").runs[0].id == "wait/1" and counts(vow) == {}


def test_prune_keeps_runs_that_settled_after_the_cutoff_and_the_states_not_asked_for(vow: Vow) -> None:
    vow.run("ok/1", fan_out, 1)
    with pytest.raises(PermanentError):
        vow.run("bad/1", failing)
    assert vow.prune("1h").runs == ()
    assert [r.id for r in vow.prune("0s", states="failed").runs] == ["bad/1"]
    assert counts(vow) == {"ok/1": 2}
    with pytest.raises(ConfigError, match="negative"):
        vow.prune(-1)
    for too_long in ("1000000d", "99999999999999999999d", 36501 * 86400, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match=r"^older_than: .* is too long; at most 36500d \(about 100 years\)$"):
            vow.prune(too_long)
        with pytest.raises(ConfigError, match=r"^retention: .* is too long; at most 36500d"):
            AutoPrune(vow.store, too_long)
    assert counts(vow) == {"ok/1": 2}
    assert vow.prune("36500d").runs == ()  # the longest age: a cutoff in 1926


def test_a_pruned_id_runs_again_from_scratch(vow: Vow) -> None:
    assert vow.run("again/1", fan_out, 2) == ["v0", "v1"]
    vow.prune("0s")
    assert vow.run("again/1", fan_out, 3) == ["v0", "v1", "v2"]  # other arguments: a new run, not a mismatch


def test_prune_while_an_engine_runs_on_the_same_file(tmp_path: Path) -> None:
    """Runs in flight in one client, a prune loop in another: the runs finish, each prune takes finished ones."""
    store = f"sqlite:{tmp_path / 'vow.sqlite'}"
    release = threading.Event()

    def slow(ctx: LeafContext, i: int) -> int:
        release.wait(60)
        return i

    def held(ctx: Context, n: int):
        handles = []
        for i in range(n):
            handles.append((yield ctx.begin_run(slow, i).options(id=f"{ctx.id}.{i}")))
        return sum((yield ctx.all(handles)))

    with Vow(store=store) as runner, Vow(store=store) as pruner:
        for i in range(10):
            runner.run(f"done/{i}", fan_out, 2)
        handles = [runner.begin_run(f"busy/{i}", held, 5) for i in range(8)]
        wait_until(lambda: sum(len(runner.store.tree(f"busy/{i}")) for i in range(8)) == 8 * 6, 30,
                   "the held runs to store their branches")
        removed = [r.id for r in pruner.prune("0s").runs]
        assert sorted(removed) == sorted(f"done/{i}" for i in range(10))
        release.set()
        assert [h.result(60) for h in handles] == [10] * 8
        assert sorted(r.id for r in pruner.prune("0s").runs) == sorted(f"busy/{i}" for i in range(8))
    with Vow(store=store) as reader:
        assert reader.store.search(limit=10) == []


# -- SQLite: space and log -------------------------------------------------------------------


def legacy_store(path: Path) -> SQLiteStore:
    """A store file made the way vow made them before incremental vacuum (``auto_vacuum = NONE``)."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode = WAL")  # writes the header: auto_vacuum can no longer change
    con.close()
    store = SQLiteStore(path)
    assert store._con().execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    return store


def fill(store: SQLiteStore, prefix: str, runs: int, *, settled_at: float) -> None:
    """``runs`` finished runs of five 4 KB promises each."""
    for r in range(runs):
        root = f"{prefix}/{r}"
        records = [make_record(root, root=root, kind=Kind.WORKFLOW, state=State.RESOLVED, value='"ok"',
                               created_at=settled_at - 10, settled_at=settled_at)]
        records += [make_record(f"{root}.{i}", parent=root, root=root, state=State.RESOLVED,
                                value='"' + "x" * 4096 + '"', created_at=settled_at - 9, settled_at=settled_at)
                    for i in range(4)]
        store.apply(Batch(creates=records))


def file_bytes(path: Path) -> int:
    return path.stat().st_size


def test_sqlite_prune_gives_space_back_and_truncates_the_log(tmp_path: Path) -> None:
    path = tmp_path / "vow.sqlite"
    store = legacy_store(path)
    try:
        now = time.time()
        fill(store, "old", 300, settled_at=now - 40 * 86400)
        fill(store, "new", 5, settled_at=now)
        assert store._truncate_log()
        full = file_bytes(path)
        assert full > 300 * 4 * 4096

        # A file made without incremental vacuum keeps the freed pages for reuse...
        result = store.prune(before=now - 30 * 86400)
        assert len(result.runs) == 300 and result.promises == 1500 and not result.compacted
        assert result.wal_truncated is True and os.path.getsize(f"{path}-wal") == 0
        assert file_bytes(path) == full and result.free_bytes > 300 * 4 * 4096
        # ... until compacted, once: then the file shrinks and incremental vacuum is on.
        result = store.prune(before=now - 30 * 86400, compact=True)
        assert result.runs == () and result.compacted and result.free_bytes == 0
        assert file_bytes(path) < full / 10 and os.path.getsize(f"{path}-wal") == 0
        assert store._con().execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        assert len(store.tree("new/0")) == 5

        # From then on every prune gives the space back by itself.
        fill(store, "later", 300, settled_at=now - 40 * 86400)
        assert store._truncate_log()
        grown = file_bytes(path)
        result = store.prune(before=now - 30 * 86400)
        assert len(result.runs) == 300 and not result.compacted and result.free_bytes == 0
        assert result.bytes_after == file_bytes(path) < grown / 5
        assert os.path.getsize(f"{path}-wal") == 0
        assert {r.id for r in store.search(roots_only=True)} == {f"new/{i}" for i in range(5)}
    finally:
        store.close()


def test_a_new_store_file_gives_space_back_without_compacting(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "vow.sqlite")
    try:
        assert store._auto_vacuum() == 2
    finally:
        store.close()


def test_sqlite_dry_run_changes_no_byte(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "vow.sqlite"
    store = SQLiteStore(path)
    try:
        fill(store, "old", 20, settled_at=time.time() - 100)
        assert store._truncate_log()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        result = store.prune(before=time.time(), dry_run=True, compact=True)
        assert result.dry_run and len(result.runs) == 20 and result.promises == 100
        assert not result.compacted and hashlib.sha256(path.read_bytes()).hexdigest() == digest
        assert len(store.search(limit=1000)) == 100
    finally:
        store.close()


def test_the_log_is_left_alone_when_a_reader_holds_it(tmp_path: Path) -> None:
    """The last checkpoint gives up rather than hold writers back behind a long reader."""
    path = tmp_path / "vow.sqlite"
    store = SQLiteStore(path)
    store.TRUNCATE_WAIT_SECONDS = 0.05
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        fill(store, "old", 5, settled_at=time.time() - 100)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM promises").fetchone()  # a snapshot that needs the log
        result = store.prune(before=time.time())
        assert len(result.runs) == 5 and result.wal_truncated is False
        store.apply(Batch(creates=[make_record("after")]))  # and the store goes on writing
    finally:
        reader.close()
        store.close()


# -- automatic retention ---------------------------------------------------------------------


def test_auto_prune_prunes_at_start_and_then_on_its_interval(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "vow.sqlite")
    try:
        fill(store, "old", 3, settled_at=time.time() - 2 * 86400)
        fill(store, "new", 2, settled_at=time.time())
        pruner = AutoPrune(store, "1d", every=0.05).start()
        try:
            wait_until(lambda: pruner.turns >= 3, 30, "three turns of the background prune")
        finally:
            pruner.stop()
        assert sorted(r.id for r in store.search(roots_only=True)) == ["new/0", "new/1"]
        assert pruner.last is not None and pruner.last.runs == ()  # later turns found nothing more
    finally:
        store.close()


def test_auto_prune_survives_a_failing_store(tmp_path: Path, caplog) -> None:
    store = SQLiteStore(tmp_path / "vow.sqlite")
    pruner = AutoPrune(store, "30d")
    store.close()
    assert pruner.run_once() is None and pruner.turns == 1
    assert "retention: pruning" in caplog.text and "closed" in caplog.text


def test_auto_prune_validates_its_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"retention: '30 days' is not a duration"):
        AutoPrune(object(), "30 days")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="interval must be > 0"):
        AutoPrune(object(), "30d", every=0)  # type: ignore[arg-type]
