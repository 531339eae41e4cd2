"""A store the user may read but not write: the read commands read it, the others say why they cannot;
and one another program holds locked: the read commands say so.

Root ignores file modes, so as root each command runs without the capabilities that let it
(``setpriv``), or under a read-only bind mount (``unshare -m``), as a user would meet it on a copy or a
shared volume.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vow.stores.sqlite import SQLiteStore

ORDER = str(Path(__file__).resolve().parents[2] / "examples" / "order-confirmed.yaml")
ROOT = os.geteuid() == 0
# Root held to file modes like any user. Not ``nobody``: nobody may not start an interpreter that
# lives in root's home (pyenv's, which in a shared-library build loads libpython from there).
BOUND_BY_MODES = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                  "--bounding-set=-dac_override,-dac_read_search"]


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder anyone may read (pytest's own are root's alone), removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="vow-ro-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for entry in [path, *path.rglob("*")]:
            entry.chmod(0o755 if entry.is_dir() else 0o644)
        shutil.rmtree(path)


def vow(folder: Path, *args: str, how: str = "user") -> subprocess.CompletedProcess[str]:
    """``vow ARGS`` on the store in ``folder/store``: as this user, as someone who may not write it
    (``reader``: root held to file modes when this is root), or under a read-only bind mount of the
    folder (``mount``)."""
    command = [sys.executable, "-m", "vow", *args]
    if how == "reader" and ROOT:
        command = [*BOUND_BY_MODES, *command]
    elif how == "mount":
        store = str(folder / "store")
        command = ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', store, *command]
    environment = {**os.environ, "VOW_STORE": f"sqlite:{folder / 'store' / 'vow.sqlite'}",
                   "VOW_SIM_DIR": str(folder / "sim"), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(command, cwd=folder, env=environment, text=True, capture_output=True, timeout=120)


def make_store(folder: Path, *, leave_log: bool = False) -> None:
    """A store holding run notify/A-1001, and notify/P-1 pending; ``leave_log``: its writer died without
    a checkpoint, so its runs are still in ``vow.sqlite-wal`` beside ``-shm``, as in a copy taken while a
    worker ran."""
    done = vow(folder, "run", ORDER)
    assert done.returncode == 0, done.stderr
    waiting = vow(folder, "run", ORDER, "--set", "order_id=P-1", "--detach")
    assert waiting.returncode == 0, waiting.stderr
    if leave_log:
        store = folder / "store" / "vow.sqlite"
        store.unlink()
        script = ("import os, sys\nfrom vow import Vow\nv = Vow(sys.argv[1])\n"
                  "def leaf(ctx): return 7\ndef flow(ctx): return (yield ctx.run(leaf))\n"
                  "v.register(flow)\nv.run('late/1', flow)\nv.submit('notify/P-1', flow)\nos._exit(0)")
        crashed = subprocess.run([sys.executable, "-c", script, f"sqlite:{store}"], text=True, capture_output=True,
                                 timeout=120)
        assert crashed.returncode == 0, crashed.stderr
        assert (folder / "store" / "vow.sqlite-wal").stat().st_size > 0


def lock(folder: Path) -> None:
    """Make the store's folder and every file in it read-only."""
    for entry in (folder / "store").iterdir():
        entry.chmod(0o555 if entry.is_dir() else 0o444)
    (folder / "store").chmod(0o555)


CASES = ["read-only folder", "read-only folder, log left", "read-only file"]
if ROOT and shutil.which("setpriv") is None:  # pragma: no cover - every Linux has it
    CASES = []


