"""The generate_image leaf and the pipeline's helpers, called directly with a hand-made context."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import pytest

from vow.errors import ConfigError, PermanentError, TransientError, UnknownPluginError
from vow.hookspecs import hookimpl
from vow.images import GeneratedImage, ImageRequest
from vow.images.pipeline import generate_image, parse_size, png_size
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


@pytest.mark.parametrize("style", ["cartoon\n", "../evil", "/etc/passwd", "a/b", "-rf", ".hidden", "car\x00toon",
                                   "x" * 65, "nul", "CON", "Lpt1", "caf\u00e9", ""])
def test_a_style_that_would_make_a_bad_file_name_is_refused_before_any_write(tmp_path: Path, style: str) -> None:
    # "cartoon\n" matched the old pattern (^...$ lets a final line break through) and named a file "cartoon\n.png".
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="a style name is "):
        generate_image(LeafContext("r.x", plugins=PLUGINS), "image_sim", {"prompt": "p", "style": style}, str(out),
                       sim(tmp_path))
    assert not out.exists()


def test_styles_that_differ_only_in_case_are_one_file_and_refused(installed_plugins, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # On macOS or Windows Cartoon.png and cartoon.png are one file: one style's image overwrote the other's.
    from vow.images.pipeline import image_variations
    from vow.pipeline import SpecError, parse
    from vow.pipeline.plan import make_plan

    with pytest.raises(ConfigError, match="styles has duplicates"):
        next(image_variations(None, "p", ["cartoon", "Cartoon"], str(tmp_path)))  # type: ignore[arg-type]
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))
    text = ("version: 1\nname: case\nfan_out:\n  - {image: image_sim, prompt: a fox, style: cartoon}\n"
            "  - {image: image_sim, prompt: a fox, style: Cartoon, id: big}\n")
    with pytest.raises(SpecError) as caught:
        make_plan(parse(text, "c.yaml"), plugins=installed_plugins)
    assert str(caught.value) == ("c.yaml:5: fan_out[1]: styles 'cartoon' and 'Cartoon' (one file where letter case "
                                 "does not count) are generated twice (fan_out[0] and fan_out[1]); each style is one "
                                 "image file, Cartoon.png")


class BytesProvider:
    """An image provider answering with the bytes a test chose: a broken server's."""

    answer = b""

    def generate(self, request: ImageRequest, ctx: LeafContext) -> GeneratedImage:
        return GeneratedImage(png=self.answer, provider="bytes")


class BytesPlugin:
    @staticmethod
    @hookimpl
    def vow_register_image_providers(register) -> None:  # type: ignore[no-untyped-def]
        register("bytes", BytesProvider)


def a_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x10\x20\x30" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


GOOD = a_png(8, 8)


@pytest.mark.parametrize("answer, problem", [
    (GOOD[:-12], "cut short"),  # no IEND: a body cut short
    (GOOD[:40], "cut short"),
    (GOOD[:60] + bytes([GOOD[60] ^ 0xFF]) + GOOD[61:], "damaged PNG \\(the CRC of its 'IDAT' chunk"),
    (GOOD[:8] + b"\xff\xff\xff\xff" + GOOD[12:], "cut short"),  # a length past the end
    (b"GIF89a" + GOOD[6:], "not a PNG"),
])
def test_a_cut_or_damaged_png_is_a_permanent_error_and_no_file(tmp_path: Path, answer: bytes, problem: str) -> None:
    # Before: a PNG whose header was fine was written as it came, and the gallery showed a broken image as a success.
    plugins = Plugins(entry_points=False)
    plugins.add(BytesPlugin, "bytes")
    BytesProvider.answer = answer
    out = tmp_path / "out"
    with pytest.raises(PermanentError, match=f"bytes image for style 'cartoon' .*{problem}"):
        generate_image(LeafContext("r.cartoon", plugins=plugins), "bytes", {"prompt": "p", "style": "cartoon",
                                                                            "width": 8, "height": 8}, str(out))
    assert not out.exists()
    BytesProvider.answer = GOOD + b"\n"  # bytes after IEND: harmless, kept
    meta = generate_image(LeafContext("r.cartoon", plugins=plugins), "bytes",
                          {"prompt": "p", "style": "cartoon", "width": 8, "height": 8}, str(out))
    assert (meta["width"], meta["height"]) == (8, 8) and (out / "cartoon.png").read_bytes() == GOOD + b"\n"
