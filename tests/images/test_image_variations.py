"""The seed scenario end to end: three styles in parallel on a SQLite store, one fails once.

Generations are counted where a provider bills them: in the simulated provider's ledger.
"""

from __future__ import annotations

import json
import textwrap
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.support import kill, python, spawn
from vow import Vow
from vow.errors import PermanentError
from vow.images.pipeline import image_variations
from vow.simulation import Ledger
from vow.testing import wait_until

pytest.importorskip("vow_image_sim")

STYLES = ["photorealistic", "cartoon", "abstract"]
PROMPT = "a fox in a misty forest"
CRASH = {"abstract": {"fail_attempts": [1], "message": "Image generation service timeout for style 'abstract'"}}


class Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.srcs.append(dict(attrs)["src"] or "")


@pytest.fixture
def vow(tmp_path: Path):
    client = Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}")
    client.register(image_variations)
    yield client
    client.close()


def generations(ledger: Path) -> dict[str, tuple[int, int]]:
    """Per idempotency key: (generations billed, duplicate requests)."""
    counts: dict[str, tuple[int, int]] = {}
    for d in Ledger(ledger).deliveries("image_sim"):
        billed, dups = counts.get(d.key, (0, 0))
        counts[d.key] = (billed + 1, dups + d.duplicates)
    return counts


def test_the_failing_style_is_retried_alone_while_the_others_run_once(vow: Vow, tmp_path: Path) -> None:
    ledger = tmp_path / "sim" / "ledger.sqlite"
    options = {"ledger": str(ledger), "latency": 0.4, "jitter": 0}
    out = tmp_path / "gallery"
    result = vow.run("images/fox", image_variations, PROMPT, STYLES, str(out), options=options, faults=CRASH)

    by_style = {img["style"]: img for img in result["images"]}
    assert {s: (i["ok"], i["attempt"]) for s, i in by_style.items()} == {
        "photorealistic": (True, 1), "cartoon": (True, 1), "abstract": (True, 2)}
    assert {r.id: r.attempt for r in vow.store.tree("images/fox") if r.id.split(".")[-1] in STYLES} == {
        "images/fox.photorealistic": 1, "images/fox.cartoon": 1, "images/fox.abstract": 2}
    # The injected failure came before the provider, so nothing was billed twice.
    assert generations(ledger) == {f"images/fox.{s}": (1, 0) for s in STYLES}

    # Parallel: the wall time is about the slowest branch (plus abstract's retry), not the sum.
    total = sum(i["elapsed_ms"] for i in result["images"])
    assert total >= 3 * 400 * 0.95
    assert result["wall_ms"] < 0.8 * total, (result["wall_ms"], total)

    page = Sources()
    page.feed((out / "index.html").read_text())
    assert sorted(page.srcs) == sorted(f"{s}.png" for s in STYLES)
    for img in result["images"]:
        assert (out / img["path"]).stat().st_size == img["bytes"]
    assert json.loads((out / "gallery.json").read_text())["images"] == result["images"]

    # The same id again is the same run: the stored result, no new generation.
    again = vow.run("images/fox", image_variations, PROMPT, STYLES, str(out), options=options, faults=CRASH)
    assert again == result
    assert generations(ledger) == {f"images/fox.{s}": (1, 0) for s in STYLES}


def test_a_style_that_fails_for_good_does_not_lose_the_others(vow: Vow, tmp_path: Path) -> None:
    options = {"ledger": str(tmp_path / "ledger.sqlite"), "latency": 0}
    faults = {"cartoon": {"fail_attempts": [1], "error": "permanent", "message": "content policy violation"}}
    result = vow.run("images/strict", image_variations, PROMPT, STYLES, str(tmp_path / "out"),
                     size="96x64", options=options, faults=faults)
    by_style = {img["style"]: img for img in result["images"]}
    assert by_style["cartoon"] == {"style": "cartoon", "ok": False,
                                   "error": "PermanentError: content policy violation (attempt 1)", "attempt": 1}
    assert [(by_style[s]["width"], by_style[s]["height"]) for s in ("photorealistic", "abstract")] == [(96, 64)] * 2
    assert "content policy violation" in (tmp_path / "out" / "index.html").read_text()
    assert not (tmp_path / "out" / "cartoon.png").exists()


def test_configuration_errors_are_not_retried(vow: Vow, tmp_path: Path) -> None:
    result = vow.run("images/unknown", image_variations, PROMPT, ["cartoon"], str(tmp_path / "out"), provider="dalle9")
    [img] = result["images"]
    assert not img["ok"] and "image_provider 'dalle9' is not installed" in img["error"]
    assert vow.get("images/unknown.cartoon").attempt == 1


CHILD = """
import os
from vow import Vow
from vow.images.pipeline import image_variations
from vow.testing import wait_until
from vow_image_sim import plugin

real = plugin.ImageSimProvider.generate
def generate(self, request, ctx):
    if request.style == "abstract":  # die mid-generation, once the other two are stored as done
        def finished(style):
            record = vow.get("images/crash." + style)
            return record is not None and record.settled
        try:
            wait_until(lambda: finished("photorealistic") and finished("cartoon"), timeout=60,
                       message="the other two styles settled in the store")
        finally:
            os._exit(9)
    return real(self, request, ctx)
plugin.ImageSimProvider.generate = generate

vow = Vow(store={store!r})
vow.run("images/crash", image_variations, *{args!r}, **{kwargs!r})
"""