@pytest.mark.parametrize("case", CASES)
def test_read_commands_read_a_store_they_may_not_write(folder: Path, case: str) -> None:
    make_store(folder, leave_log="log" in case)
    if "folder" in case:
        lock(folder)
    else:  # in a folder anyone may write
        (folder / "store" / "vow.sqlite").chmod(0o444)
        (folder / "store").chmod(0o777)
    before = sorted(os.listdir(folder / "store"))
    run = "late/1" if "log" in case else "notify/A-1001"

    listed = vow(folder, "ls", how="reader")
    assert listed.returncode == 0, listed.stderr
    assert run in listed.stdout and listed.stderr == ""
    as_json = vow(folder, "ls", "--json", "--state", "succeeded", how="reader")
    assert as_json.returncode == 0, as_json.stderr
    assert [r["id"] for r in json.loads(as_json.stdout)] == [run]
    assert "notify/P-1" in vow(folder, "ls", "--state", "pending", how="reader").stdout
    shown = vow(folder, "show", run, how="reader")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"{run}  ok")

    if "folder" in case:
        assert sorted(os.listdir(folder / "store")) == before  # nothing made beside it
    written = vow(folder, "cancel", "notify/P-1", how="reader")
    assert written.returncode == 2
    assert written.stderr.count("\n") == 1 and "read-only" in written.stderr, written.stderr
    rerun = vow(folder, "run", ORDER, "--set", "order_id=B-1", how="reader")
    assert rerun.returncode == 2
    assert rerun.stderr.count("\n") == 1 and "read-only" in rerun.stderr, rerun.stderr


@pytest.mark.skipif(not ROOT or shutil.which("unshare") is None, reason="a bind mount needs root")
def test_read_commands_read_a_store_on_a_read_only_mount(folder: Path) -> None:
    make_store(folder)
    probe = vow(folder, "--version", how="mount")
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here: {probe.stderr.strip()}")
    listed = vow(folder, "ls", how="mount")
    assert listed.returncode == 0, listed.stderr
    assert "notify/A-1001" in listed.stdout
    shown = vow(folder, "show", "notify/A-1001", how="mount")
    assert shown.returncode == 0, shown.stderr
    written = vow(folder, "cancel", "notify/P-1", how="mount")
    assert written.returncode == 2
    assert written.stderr.count("\n") == 1 and "read-only" in written.stderr, written.stderr


