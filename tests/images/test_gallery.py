"""The gallery page: every image listed with files that exist, failures shown, text escaped."""

from __future__ import annotations

import hashlib
import json
from html.parser import HTMLParser
from pathlib import Path

from vow.images.gallery import render_gallery, write_gallery


class Page(HTMLParser):
    """Collects what a test needs from the page: image sources, card titles, links, all text."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.titles: list[str] = []
        self.links: list[str] = []
        self.external: list[str] = []
        self.text: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(a)
        if tag == "a":
            self.links.append(a["href"])
        if tag in ("script", "link") or a.get("src", "").startswith(("http:", "https:", "//")):
            self.external.append(tag)
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag: str) -> None:
        self._in_h2 = False

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.titles.append(data.strip())
        self.text.append(data)


FAKE_SHA = hashlib.sha256(b"\x89PNG fake").hexdigest()


def image(style: str, attempt: int, start: float, elapsed: float) -> dict:
    return {"style": style, "ok": True, "path": f"{style}.png", "sha256": FAKE_SHA, "bytes": 2048,
            "width": 64, "height": 48, "provider": "image_sim", "model": "image-sim-1",
            "revised_prompt": f"{style} take", "attempt": attempt, "duplicate": False,
            "idempotency_key": f"run/1.{style}", "started_at": start, "finished_at": start + elapsed,
            "elapsed_ms": elapsed * 1000}


def make_run(tmp_path: Path) -> dict:
    for style in ("photorealistic", "abstract"):
        (tmp_path / f"{style}.png").write_bytes(b"\x89PNG fake")  # whose sha256 is FAKE_SHA
    return {"run_id": "run/1", "prompt": "a fox <script>alert(1)</script> & friends", "provider": "image_sim",
            "seed": 0, "width": 64, "height": 48, "started_at": 1000.0, "finished_at": 1000.8,
            "images": [image("photorealistic", 1, 1000.01, 0.7), image("abstract", 2, 1000.4, 0.35),
                       {"style": "cartoon", "ok": False, "error": "PermanentError: content policy"}]}


def test_lists_every_image_and_its_file_exists(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    paths = write_gallery(str(tmp_path), run)
    assert paths == {"gallery": str(tmp_path / "index.html"), "manifest": str(tmp_path / "gallery.json"),
                     "wall_ms": 800.0}

    page = Page()
    page.feed((tmp_path / "index.html").read_text())
    assert [i["src"] for i in page.images] == ["photorealistic.png", "abstract.png"]
    assert all((tmp_path / i["src"]).exists() for i in page.images)
    assert [(i["width"], i["height"]) for i in page.images] == [("64", "48")] * 2
    assert page.titles == ["photorealistic", "abstract", "cartoon"]
    assert "gallery.json" in page.links and page.external == []
    text = " ".join(page.text)
    assert "run/1" in text and "PermanentError: content policy" in text
    assert "attempt 2 · retried" in text and "first attempt" in text
    assert "0.80 s" in text  # the wall time
    assert json.loads((tmp_path / "gallery.json").read_text()) == run


def test_prompt_is_escaped(tmp_path: Path) -> None:
    html = render_gallery(make_run(tmp_path))
    assert "<script>alert(1)" not in html
    assert "a fox &lt;script&gt;alert(1)&lt;/script&gt; &amp; friends" in html


def test_timeline_places_each_attempt_on_the_run_clock(tmp_path: Path) -> None:
    html = render_gallery(make_run(tmp_path))
    # abstract: waited 0.4 s of 0.8 s (its failed first attempt and back-off), then ran 0.35 s
    assert 'class="seg wait" style="left:0;width:50.0%"' in html
    assert 'class="seg run" style="left:50.0%;width:43.8%"' in html


def test_the_attempt_count_includes_styles_that_failed_for_good(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    run["images"][2]["attempt"] = 5  # cartoon failed for good on its fifth attempt
    page = Page()
    page.feed(render_gallery(run))
    text = " ".join(" ".join(page.text).split())
    assert "8 attempts in all (2 retried)" in text  # 1 + 2 + 5, abstract and cartoon retried
    assert "failed after 5 attempts" in text


def test_output_files_are_readable_by_others_as_the_umask_allows(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        paths = write_gallery(str(tmp_path / "out"), make_run(tmp_path))
    finally:
        os.umask(old)
    for key in ("gallery", "manifest"):
        assert stat.S_IMODE(os.stat(paths[key]).st_mode) == 0o644  # a web server can serve the gallery


def test_any_value_makes_valid_files(tmp_path: Path) -> None:
    # A provider's JSON error can carry "\ud800": the page's UTF-8 encoding raised UnicodeEncodeError after
    # gallery.json was written (a manifest without its page); a NaN made gallery.json invalid JSON, and an
    # integer of 5,000 digits raised ValueError.
    run = make_run(tmp_path)
    run["prompt"] = "a fox \ud800"
    run["images"][2]["error"] = "PermanentError: openai rejected the request: bad \udcff <b>"
    run["images"][0].update(model=float("nan"), revised_prompt=float("inf"), detail=10 ** 5000, extra={1, 2})
    write_gallery(str(tmp_path), run)

    html = (tmp_path / "index.html").read_bytes().decode("utf-8")  # strict: no surrogate got through
    assert "a fox \ufffd" in html and "bad \ufffd &lt;b&gt;" in html

    def strict(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    manifest = json.loads((tmp_path / "gallery.json").read_bytes().decode("utf-8"), parse_constant=strict)
    assert manifest["prompt"] == "a fox \ufffd"
    first = manifest["images"][0]
    assert (first["model"], first["revised_prompt"], first["detail"], first["extra"]) == (None, None, None, "{1, 2}")
    assert "\\ud" not in (tmp_path / "gallery.json").read_text()  # no escaped lone surrogate either


def test_an_image_another_run_replaced_is_not_shown_as_this_runs(tmp_path: Path) -> None:
    # Before: two runs writing cartoon.png in one folder; the first's gallery showed the second's picture as its own.
    run = make_run(tmp_path)
    (tmp_path / "abstract.png").write_bytes(b"\x89PNG another run's")
    (tmp_path / "photorealistic.png").unlink()
    write_gallery(str(tmp_path), run)
    page = Page()
    page.feed((tmp_path / "index.html").read_text())
    assert page.images == []
    text = " ".join(page.text)
    assert "photorealistic.png is gone" in text
    assert "abstract.png is no longer this run's image: another run writing this folder replaced it" in text
    manifest = json.loads((tmp_path / "gallery.json").read_text())
    assert [i.get("file") for i in manifest["images"]] == ["missing", "replaced", None]
