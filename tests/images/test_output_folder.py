"""The output folder as a hostile environment: symlinks, files in the way, a full disk, killed writers."""

from __future__ import annotations

import os
from pathlib import Path

from vow.files import _locked_temp, remove_orphans, write_atomic


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