def test_a_process_killed_mid_run_resumes_without_generating_finished_styles_again(tmp_path: Path) -> None:
    ledger, store = tmp_path / "ledger.sqlite", f"sqlite:{tmp_path / 'vow.sqlite'}"
    args = [PROMPT, STYLES, str(tmp_path / "out")]
    kwargs = {"size": 64, "options": {"ledger": str(ledger), "latency": 0}}
    script = textwrap.dedent(CHILD.format(ledger=str(ledger), store=store, args=args, kwargs=kwargs))
    proc = python("-c", script)
    assert proc.returncode == 9, proc.stderr
    assert generations(ledger) == {"images/crash.photorealistic": (1, 0), "images/crash.cartoon": (1, 0)}

    client = Vow(store=store)
    try:
        result = client.run("images/crash", image_variations, *args, **kwargs)
    finally:
        client.close()
    assert [img["ok"] for img in result["images"]] == [True, True, True]
    # Every style billed exactly once: the resumed run read the two finished ones from the store.
    assert generations(ledger) == {f"images/crash.{s}": (1, 0) for s in STYLES}
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == sorted(f"{s}.png" for s in STYLES)


STOPPED_CHILD = """
import os, sys, threading
import vow.files
from vow import Vow
from vow.images.pipeline import image_variations

real_replace = os.replace
def replace(src, dst):
    if os.path.basename(dst) == {stop_at!r}:  # the file's bytes are in its temp file: stop before the rename
        open({ready!r}, "w").close()
        threading.Event().wait()  # until the test kills this process
    return real_replace(src, dst)
vow.files.os = type(sys)("os_with_a_stop")
vow.files.os.__dict__.update(os.__dict__, replace=replace)

vow = Vow(store={store!r})
vow.run({run_id!r}, image_variations, *{args!r}, **{kwargs!r})
"""


def _killed_while_writing(tmp_path: Path, stop_at: str, run_id: str) -> tuple[str, Path, list[Any], dict[str, Any]]:
    """Run image_variations (cartoon, abstract) in a child killed (SIGKILL) once it is about to rename
    ``stop_at`` into place; the store, output folder, arguments and keyword arguments of that run."""
    ledger, store, out, ready = (tmp_path / "ledger.sqlite", f"sqlite:{tmp_path / 'vow.sqlite'}", tmp_path / "out",
                                 tmp_path / "ready")
    args: list[Any] = [PROMPT, ["cartoon", "abstract"], str(out)]
    kwargs: dict[str, Any] = {"size": 64, "options": {"ledger": str(ledger), "latency": 0}}
    child = STOPPED_CHILD.format(stop_at=stop_at, run_id=run_id, ready=str(ready), store=store, args=args,
                                 kwargs=kwargs)
    proc = spawn("-c", textwrap.dedent(child))
    try:
        wait_until(lambda: ready.exists() or proc.poll() is not None, timeout=60,
                   message=f"the child writing {stop_at}")
        assert proc.poll() is None, proc.communicate()[1]
    finally:
        kill(proc)
    return store, out, args, kwargs


def test_a_run_killed_while_writing_its_gallery_resumes_with_a_whole_gallery_and_no_temp_files(tmp_path: Path) -> None:
    store, out, args, kwargs = _killed_while_writing(tmp_path, "index.html", "images/gallery-crash")
    left = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(".index.html."), left  # the killed writer's temp file
    assert not (out / "index.html").exists()  # nothing half-written is visible

    client = Vow(store=store)
    try:
        result = client.run("images/gallery-crash", image_variations, *args, **kwargs)
    finally:
        client.close()
    assert [img["ok"] for img in result["images"]] == [True, True]
    assert sorted(p.name for p in out.iterdir()) == ["abstract.png", "cartoon.png", "gallery.json", "index.html"]
    page = Sources()
    page.feed((out / "index.html").read_text())
    assert page.srcs == ["cartoon.png", "abstract.png"]
    assert json.loads((out / "gallery.json").read_text())["run_id"] == "images/gallery-crash"




def test_a_style_killed_while_writing_that_then_fails_for_good_leaves_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: killed while writing cartoon.png, then failing for good on the resumed run, the style never wrote
    # cartoon.png again, so nothing removed the killed writer's .cartoon.png.<hex>.tmp.
    store, out, args, kwargs = _killed_while_writing(tmp_path, "cartoon.png", "images/image-crash")
    assert [p.name for p in out.iterdir() if p.name.startswith(".cartoon.png.")]  # the killed writer's

    from vow_image_sim import plugin

    real = plugin.ImageSimProvider.generate

    def refuse_cartoon(self, request, ctx):  # type: ignore[no-untyped-def]
        if request.style == "cartoon":
            raise PermanentError("image_sim: content policy violation")
        return real(self, request, ctx)

    monkeypatch.setattr(plugin.ImageSimProvider, "generate", refuse_cartoon)
    client = Vow(store=store)
    try:
        result = client.run("images/image-crash", image_variations, *args, **kwargs)
    finally:
        client.close()
    assert [img["ok"] for img in result["images"]] == [False, True]
    assert sorted(p.name for p in out.iterdir()) == ["abstract.png", "gallery.json", "index.html"]
