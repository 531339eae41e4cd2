"""What the SQLite store promises beyond the contract: files, formats, options, processes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import mounted_tmpfs
from vow.errors import ConfigError, LeaseLostError, StoreError
from vow.plugins import Plugins
from vow.records import Batch, Kind, Lease, Settle, State
from vow.stores import open_store
from vow.stores import sqlite as sqlite_module
from vow.stores.base import FORMAT_VERSION, new_owner_id
from vow.stores.sqlite import SQLiteStore
from vow.testing import make_record


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def a_store_file(path: Path, records: int = 10) -> Path:
    """A closed store file holding ``records`` promises under root ``r`` (and no -wal left over)."""
    store = SQLiteStore(path)
    store.apply(Batch(creates=[make_record("r")] + [make_record(f"r.{i}", parent="r", args="x" * 200)
                                                   for i in range(records)]))
    store.close()
    assert not Path(f"{path}-wal").exists()
    return path


@pytest.fixture
def plugins() -> Plugins:
    """Only the SQLite store registered: these tests do not depend on other plugins loading."""
    manager = Plugins(entry_points=False)
    manager.add(sqlite_module, "sqlite")
    return manager


# -- the file -------------------------------------------------------------------------------

def test_everything_persists_across_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "vow.sqlite"  # parent directories are created
    store = SQLiteStore(path)
    store.apply(Batch(creates=[make_record("r", kind=Kind.WORKFLOW, tags={"env": "prod"}),
                               make_record("r.1", parent="r", timeout=12.5)],
                      settles=[Settle("r.1", State.RESOLVED, '"ok"', 99.25)], attempts={"r": 2}))
    owner = new_owner_id()
    lease = store.claim("r", owner, 30, now=1000.0)
    before = store.tree("r")
    store.close()

    again = SQLiteStore(path)
    assert again.tree("r") == before
    assert again.lease("r") == lease == Lease("r", owner, 1, 1030.0)
    assert again.get("r").attempt == 2 and again.get("r").tags == {"env": "prod"}
    assert again.url == f"sqlite://{path}"
    again.close()


def test_the_file_is_in_wal_mode_and_records_its_format(sqlite_store: SQLiteStore) -> None:
    con = sqlite3.connect(sqlite_store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION
    con.close()


def test_a_file_from_a_newer_format_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = a_store_file(tmp_path / "vow.sqlite")
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {FORMAT_VERSION + 1}")
    con.close()
    before = digest(path)
    with pytest.raises(StoreError) as caught:
        SQLiteStore(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"format {FORMAT_VERSION + 1}" in message and f"supports up to {FORMAT_VERSION}" in message
    assert digest(path) == before


@pytest.mark.parametrize(("keep", "message"), [(0.5, "the file is truncated"),  # half the pages
                                              (50, "not a SQLite database")])  # half the header
def test_a_truncated_file_is_refused_and_left_untouched(tmp_path: Path, keep: float, message: str) -> None:
    path = a_store_file(tmp_path / "vow.sqlite", records=200)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep) if keep < 1 else int(keep)])
    before = digest(path)
    with pytest.raises(StoreError, match=message) as caught:
        SQLiteStore(path)
    assert str(path) in str(caught.value)
    assert digest(path) == before


@pytest.mark.parametrize("content", [b"this is not a database\n" * 300, bytes(range(256)) * 40])
def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_bytes(content)
    with pytest.raises(StoreError, match="not a SQLite database") as caught:
        SQLiteStore(path)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == content


def test_damaged_pages_are_a_store_error_naming_the_file(tmp_path: Path) -> None:
    path = a_store_file(tmp_path / "vow.sqlite", records=300)
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    data[page_size:] = b"\xa5" * (len(data) - page_size)  # every page but the first is garbage
    path.write_bytes(bytes(data))
    before = digest(path)
    with pytest.raises(StoreError) as caught:
        SQLiteStore(path).tree("r")
    assert str(path) in str(caught.value) and "damaged" in str(caught.value)
    assert digest(path) == before


def test_another_sqlite_database_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()
    before = digest(path)
    with pytest.raises(StoreError, match="not a vow store.*users"):
        SQLiteStore(path)
    assert digest(path) == before


def test_an_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    path.touch()
    store = SQLiteStore(path)
    store.apply(Batch(creates=[make_record("a")]))
    assert store.get("a") is not None
    store.close()


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        SQLiteStore(tmp_path)


# -- options --------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "expected"), [("sqlite:{}", 1), ("sqlite:{}?synchronous=full", 2),
                                                ("sqlite:{}?synchronous=FULL", 2)])
def test_the_synchronous_option_is_applied(tmp_path: Path, plugins: Plugins, url: str, expected: int) -> None:
    store = open_store(url.format(tmp_path / "vow.sqlite"), plugins=plugins)
    assert store._con().execute("PRAGMA synchronous").fetchone()[0] == expected
    seen = []  # every thread's connection gets it
    thread = threading.Thread(target=lambda: seen.append(store._con().execute("PRAGMA synchronous").fetchone()[0]))
    thread.start()
    thread.join()
    assert seen == [expected]
    store.close()


def test_options_from_a_url(tmp_path: Path, plugins: Plugins) -> None:
    store = open_store(f"sqlite://{tmp_path}/a.sqlite?busy_timeout=2.5", plugins=plugins)
    assert (store.path, store.busy_timeout, store.synchronous) == (str(tmp_path / "a.sqlite"), 2.5, "normal")
    store.close()


@pytest.mark.parametrize(("query", "message"), [
    ("synchronous=off", "synchronous: expected one of normal, full, got 'off'"),
    ("busy_timeout=soon", "busy_timeout"),
    ("busy_timeout=0", "busy_timeout: expected a finite number of seconds > 0"),
    ("busy_timeout=nan", "busy_timeout: expected a finite number of seconds > 0, got nan"),
    ("busy_timeout=inf", "busy_timeout: expected a finite number of seconds > 0, got inf"),
    ("journal=delete", r"journal: unknown key \(allowed: path, synchronous, busy_timeout, read_only\)"),
])
def test_bad_options_are_a_config_error(tmp_path: Path, plugins: Plugins, query: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_store(f"sqlite:{tmp_path}/vow.sqlite?{query}", plugins=plugins)
    assert not (tmp_path / "vow.sqlite").exists()


@pytest.mark.parametrize("url", ["", "   "])
def test_an_empty_store_url_is_refused_as_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="the store URL is empty") as caught:
        open_store(url)
    assert not str(caught.value).startswith("store 'sqlite:")  # it named the default URL, which nobody gave
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["sqlite://host/path", "sqlite://localhost/x.sqlite", "sqlite://host",
                                 "sqlite://user@host:5/x.sqlite?synchronous=full"])
def test_a_sqlite_url_with_a_host_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.chdir(tmp_path)  # it became the relative path host/path here
    with pytest.raises(ConfigError, match=r"names a host .*sqlite:relative/path\.sqlite, sqlite:/absolute/"):
        open_store(url)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("slashes", ["/", "///", "////"])
def test_every_absolute_form_opens_the_same_file_again(tmp_path: Path, slashes: str) -> None:
    """``sqlite:////abs/path`` is SQLAlchemy's absolute form. Read as the path ``//abs/path``, it made
    the file and then could not open it again: 'invalid uri authority'."""
    url = f"sqlite:{slashes}{str(tmp_path / 'vow.sqlite').lstrip('/')}"
    for _ in range(2):
        store = open_store(url)
        try:
            assert Path(store.path) == tmp_path / "vow.sqlite" and store.get("none") is None
        finally:
            store.close()


# -- connections and locking ----------------------------------------------------------------

def test_each_thread_has_its_own_connection_and_close_closes_them_all(sqlite_store: SQLiteStore) -> None:
    connections = [sqlite_store._con()]
    thread = threading.Thread(target=lambda: connections.append(sqlite_store._con()))
    thread.start()
    thread.join()
    assert connections[0] is not connections[1]
    sqlite_store.close()
    for con in connections:
        with pytest.raises(sqlite3.ProgrammingError):
            con.execute("SELECT 1")
    with pytest.raises(StoreError, match="closed"):
        sqlite_store.get("a")
    with pytest.raises(StoreError, match="closed"):
        sqlite_store.apply(Batch(creates=[make_record("a")]))


def test_a_writer_waits_for_the_lock_and_gives_up_after_busy_timeout(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "vow.sqlite", busy_timeout=0.3)
    holder = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(StoreError, match="locked") as caught:
        store.apply(Batch(creates=[make_record("a")]))
    assert time.monotonic() - started >= 0.25
    assert store.path in str(caught.value)
    assert store.get("a") is None  # reads are not blocked by a writer

    patient = SQLiteStore(store.path, busy_timeout=30)
    assert holder.in_transaction
    timer = threading.Timer(0.2, lambda: holder.execute("COMMIT"))
    started = time.monotonic()
    timer.start()
    patient.apply(Batch(creates=[make_record("a")]))  # waits for the commit, then writes
    assert time.monotonic() - started >= 0.15
    timer.join()
    assert store.get("a") is not None
    holder.close()
    store.close()
    patient.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_connection(sqlite_store: SQLiteStore) -> None:
    parent_connection = sqlite_store._con()
    pid = os.fork()
    if pid == 0:  # the child: must not touch the parent's connection
        try:
            sqlite_store.apply(Batch(creates=[make_record("from-child")]))
            os._exit(0 if sqlite_store._con() is not parent_connection else 3)
        except BaseException:  # noqa: BLE001 - the forked child reports any failure by its exit code
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sqlite_store.get("from-child") is not None and sqlite_store._con() is parent_connection


def test_returned_tags_are_each_callers_own(sqlite_store: SQLiteStore) -> None:
    sqlite_store.apply(Batch(creates=[make_record("a", tags={"k": "v"}), make_record("b", tags={"k": "v"})]))
    sqlite_store.get("a").tags["k"] = "changed"
    assert sqlite_store.get("a").tags == {"k": "v"} == sqlite_store.get("b").tags


# -- several processes on one file ----------------------------------------------------------

WORKER = """
import json, sys, time
from vow.records import Batch, Kind, PromiseRecord, Settle, State
from vow.stores.base import new_owner_id
from vow.stores.sqlite import SQLiteStore

