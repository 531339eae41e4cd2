"""The output folder as a hostile environment: symlinks, files in the way, a full disk, killed writers."""

from __future__ import annotations

import json
import os
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import vow.files
from tests.support import kill, mounted_tmpfs, spawn
from vow.errors import PermanentError, TransientError
from vow.files import _locked_temp, remove_orphans, write_atomic
from vow.images.gallery import write_gallery
from vow.images.pipeline import generate_image
from vow.leaf import LeafContext
from vow.plugins import Plugins
from vow.testing import wait_until

PLUGINS = Plugins()
REQUEST = {"prompt": "a fox in a misty forest", "style": "photorealistic", "width": 256, "height": 256}


def sim(tmp_path: Path) -> dict:
    return {"ledger": str(tmp_path / "sim" / "ledger.sqlite"), "latency": 0}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 KiB file system: room for a gallery, not for a 256x256 photo."""
    yield from mounted_tmpfs(tmp_path / "disk", "size=16k")


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    """A read-only file system: as root, chmod does not keep this process from writing, a read-only mount does."""
    yield from mounted_tmpfs(tmp_path / "ro", "size=64k,ro")


def test_a_live_writers_temp_file_is_never_taken_for_an_orphan(tmp_path: Path) -> None:
    target = tmp_path / "index.html"
    fd, tmp = _locked_temp(target)  # another writer, between creating its temp file and the rename
    try:
        write_atomic(target, "mine")
        assert os.path.exists(tmp) and target.read_text() == "mine"
    finally:
        os.close(fd)  # as if it died: its lock goes with it
    (tmp_path / ".other.html.0123456789abcdef.tmp").write_text("not index.html's")
    assert remove_orphans(target) == [os.path.basename(tmp)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.html.0123456789abcdef.tmp", "index.html"]


def test_a_symlink_where_a_file_goes_is_replaced_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").symlink_to(outside)
    (out / ".index.html.0123456789abcdef.tmp").symlink_to(outside)  # a planted "orphan" that is a symlink
    write_atomic(out / "index.html", "page")
    assert outside.read_text() == "keep me"
    assert not (out / "index.html").is_symlink() and (out / "index.html").read_text() == "page"
    assert (out / ".index.html.0123456789abcdef.tmp").is_symlink()  # not ours: neither followed nor removed


def test_a_full_disk_fails_the_image_as_transient_naming_the_file_and_leaves_nothing(small_disk: Path,
                                                                                    tmp_path: Path) -> None:
    # Before: OSError: [Errno 28] No space left on device, naming no file.
    out = small_disk / "out"
    with pytest.raises(TransientError, match=r"could not write the image of style 'photorealistic' "
                                             rf"{out}/photorealistic.png: No space left on device") as caught:
        generate_image(LeafContext("r.photorealistic", plugins=PLUGINS), "image_sim", REQUEST, str(out), sim(tmp_path))
    assert caught.value.code == "ENOSPC"
    assert os.listdir(out) == []  # neither a part of the image nor its temp file


def test_a_read_only_folder_fails_at_once_naming_the_file(read_only_disk: Path, tmp_path: Path) -> None:
    # Before: OSError: [Errno 30] Read-only file system, retried by the branch's policy as if it could pass.
    with pytest.raises(PermanentError, match=r"could not write the gallery's manifest .*/gallery.json: Read-only "
                                             r"file system; no retry can fix that"):
        write_gallery(str(read_only_disk), {"run_id": "r", "prompt": "p", "started_at": 1.0, "images": []})


def test_a_file_where_the_folder_goes_fails_at_once_naming_it(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file, not a folder")
    with pytest.raises(PermanentError, match=r"could not write the image of style 'photorealistic' "
                                             rf"{tmp_path}/out/out/photorealistic.png: Not a directory "
                                             rf"\({tmp_path}/out/out\); no retry can fix that") as caught:
        generate_image(LeafContext("r.photorealistic", plugins=PLUGINS), "image_sim", REQUEST,
                       str(tmp_path / "out" / "out"), sim(tmp_path))
    assert caught.value.code == "ENOTDIR"


def test_a_temp_file_taken_away_mid_write_is_a_transient_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    # Where flock is local to each machine (NFS with local_lock, some FUSE mounts), another host's tidying
    # can remove a live temp file: the rename then fails with ENOENT, which was "no retry can fix that".
    def replace(src: str, dst: str) -> None:
        os.unlink(src)  # another host's remove_orphans, between the write and the rename
        raise FileNotFoundError(2, "No such file or directory", src)

    monkeypatch.setattr(vow.files.os, "replace", replace)
    with pytest.raises(TransientError, match=r"could not write the gallery .*index.html: No such file"):
        vow.files.write_output(tmp_path / "index.html", "<html>", "the gallery")


WRITER = """
import os, sys
import vow.files
from vow.images.gallery import write_gallery