def test_vow_ls_on_a_store_another_program_holds_locked_says_so(tmp_path: Path) -> None:
    """A program outside vow that holds the file exclusively (``locking_mode=EXCLUSIVE``) kept `vow ls`
    waiting its busy_timeout, then it said SQLite's bare "database is locked"."""
    from tests.support import spawn

    store = tmp_path / "vow.sqlite"
    with contextlib.closing(SQLiteStore(store)):
        pass
    holder = spawn("-c", "import sqlite3, sys, time\n"
                         "con = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                         "con.execute('PRAGMA locking_mode = EXCLUSIVE')\n"
                         "con.execute('BEGIN EXCLUSIVE')\n"
                         "con.execute('UPDATE leases SET token = token')\n"
                         "print('held', flush=True)\n"
                         "sys.stdin.read()\n", str(store), stdin=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        listed = subprocess.run([sys.executable, "-m", "vow", "ls", "--store", f"sqlite:{store}?busy_timeout=0.3"],
                                text=True, capture_output=True, timeout=60)
    finally:
        holder.kill()
        holder.communicate()
    assert listed.returncode == 2
    assert listed.stderr.startswith(f"error: SQLite store {store}: still locked by another connection after 0.3 s "
                                    "(busy_timeout"), listed.stderr


@pytest.mark.skipif(ROOT and shutil.which("setpriv") is None, reason="needs setpriv as root")
def test_an_empty_store_that_cannot_be_written_is_said_to_be_empty(folder: Path) -> None:
    """An empty file is a store not yet made, which reading it makes: where it cannot be written, `vow ls`
    said it "cannot be written ...: vow ls and vow show can read it" — vow ls itself failing."""
    (folder / "store").mkdir()
    (folder / "store" / "vow.sqlite").write_bytes(b"")
    lock(folder)
    listed = vow(folder, "ls", how="reader")
    assert listed.returncode == 2
    assert "is empty: no run was stored in it yet, and it cannot be written" in listed.stderr, listed.stderr
    assert "vow ls and vow show can read it" not in listed.stderr


@pytest.mark.skipif(ROOT and shutil.which("setpriv") is None, reason="needs setpriv as root")
def test_a_store_of_an_older_format_that_cannot_be_written_says_how_to_upgrade_it(folder: Path) -> None:
    import sqlite3

    from vow.stores.base import FORMAT_VERSION

    make_store(folder)
    with contextlib.closing(sqlite3.connect(folder / "store" / "vow.sqlite")) as con:
        con.execute(f"PRAGMA user_version = {FORMAT_VERSION - 1}")  # as an older vow left it
    lock(folder)
    listed = vow(folder, "ls", how="reader")
    assert listed.returncode == 2
    assert (f"written by an older vow (store format {FORMAT_VERSION - 1}; this vow reads {FORMAT_VERSION}), and it "
            "cannot be upgraded here") in listed.stderr, listed.stderr


@pytest.mark.skipif(ROOT and shutil.which("setpriv") is None, reason="needs setpriv as root")
def test_a_new_store_in_a_folder_that_cannot_be_written_is_not_said_to_be_readable(folder: Path) -> None:
    (folder / "store").mkdir()
    lock(folder)
    ran = vow(folder, "run", ORDER, how="reader")
    assert ran.returncode == 2 and ran.stderr.count("\n") == 1
    assert "is read-only to this user): to store runs, give a store you may write" in ran.stderr, ran.stderr


SCHEDULED = "version: 1\nname: hourly\nschedule: {every: 1h}\nfan_out:\n  - {channel: slack, to: '#a', body: hi}\n"
WRITES = [
    ["run", ORDER, "--set", "order_id=RO-1"],
    ["run", ORDER, "--set", "order_id=RO-1", "--detach"],
    ["resume", "notify/P-1"],
    ["resume", "--all"],
    ["fork", "notify/A-1001", "--from", "notify/A-1001"],
    ["retry", "notify/A-1001"],
    ["resolve", "notify/P-1.approval", "yes"],
    ["cancel", "notify/P-1"],
    ["prune", "--older-than", "0s"],
    ["schedule", "add", "hourly.yaml"],
    ["schedule", "pause", "hourly"],
    ["worker"],
]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the store of :func:`make_store` and schedule ``hourly``, made once: each test
    of the commands that write copies it (none of them may change it)."""
    folder = tmp_path_factory.mktemp("stored")
    make_store(folder)
    (folder / "hourly.yaml").write_text(SCHEDULED)
    added = vow(folder, "schedule", "add", "hourly.yaml")
    assert added.returncode == 0, added.stderr
    return folder


@pytest.mark.parametrize("command", WRITES, ids=lambda c: " ".join(c[:2]).replace(ORDER, "FILE"))
def test_a_command_that_writes_refuses_a_store_opened_read_only_in_one_line(folder: Path, stored: Path,
                                                                            command: list[str]) -> None:
    """``?read_only=true`` is asked for; a command that must write said so as a read-only file does.
    `vow run` had printed "failed: notify/RO-1 unknown after -: StoreError ...", exit 1, and told to
    `vow show` a run never stored; `vow resume` failed as the run's failure; `vow worker` logged its
    failed claims forever."""
    shutil.copytree(stored, folder, dirs_exist_ok=True)
    url = f"sqlite:{folder / 'store' / 'vow.sqlite'}"
    before = vow(folder, "ls", "--json").stdout
    refused = vow(folder, *command, "--store", f"{url}?read_only=true")
    assert refused.returncode == 2, refused
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "opened read-only (read_only=true)" in refused.stderr and "drop read_only=true" in refused.stderr, \
        refused.stderr
    assert refused.stdout == ""  # no run shown, no `vow show` of one never stored
    assert vow(folder, "ls", "--json").stdout == before  # nothing written