path, worker, start_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
while time.time() < start_at:  # start together, so that even the file's creation is contended
    time.sleep(0.005)
store = SQLiteStore(path)
owner = new_owner_id()
root = f"w{worker}"
grants = []
store.apply(Batch(creates=[PromiseRecord(root, State.PENDING, Kind.WORKFLOW, root, created_at=time.time())]))
for i in range(300):
    rid = f"{root}.{i}"
    now = time.time()
    store.apply(Batch(creates=[PromiseRecord(rid, State.PENDING, Kind.STEP, root, parent=root, created_at=now)],
                      settles=[Settle(rid, State.RESOLVED, str(i), now)]))
    if i % 3 == 0:
        lease = store.claim(f"shared{i % 4}", owner, 30)
        if lease is not None:
            grants.append([lease.root, lease.token])
            store.apply(Batch(attempts={rid: 1}, fences={lease.root: lease.token}))
            store.release(lease)
store.close()
print(json.dumps(grants))
"""


def test_four_processes_write_and_claim_on_one_file_without_errors(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "vow.sqlite"
    start_at = time.time() + 1.5  # after every interpreter has imported vow
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(n), str(start_at)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(4)]
    outputs = [w.communicate(timeout=120) for w in workers]
    for worker, (_out, err) in zip(workers, outputs):
        assert worker.returncode == 0 and err == "", err
    grants = [tuple(g) for out, _ in outputs for g in json.loads(out)]
    assert grants, "no worker ever got a lease"
    assert len(grants) == len(set(grants)), "two owners were granted the same (root, token)"

    store = SQLiteStore(path)
    for n in range(4):
        tree = store.tree(f"w{n}")
        assert len(tree) == 301
        assert all(r.state is State.RESOLVED and r.value == str(int(r.id.rsplit(".", 1)[1]))
                   for r in tree[1:])
    for root in {root for root, _ in grants}:
        lease = store.lease(root)
        assert lease.owner == "" and lease.token == max(t for r, t in grants if r == root)
    store.close()


KILLED_WRITER = """
import sys, time
from vow.records import Batch, Kind, PromiseRecord, Settle, State
from vow.stores.sqlite import SQLiteStore