real_replace = os.replace
def replace(src, dst):
    if os.path.basename(dst) == "index.html":  # its manifest is written: stop before its page
        open({ready!r}, "w").close()
        open({go!r}).read()  # a FIFO: returns once the test opens it for writing and closes it
    return real_replace(src, dst)
vow.files.os = type(sys)("os_with_a_stop")
vow.files.os.__dict__.update(os.__dict__, replace=replace)
write_gallery({out!r}, {run!r})
"""


def gallery_run(run_id: str) -> dict:
    return {"run_id": run_id, "prompt": f"prompt of {run_id}", "started_at": 1.0, "finished_at": 2.0, "images": []}


def test_two_runs_writing_one_folder_leave_a_page_and_manifest_of_the_same_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: run A wrote gallery.json, run B wrote both files, then A wrote index.html: A's page beside B's manifest.
    out, ready, go = tmp_path / "out", tmp_path / "ready", tmp_path / "go"
    out.mkdir()
    os.mkfifo(go)
    script = WRITER.format(ready=str(ready), go=str(go), out=str(out), run=gallery_run("A"))
    a = spawn("-c", textwrap.dedent(script))
    try:
        wait_until(lambda: ready.exists() or a.poll() is not None, timeout=60, message="run A between its two files")
        assert a.poll() is None, a.communicate()[1]
        b_done, b_refused = threading.Event(), threading.Event()
        errors: list[BaseException] = []
        real_lock = vow.files._lock

        def lock(fd: int, *, wait: bool = True) -> bool:
            taken = real_lock(fd, wait=wait)
            if not taken:
                b_refused.set()  # the folder is A's for now: B waits its turn
            return taken

        monkeypatch.setattr(vow.files, "_lock", lock)

        def run_b() -> None:
            try:
                write_gallery(str(out), gallery_run("B"))
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)
            finally:
                b_done.set()

        b = threading.Thread(target=run_b)
        b.start()
        wait_until(lambda: b_done.is_set() or b_refused.is_set(), timeout=30,
                   message="run B done or waiting for the folder's lock")
        with open(go, "w"):
            pass  # let A go on
        assert a.wait(30) == 0, a.communicate()[1]
        b.join(30)
        assert not errors
    finally:
        kill(a)
    manifest = json.loads((out / "gallery.json").read_text())
    page = (out / "index.html").read_text()
    assert f"prompt of {manifest['run_id']}" in page, f"the manifest is run {manifest['run_id']}'s, the page is not"
    assert sorted(p.name for p in out.iterdir()) == ["gallery.json", "index.html"]


@pytest.mark.parametrize("name, problem", [
    ("../../elsewhere", "climbs out of its folder with a '..' that a template value brought"),
    ("a/../../b", "climbs out of its folder"),
    ("bad\x00name", "holds a NUL character"),
    ("x" * 256, "has a part of 256 bytes"),
    ("\u00e9" * 128, "has a part of 256 bytes"),  # 128 characters, 256 bytes in UTF-8
])
def test_an_output_folder_a_template_value_makes_unusable_is_refused_at_planning(
        installed_plugins, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, problem: str) -> None:
    # Before: "../../elsewhere" moved every image and the gallery out of out/; a NUL or a 256-byte name was only
    # found at the first write (ValueError: embedded null byte, retried as if another attempt could pass).
    from vow.pipeline import SpecError, parse
    from vow.pipeline.plan import make_plan

    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))
    text = ("version: 1\nname: out\ninput: {name: fox}\noutput: out/{{ input.name }}\n"
            "fan_out:\n  - {image: image_sim, prompt: a fox, style: cartoon}\n")
    with pytest.raises(SpecError, match=f"o.yaml:4: output: .*{problem}"):
        make_plan(parse(text, "o.yaml"), plugins=installed_plugins, input={"name": name}, base_dir=str(tmp_path))
    plan = make_plan(parse(text.replace("out/{{", "../out/{{"), "o.yaml"), plugins=installed_plugins,
                     input={"name": "fox"}, base_dir=str(tmp_path))  # a '..' the file itself wrote is the author's
    assert plan.spec.output == str(tmp_path / "../out/fox")


def test_a_path_no_file_system_takes_fails_at_once_naming_it(tmp_path: Path) -> None:
    # Before: ValueError: embedded null byte, retried by the branch's policy as if another attempt could pass.
    with pytest.raises(PermanentError, match=r"could not write the gallery's folder '.*/out\\x00': the path holds"):
        write_gallery(str(tmp_path / "out\x00"), {"run_id": "r", "prompt": "p", "started_at": 1.0, "images": []})


def test_something_else_under_a_temp_files_name_does_not_stop_the_write(tmp_path: Path) -> None:
    # Before: a folder named like a temp file of index.html was opened, locked and unlinked: IsADirectoryError,
    # and every later write of the gallery failed the same way.
    (tmp_path / ".index.html.0123456789abcdef.tmp").mkdir()
    os.mkfifo(tmp_path / ".index.html.fedcba9876543210.tmp")
    write_atomic(tmp_path / "index.html", "page")
    assert (tmp_path / "index.html").read_text() == "page"
    assert (tmp_path / ".index.html.0123456789abcdef.tmp").is_dir()
    assert (tmp_path / ".index.html.fedcba9876543210.tmp").exists()  # not ours: left alone


def test_result_json_in_a_read_only_folder_fails_at_once_naming_it(read_only_disk: Path) -> None:
    # Before: OSError: [Errno 30] Read-only file system, retried by the step's policy as if it could pass.
    from vow.pipeline.workflow import write_result

    with pytest.raises(PermanentError, match=r"could not write the run's result .*/result.json: Read-only file system"):
        write_result(LeafContext("r.result"), str(read_only_disk), {"run_id": "r", "branches": []})


def _give_vow_files(flock: Callable[[int, int], None], monkeypatch: pytest.MonkeyPatch) -> None:
    """Give ``vow.files`` alone this ``flock``: patched on the ``fcntl`` module, it was every thread's,
    and a thread another test left running (a client's owner lock, its lease sweep) met ENOLCK."""
    import fcntl
    import types

    monkeypatch.setattr(vow.files, "fcntl", types.SimpleNamespace(
        flock=flock, LOCK_EX=fcntl.LOCK_EX, LOCK_NB=fcntl.LOCK_NB, LOCK_UN=fcntl.LOCK_UN))


def test_a_folder_the_file_system_cannot_lock_still_gets_its_gallery(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # NFS emulates flock with write locks, which a folder opened read-only cannot take (EBADF): the lock added for
    # two runs sharing a folder must not cost every gallery on such a file system.
    import errno
    import fcntl

    real = fcntl.flock

    def flock(fd: int, operation: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EBADF, "Bad file descriptor")
        real(fd, operation)

    _give_vow_files(flock, monkeypatch)
    paths = write_gallery(str(tmp_path / "out"), gallery_run("A"))
    assert json.loads(Path(paths["manifest"]).read_text())["run_id"] == "A"


def test_a_file_system_without_locks_still_gets_whole_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # NFS without its lock service answers flock with ENOLCK: write_atomic's lock on its temp file (94a25e0) must
    # not cost every write there, nor leave the temp file behind.
    import errno

    def flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    _give_vow_files(flock, monkeypatch)
    write_atomic(tmp_path / "index.html", "page")
    (tmp_path / ".index.html.0123456789abcdef.tmp").write_text("cannot tell whose: kept")
    write_gallery(str(tmp_path), gallery_run("A"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".index.html.0123456789abcdef.tmp", "gallery.json",
                                                          "index.html"]


def test_a_folder_locked_by_a_stopped_writer_is_a_transient_error_not_a_hang(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: flock waited for ever on a lock whose holder was stopped (kill -STOP, a hung mount), and the
    # gallery step with it. Held here by another open file description, as another process would.
    import fcntl

    import vow.files

    out = tmp_path / "out"
    out.mkdir()
    holder = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    monkeypatch.setattr(vow.files, "FOLDER_LOCK_WAIT", 0.2, raising=False)
    caught: list[BaseException] = []

    def write() -> None:
        try:
            write_gallery(str(out), gallery_run("A"))
        except BaseException as exc:  # noqa: BLE001 - checked below
            caught.append(exc)

    writer = threading.Thread(target=write, daemon=True)  # daemon: without the fix it never ends
    try:
        writer.start()
        writer.join(5)
        assert not writer.is_alive(), "write_gallery still waits for the folder's lock"
    finally:
        os.close(holder)
        writer.join(5)
    [error] = caught
    assert isinstance(error, TransientError) and error.code == "locked"
    assert "another writer has held it locked for 0.2 s" in str(error)
    assert not (out / "index.html").exists()


def test_a_file_system_without_fsync_still_gets_whole_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Some FUSE and network file systems answer fsync with EINVAL: the fsync write_atomic does before its rename
    # (94a25e0) must not cost every write there, nor leave the temp file behind.
    import errno

    def fsync(fd: int) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(vow.files.os, "fsync", fsync)
    write_gallery(str(tmp_path), gallery_run("A"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery.json", "index.html"]


def test_a_name_of_255_bytes_is_written_and_its_orphans_found(tmp_path: Path) -> None:
    # Before: the temp file's name (the name plus 22 bytes) was too long for a legal name of 234-255 bytes:
    # OSError: [Errno 36] File name too long, for a file that could be written.
    target = tmp_path / ("\u00e9" * 120 + "x" * 15)  # 255 bytes in UTF-8
    write_atomic(target, "data")
    assert target.read_text() == "data" and os.listdir(tmp_path) == [target.name]
    fd, tmp = _locked_temp(target)
    os.close(fd)  # as if its writer died
    assert remove_orphans(target) == [os.path.basename(tmp)]
