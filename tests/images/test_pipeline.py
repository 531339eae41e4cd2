"""The generate_image leaf and the pipeline's helpers, called directly with a hand-made context."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vow.errors import ConfigError, PermanentError, TransientError, UnknownPluginError
from vow.images.pipeline import generate_image, parse_size, png_size, write_atomic
from vow.leaf import LeafContext
from vow.plugins import Plugins

pytest.importorskip("vow_image_sim")  # the leaf runs the simulated provider, as a user without keys would

PLUGINS = Plugins()  # the registry the engine would hand the leaf: this environment's plugins


def sim(tmp_path: Path) -> dict:
    return {"ledger": str(tmp_path / "sim" / "ledger.sqlite"), "latency": 0}


def test_writes_the_png_and_returns_its_metadata(tmp_path: Path) -> None:
    out = tmp_path / "out"
    request = {"prompt": "a fox in a misty forest", "style": "abstract", "seed": 2, "width": 120, "height": 80}
    meta = generate_image(LeafContext("run.abstract", attempt=3, plugins=PLUGINS), "image_sim", request, str(out),
                          sim(tmp_path))

    png = (out / "abstract.png").read_bytes()
    assert meta["path"] == "abstract.png"
    assert meta["sha256"] == hashlib.sha256(png).hexdigest()
    assert (meta["width"], meta["height"], meta["bytes"]) == (120, 80, len(png))
    assert (meta["provider"], meta["model"], meta["attempt"], meta["duplicate"]) == ("image_sim", "image-sim-1", 3,
                                                                                     False)
    assert meta["idempotency_key"] == "run.abstract"
    assert meta["finished_at"] >= meta["started_at"] and meta["elapsed_ms"] >= 0
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_retried_attempt_is_answered_by_the_provider_without_a_new_generation(tmp_path: Path) -> None:
    request = {"prompt": "sunset over the ocean", "style": "cartoon", "width": 64, "height": 64}
    first = generate_image(LeafContext("run.cartoon", plugins=PLUGINS), "image_sim", request, str(tmp_path / "out"),
                           sim(tmp_path))
    again = generate_image(LeafContext("run.cartoon", attempt=2, plugins=PLUGINS), "image_sim", request,
                           str(tmp_path / "out"), sim(tmp_path))
    assert again["sha256"] == first["sha256"] and again["duplicate"] and not first["duplicate"]


def test_faults_wrap_the_provider(tmp_path: Path) -> None:
    request = {"prompt": "p", "style": "cartoon", "width": 32, "height": 32}
    faults = {"fail_attempts": [1], "message": "Image generation service timeout for style 'cartoon'"}
    with pytest.raises(TransientError, match="service timeout for style 'cartoon' \\(attempt 1\\)"):
        generate_image(LeafContext("r.cartoon", plugins=PLUGINS), "image_sim", request, str(tmp_path), sim(tmp_path),
                       faults)
    assert generate_image(LeafContext("r.cartoon", attempt=2, plugins=PLUGINS), "image_sim", request, str(tmp_path),
                          sim(tmp_path), faults)["attempt"] == 2


def test_bad_input_is_named(tmp_path: Path) -> None:
    ctx = LeafContext("r.x", plugins=PLUGINS)
    with pytest.raises(ConfigError, match=r"image request\.colour: unknown key \(allowed: prompt, "):
        generate_image(ctx, "image_sim", {"prompt": "p", "style": "cartoon", "colour": 1}, str(tmp_path), sim(tmp_path))
    with pytest.raises(ConfigError, match="style '../evil'"):
        generate_image(ctx, "image_sim", {"prompt": "p", "style": "../evil"}, str(tmp_path), sim(tmp_path))
    with pytest.raises(UnknownPluginError,
                       match="image_provider 'midjourney' is not installed \\(installed: .*image_sim"):
        generate_image(ctx, "midjourney", {"prompt": "p", "style": "cartoon"}, str(tmp_path))
    with pytest.raises(ConfigError, match="image provider 'image_sim' options.*jitter"):
        generate_image(ctx, "image_sim", {"prompt": "p", "style": "cartoon"}, str(tmp_path), {"jitter": 5})


def test_parse_size() -> None:
    assert parse_size(512) == (512, 512)
    assert parse_size("768x512") == (768, 512)
    assert parse_size("300") == (300, 300)
    for bad in (0, -5, True, "big", "0x5", "12x", 1.5):
        with pytest.raises(ConfigError, match="size: expected pixels"):
            parse_size(bad)


def test_png_size_reads_the_header_and_refuses_other_data() -> None:
    from vow_image_sim.render import render_png

    assert png_size(render_png("p", "cartoon", 0, 40, 24)) == (40, 24)
    with pytest.raises(PermanentError, match="is not a PNG"):
        png_size(b"\xff\xd8\xff\xe0 jpeg data......................")


def test_write_atomic_replaces_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "file.html"
    write_atomic(target, "first")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["file.html"]