store = SQLiteStore(sys.argv[1])
for i in range(100_000):
    rid = f"r.{i}"
    store.apply(Batch(creates=[PromiseRecord(rid, State.PENDING, Kind.STEP, "r", parent="r", created_at=time.time())],
                      settles=[Settle(rid, State.RESOLVED, str(i), time.time())]))
    print(rid, flush=True)  # acknowledged: committed
"""


def test_every_committed_batch_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "vow.sqlite"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    acknowledged = [writer.stdout.readline().strip() for _ in range(300)]
    writer.kill()  # SIGKILL: no cleanup, no checkpoint, the WAL is left as it is
    writer.wait(30)
    writer.stdout.close()
    assert all(acknowledged) and Path(f"{path}-wal").exists()
    store = SQLiteStore(path)
    found = store.get_many(acknowledged)
    assert len(found) == 300 and all(r.state is State.RESOLVED for r in found.values())
    store.close()


# -- fences a connection remembers: every way the remembered state can go stale is noticed ------------

def _remembered_fence(store: SQLiteStore) -> Lease:
    """``wf`` claimed and two fenced commits made, so the second's fence is remembered."""
    lease = store.claim("wf", new_owner_id(), 10, now=100.0)
    store.apply(Batch(creates=[make_record("wf")], fences={"wf": lease.token}))
    store.apply(Batch(creates=[make_record("wf.1", root="wf", parent="wf")], fences={"wf": lease.token}))
    return lease


