"""The painters: deterministic, sized as asked, and different for different styles and prompts."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageStat

from vow_image_sim.render import STYLES, render_png


def decode(png: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(png))
    img.load()
    return img


def difference(a: bytes, b: bytes) -> float:
    """Mean absolute pixel difference (0..255) of two same-sized PNGs."""
    diff = ImageChops.difference(decode(a).convert("RGB"), decode(b).convert("RGB"))
    return sum(ImageStat.Stat(diff).mean) / 3


@pytest.mark.parametrize("style", STYLES)
def test_same_inputs_give_the_same_bytes(style: str) -> None:
    assert render_png("a fox in a misty forest", style, 7, 96, 64) == render_png("a fox in a misty forest", style, 7,
                                                                                 96, 64)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("size", [(160, 96), (96, 160), (16, 16)])
def test_every_png_decodes_at_the_requested_size(style: str, size: tuple[int, int]) -> None:
    img = decode(render_png("sunset over the ocean", style, 0, *size))
    assert img.format == "PNG"
    assert img.size == size
    assert img.mode == "RGB"


def test_styles_look_different() -> None:
    pngs = {s: render_png("a fox in a misty forest", s, 0, 128, 128) for s in STYLES}
    for a in STYLES:
        for b in STYLES:
            if a < b:
                assert difference(pngs[a], pngs[b]) > 20, (a, b)


@pytest.mark.parametrize("style", STYLES)
def test_prompts_and_seeds_change_the_picture(style: str) -> None:
    base = render_png("a fox in a misty forest", style, 0, 128, 128)
    assert difference(base, render_png("a lighthouse on a stormy coast", style, 0, 128, 128)) > 8
    assert difference(base, render_png("a fox in a misty forest", style, 1, 128, 128)) > 8


@pytest.mark.parametrize("style", ["photorealistic", "cartoon"])
def test_the_word_night_paints_a_darker_picture(style: str) -> None:
    def brightness(prompt: str) -> float:
        return sum(ImageStat.Stat(decode(render_png(prompt, style, 0, 128, 128)).convert("L")).mean)

    assert brightness("mountains by a lake at night") < brightness("mountains by a lake at noon") - 30


def test_bad_style_and_size_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown style 'oil'.*photorealistic, cartoon, abstract"):
        render_png("x", "oil")
    with pytest.raises(ValueError, match="width must be between 16 and 2048"):
        render_png("x", "cartoon", 0, 4096, 512)
