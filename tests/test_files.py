"""Files vow writes for people to read (galleries, result.json) are never seen half-written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vow.files import write_atomic


def test_write_atomic_replaces_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "file.html"
    write_atomic(target, "first")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["file.html"]  # no temporary file left behind


def test_a_new_file_gets_the_mode_open_would_give(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "index.html", "<p>hi</p>")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "index.html").stat().st_mode) == 0o644  # readable by a web server