def _fenced_child(store: SQLiteStore, lease: Lease) -> None:
    store.apply(Batch(creates=[make_record("wf.2", root="wf", parent="wf")], fences={"wf": lease.token}))


def test_a_remembered_fence_is_checked_again_once_another_connection_took_the_lease(tmp_path: Path) -> None:
    mine, theirs = SQLiteStore(tmp_path / "vow.sqlite"), SQLiteStore(tmp_path / "vow.sqlite")
    try:
        lease = _remembered_fence(mine)
        assert theirs.claim("wf", new_owner_id(), 10, now=200.0).token > lease.token  # mine expired: taken over
        with pytest.raises(LeaseLostError):
            _fenced_child(mine, lease)
        assert mine.get("wf.2") is None
    finally:
        mine.close()
        theirs.close()


def test_a_remembered_fence_is_checked_again_once_the_same_connection_wrote_something_else(
        sqlite_store: SQLiteStore) -> None:
    lease = _remembered_fence(sqlite_store)
    sqlite_store.claim("wf", new_owner_id(), 10, now=200.0)  # this connection itself hands the lease on
    with pytest.raises(LeaseLostError):
        _fenced_child(sqlite_store, lease)
    assert sqlite_store.get("wf.2") is None


def test_a_remembered_fence_does_not_cover_a_root_its_own_commit_settled(sqlite_store: SQLiteStore) -> None:
    lease = sqlite_store.claim("wf", new_owner_id(), 10, now=100.0)
    sqlite_store.apply(Batch(creates=[make_record("wf")], fences={"wf": lease.token}))
    sqlite_store.apply(Batch(settles=[Settle("wf", State.RESOLVED, "1", 1.0)], fences={"wf": lease.token}))
    with pytest.raises(LeaseLostError):
        _fenced_child(sqlite_store, lease)
    assert sqlite_store.get("wf.2") is None


