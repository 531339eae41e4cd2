"""Small Pillow helpers the three painters share: colours, gradients, glows, grain, PNG bytes."""

from __future__ import annotations

import colorsys
import io
import random
from collections.abc import Callable, Sequence

from PIL import Image, ImageChops, ImageDraw, ImageFilter

RGB = tuple[int, int, int]


def hsv(h: float, s: float, v: float) -> RGB:
    """An RGB colour from hue (wraps around), saturation and value in 0..1."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return round(r * 255), round(g * 255), round(b * 255)


def mix(a: Sequence[int], b: Sequence[int], t: float) -> RGB:
    """``a`` moved a fraction ``t`` of the way towards ``b``."""
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def shift_hue(colour: Sequence[int], amount: float) -> RGB:
    """``colour`` with its hue turned by ``amount`` (a fraction of the colour wheel)."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in colour))
    return hsv(h + amount, s, v)


def vertical_gradient(size: tuple[int, int], stops: Sequence[tuple[float, Sequence[int]]]) -> Image.Image:
    """An RGB image running through ``stops`` (position 0..1 from the top, colour) top to bottom."""
    width, height = size
    column = []
    for y in range(height):
        pos = y / max(1, height - 1)
        for (p0, c0), (p1, c1) in zip(stops, stops[1:]):
            if pos <= p1:
                column.append(mix(c0, c1, (pos - p0) / max(1e-9, p1 - p0) if pos > p0 else 0.0))
                break
        else:
            column.append(mix(stops[-1][1], stops[-1][1], 0.0))
    strip = Image.new("RGB", (1, height))
    strip.putdata(column)
    return strip.resize((width, height), Image.Resampling.NEAREST)


def ramp_mask(size: tuple[int, int], y0: float, y1: float, top: float = 0.0, bottom: float = 1.0) -> Image.Image:
    """An "L" mask that is ``top`` above row ``y0``, ``bottom`` below ``y1``, and eases between them."""
    width, height = size
    values = []
    for y in range(height):
        t = 0.0 if y <= y0 else 1.0 if y >= y1 else (y - y0) / (y1 - y0)
        t = t * t * (3 - 2 * t)  # smoothstep: no visible edge where the ramp starts
        values.append(round(255 * (top + (bottom - top) * t)))
    strip = Image.new("L", (1, height))
    strip.putdata(values)
    return strip.resize((width, height), Image.Resampling.NEAREST)


def corner_gradient(size: tuple[int, int], corners: Sequence[Sequence[int]]) -> Image.Image:
    """A smooth blend of four corner colours (top-left, top-right, bottom-left, bottom-right)."""
    tiny = Image.new("RGB", (2, 2))
    tiny.putdata([tuple(c) for c in corners])
    # Upscale in two steps: bilinear from 2x2 straight to full size leaves flat margins.
    return tiny.resize((64, 64), Image.Resampling.BICUBIC).resize(size, Image.Resampling.BILINEAR)


_RADIAL: Image.Image | None = None


def glow(img: Image.Image, centre: tuple[float, float], radius: float, colour: Sequence[int],
         strength: float = 1.0, falloff: float = 2.0) -> None:
    """Light ``img`` with a soft round glow of ``colour`` fading out at ``radius``."""
    global _RADIAL
    if _RADIAL is None:  # 255 at the centre, 0 from the inscribed circle out (Pillow's is 0 -> 181 there)
        _RADIAL = Image.radial_gradient("L").point(lambda v: round(255 * max(0.0, 1 - v / 181)))
    size = max(2, round(radius * 2))
    curve = [round(255 * strength * (v / 255) ** falloff) for v in range(256)]
    mask = _RADIAL.point(curve).resize((size, size), Image.Resampling.BILINEAR)
    box = (round(centre[0] - size / 2), round(centre[1] - size / 2))
    img.paste(Image.new("RGB", (size, size), tuple(colour)), box, mask)


def soft_mask(size: tuple[int, int], draw_shapes: Callable[[ImageDraw.ImageDraw, float], object], blur: float,
              shrink: int = 4) -> Image.Image:
    """An "L" mask drawn small by ``draw_shapes(draw, scale)``, blurred and scaled up: cheap soft shapes."""
    small = Image.new("L", (max(1, size[0] // shrink), max(1, size[1] // shrink)), 0)
    draw_shapes(ImageDraw.Draw(small), 1 / shrink)
    small = small.filter(ImageFilter.GaussianBlur(blur / shrink))
    return small.resize(size, Image.Resampling.BILINEAR)


def grain(img: Image.Image, rng: random.Random, amount: int = 10) -> Image.Image:
    """``img`` with monochrome film grain of about ``amount`` levels (seeded: repeatable)."""
    noise = Image.frombytes("L", img.size, rng.randbytes(img.size[0] * img.size[1]))
    noise = noise.point(lambda v: v * 2 * amount // 255)
    return ImageChops.add(img, Image.merge("RGB", (noise, noise, noise)), 1.0, -amount)


def vignette(img: Image.Image, strength: float = 0.35) -> Image.Image:
    """``img`` darkened towards its corners, as a lens does."""
    shade = Image.radial_gradient("L").resize(img.size, Image.Resampling.BILINEAR)
    shade = shade.point(lambda v: round(255 * (1 - strength * min(1.0, v / 255) ** 2.2)))
    return ImageChops.multiply(img, Image.merge("RGB", (shade, shade, shade)))


def png_bytes(img: Image.Image) -> bytes:
    """The image encoded as PNG (the same pixels always give the same bytes)."""
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=6)
    return buf.getvalue()
