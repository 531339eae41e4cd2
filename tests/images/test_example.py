"""examples/image_variations.py runs as documented: three styles, abstract retried alone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import python

pytest.importorskip("vow_image_sim")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "image_variations.py"


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return python(EXAMPLE, "a fox in a misty forest", "--crash", "--id", "images/fox", "--size", "128",
                  "--store", f"sqlite:{tmp_path / 'vow.sqlite'}", *args, cwd=tmp_path,
                  env={"VOW_SIM_DIR": str(tmp_path / "sim")})


def test_crash_mode_retries_abstract_alone_and_prints_the_gallery(tmp_path: Path) -> None:
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert sum("attempt 1 started" in line for line in lines) == 3
    assert [line.split()[1] for line in lines if "failed:" in line] == ["abstract"]
    assert [line.split()[1] for line in lines if "attempt 2 started" in line] == ["abstract"]
    assert lines[-1] == "gallery: out/images/fox/index.html"
    assert (tmp_path / "out" / "images" / "fox" / "index.html").exists()

    again = run(tmp_path)
    assert again.returncode == 0, again.stderr
    assert "started" not in again.stdout and "stored result" in again.stdout