def test_a_long_run_of_commits_keeps_starting_the_log_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A passive checkpoint beside the commits never reaches the end of a log that keeps growing;
    the committing connection finishes it once the log is long, and the log starts over in place."""
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_EVERY", 16)
    monkeypatch.setattr(sqlite_module, "WAL_RESTART_BYTES", 256 * 1024)
    store = SQLiteStore(tmp_path / "vow.sqlite")
    wal = Path(f"{store.path}-wal")
    peak = 0
    try:
        store.apply(Batch(creates=[make_record("r")]))
        for i in range(3000):  # about 4 pages each: 50 MB of log if it never started over
            store.apply(Batch(creates=[make_record(f"r.{i}", root="r", parent="r")],
                              settles=[Settle(f"r.{i - 1}", State.RESOLVED, "1", 1.0)] if i else []))
            peak = max(peak, wal.stat().st_size)
    finally:
        store.close()
    assert peak < 2 * 2**20  # the restart size and the commits made until a look finds the copy done
    assert not wal.exists() or wal.stat().st_size == 0


CLOSE_UNDER_READS = """
import sys, threading
from vow.errors import StoreError
from vow.records import Batch
from vow.stores.sqlite import SQLiteStore
from vow.testing import make_record

for round in range(30):
    store = SQLiteStore(f"{sys.argv[1]}/{round}.sqlite")
    closed = threading.Event()
    busy = [threading.Event() for _ in range(3)]

    def use(i):
        n = 0
        while not closed.is_set():
            try:
                if i == 2:
                    store.apply(Batch(creates=[make_record(f"r{round}.{n}")]))
                else:
                    store.get_many([f"r{round}.{n}", "x"])
            except StoreError as exc:  # after close(): what a call gets
                assert "closed" in str(exc), exc
            n += 1
            if n == 20:
                busy[i].set()

    threads = [threading.Thread(target=use, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for event in busy:
        event.wait()
    store.close()  # while the three still read and write
    closed.set()
    for t in threads:
        t.join()
print("ok")
"""


def test_closing_a_store_while_other_threads_use_it_never_crashes_the_process(tmp_path: Path) -> None:
    """close() closed the connections of threads still running a statement on them, and sqlite3
    then read a connection that was gone: the process died of a segmentation fault (a client closed
    while its watcher looked at the store). close() now waits for the running reads and the running
    write, and a call after it gets StoreError."""
    done = subprocess.run([sys.executable, "-c", CLOSE_UNDER_READS, str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout == "ok\n", (done.returncode, done.stderr[-3000:])


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, for a store whose disk fills up."""
    yield from mounted_tmpfs(tmp_path / "disk", "size=1m")


def test_a_store_on_a_full_disk_says_the_disk_is_full(small_disk: Path, tmp_path: Path) -> None:
    # Opening a store makes its -shm file; on a full disk SQLite said only "disk I/O error" (SQLITE_IOERR_SHMSIZE),
    # so `vow ls` gave no hint that freeing space would do.
    path = small_disk / "vow.sqlite"
    SQLiteStore(path).close()
    with open(small_disk / "filler", "wb", buffering=0) as filler:  # another program takes the rest of the disk
        with contextlib.suppress(OSError):
            while True:
                filler.write(b"x" * 4096)
    with pytest.raises(StoreError, match=rf"SQLite store {path}: no room on its disk for vow.sqlite-shm, the file "
                                         r"SQLite shares between readers: free some space \(disk I/O error\)"):
        SQLiteStore(path)
    (small_disk / "filler").unlink()
    SQLiteStore(path).close()


def test_a_store_opened_read_only_reads_and_refuses_every_write(tmp_path: Path) -> None:
    """`vow ls` opens the store with read_only: it reads what a writer stored, writes nothing (not even
    in a file it may write), and leaves no -wal or -shm behind; a write through it says why it fails."""
    from vow.records import PromiseRecord

    path = tmp_path / "vow.sqlite"
    with contextlib.closing(open_store(f"sqlite:{path}")) as writer:
        writer.apply(Batch(creates=[PromiseRecord("r/1", State.PENDING, Kind.WORKFLOW, "r/1", func="f",
                                                  created_at=time.time())]))
    reader = open_store(f"sqlite:{path}", read_only=True)
    try:
        assert isinstance(reader, sqlite_module.SQLiteStore) and reader.read_only
        assert reader.get("r/1") is not None and [r.id for r in reader.runs()] == ["r/1"]
        with pytest.raises(StoreError, match=r"opened read-only \(read_only=true\), so it takes no writes: drop"):
            reader.settle("r/1", State.RESOLVED, "1")
    finally:
        reader.close()
    assert sorted(os.listdir(tmp_path)) == ["vow.sqlite"]
    with contextlib.closing(open_store(f"sqlite:{path}?read_only=true")) as from_url:
        assert from_url.get("r/1").state is State.PENDING  # type: ignore[union-attr]
    with pytest.raises(StoreError, match="the file does not exist"):
        open_store(f"sqlite:{tmp_path / 'missing.sqlite'}", read_only=True)
    assert not (tmp_path / "missing.sqlite").exists()


@pytest.mark.parametrize("form", ["sqlite:{path}", "sqlite:{path}?synchronous=full", "{path}"])
def test_a_hash_in_a_sqlite_path_is_part_of_the_path(tmp_path: Path, form: str) -> None:
    """`sqlite:/data/run#2/vow.sqlite` opened /data/run (a URL fragment was dropped): `vow ls` on it said
    "no store at /data/run", and `vow run` made a store there. A bare path always took the '#'."""
    from vow.stores import parse_store_url

    path = tmp_path / "run#2" / "vow.sqlite"
    name, options = parse_store_url(form.format(path=path))
    assert (name, options["path"]) == ("sqlite", str(path))
    assert options.get("synchronous", "full") == "full"


def test_a_subtree_is_the_part_of_the_runs_tree_under_its_promise_in_the_same_order(tmp_path: Path) -> None:
    """`vow show` of a branch reads it with subtree(); it must print what reading the whole tree printed."""
    from vow.stores.contract import make_record

    store = open_store(f"sqlite:{tmp_path / 'vow.sqlite'}")
    try:
        at = {"r": 1.0, "r.a": 2.0, "r.b": 3.0, "r.a.2": 5.0, "r.a.1": 5.0, "r.a.1.x": 6.0, "r.c": 7.0}
        parents = {"r.a": "r", "r.b": "r", "r.a.2": "r.a", "r.a.1": "r.a", "r.a.1.x": "r.a.1", "r.c": "r"}
        # r.a.2 and r.a.1 share a time: the order of creation decides, as in tree()
        records = [make_record(rid, parent=parents.get(rid), created_at=t,
                               kind=Kind.WORKFLOW if rid in parents.values() else Kind.STEP) for rid, t in at.items()]
        store.apply(Batch(creates=records))
        tree = store.tree("r")
        for top in ("r.a", "r.a.1", "r.b"):
            below = {top}
            expected = [r for r in tree if r.id == top or (r.parent in below and not below.add(r.id))]
            assert [r.id for r in store.subtree(top)] == [r.id for r in expected]
        assert [r.id for r in store.subtree("r.a")] == ["r.a", "r.a.2", "r.a.1", "r.a.1.x"]
        assert store.subtree("nothing") == []
    finally:
        store.close()
