"""The abstract painter: a generative composition in a harmonious palette.

Soft glowing fields underneath, then translucent circles and rings, ribbons of fine parallel
Bezier lines, a bold stroke and a grid of dots, all from one palette built around the
prompt's hue.
"""

from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw

from vow_image_sim.canvas import RGB, corner_gradient, grain, hsv, mix, soft_mask
from vow_image_sim.scene import Scene

MAX_WORK = 1100
# Hue offsets of the palette's colours around the base hue.
SCHEMES = {
    "analogous": (0.0, 0.06, 0.12, -0.07, 0.5),
    "triadic": (0.0, 0.33, 0.67, 0.05, 0.38),
    "split": (0.0, 0.42, 0.58, 0.08, -0.05),
    "complementary": (0.0, 0.5, 0.04, 0.54, -0.04),
}

Point = tuple[float, float]


def paint_abstract(scene: Scene, width: int, height: int) -> Image.Image:
    """An abstract composition for ``scene`` at ``width`` x ``height``."""
    scale = min(2.0, MAX_WORK / max(width, height))
    w, h = max(64, round(width * scale)), max(64, round(height * scale))
    rng = scene.rng("abstract")
    dark = scene.time == "night" or (scene.time != "day" and rng.random() < 0.5) or rng.random() < 0.4
    palette = _palette(scene.hue, rng, dark)
    bg = hsv(scene.hue + 0.02, 0.55, 0.13) if dark else hsv(scene.hue + 0.08, 0.1, 0.95)
    img = corner_gradient((w, h), [mix(bg, rng.choice(palette), rng.uniform(0.05, 0.25)) for _ in range(4)])
    u = min(w, h)

    _fields(img, rng, palette, u)
    draw = ImageDraw.Draw(img, "RGBA")
    focal = (w * rng.choice([1 / 3, 2 / 3]), h * rng.choice([1 / 3, 2 / 3]))
    _band(draw, rng, rng.choice(palette), w, h, u)
    for _ in range(rng.randint(2, 3)):
        _ribbon(draw, rng, palette, w, h, u)
    _circles(draw, rng, palette, focal, w, h, u, dark)
    if rng.random() < 0.7:
        _stroke(draw, rng, rng.choice(palette), w, h, u)
    _dots(draw, rng, mix(rng.choice(palette), bg if dark else (255, 255, 255), 0.1), focal, w, h, u)
    img = img.resize((width, height), Image.Resampling.LANCZOS)
    return grain(img, scene.rng("grain"), 4)


def _palette(hue: float, rng: random.Random, dark: bool) -> list[RGB]:
    offsets = SCHEMES[rng.choice(sorted(SCHEMES))]
    colours = []
    for i, off in enumerate(offsets):
        sat = rng.uniform(0.45, 0.85) if i != 4 else 0.9
        val = rng.uniform(0.75, 1.0) if dark else rng.uniform(0.55, 0.92)
        colours.append(hsv(hue + off, sat, val))
    return colours


def _fields(img: Image.Image, rng: random.Random, palette: list[RGB], u: int) -> None:
    """Big blurred blobs of colour: the glow the sharp shapes float on."""
    w, h = img.size
    for colour in rng.sample(palette, 3):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), u * rng.uniform(0.25, 0.45)
        fill = rng.randint(90, 150)

        def blob(d: ImageDraw.ImageDraw, k: float, x: float = x, y: float = y, r: float = r, fill: int = fill) -> None:
            d.ellipse(((x - r) * k, (y - r) * k, (x + r) * k, (y + r) * k), fill=fill)

        mask = soft_mask(img.size, blob, blur=r * 0.6, shrink=8)
        img.paste(colour, (0, 0, w, h), mask)


def _bezier(p0: Point, p1: Point, p2: Point, p3: Point, steps: int = 60) -> list[Point]:
    out = []
    for i in range(steps + 1):
        t = i / steps
        a, b, c, d = (1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t * t * (1 - t), t ** 3
        out.append((a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0], a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1]))
    return out


def _random_curve(rng: random.Random, w: int, h: int) -> tuple[Point, Point, Point, Point]:
    """A curve entering on one side and leaving on the opposite one."""
    if rng.random() < 0.5:
        return ((-0.1 * w, rng.uniform(0.1, 0.9) * h), (rng.uniform(0.2, 0.45) * w, rng.uniform(-0.3, 1.3) * h),
                (rng.uniform(0.55, 0.8) * w, rng.uniform(-0.3, 1.3) * h), (1.1 * w, rng.uniform(0.1, 0.9) * h))
    return ((rng.uniform(0.1, 0.9) * w, -0.1 * h), (rng.uniform(-0.3, 1.3) * w, rng.uniform(0.2, 0.45) * h),
            (rng.uniform(-0.3, 1.3) * w, rng.uniform(0.55, 0.8) * h), (rng.uniform(0.1, 0.9) * w, 1.1 * h))


def _band(draw: ImageDraw.ImageDraw, rng: random.Random, colour: RGB, w: int, h: int, u: int) -> None:
    """A wide translucent band that swells in the middle and tapers at both ends."""
    curve = _bezier(*_random_curve(rng, w, h))
    thickness = u * rng.uniform(0.08, 0.16)
    edge = []
    for i, ((x0, y0), (x1, y1)) in enumerate(zip(curve, curve[1:])):
        length = math.hypot(x1 - x0, y1 - y0) or 1
        swell = thickness * (0.25 + 0.75 * math.sin(math.pi * i / (len(curve) - 2)))
        edge.append((x0 - (y1 - y0) / length * swell, y0 + (x1 - x0) / length * swell))
    draw.polygon(curve[:-1] + edge[::-1], fill=(*colour, 110))


def _ribbon(draw: ImageDraw.ImageDraw, rng: random.Random, palette: list[RGB], w: int, h: int, u: int) -> None:
    """Fine parallel lines along one curve, their colour sliding from one palette colour to another."""
    p0, p1, p2, p3 = _random_curve(rng, w, h)
    start, end = rng.sample(palette, 2)
    lines, gap = rng.randint(10, 22), u * rng.uniform(0.006, 0.012)
    twist = rng.uniform(0.5, 2.0)
    for k in range(lines):
        off = (k - lines / 2) * gap
        # The offset swings along the curve, so the ribbon fans out and pinches like silk.
        shifted = [(x, y + off * (1 + twist * math.sin(3 * x / w + k * 0.05))) for x, y in _bezier(p0, p1, p2, p3)]
        colour = mix(start, end, k / (lines - 1))
        draw.line(shifted, fill=(*colour, 200), width=max(1, round(u * 0.003)), joint="curve")


def _circles(draw: ImageDraw.ImageDraw, rng: random.Random, palette: list[RGB], focal: Point,
             w: int, h: int, u: int, dark: bool) -> None:
    """A large circle at the focal point, smaller ones around it, some of them only rings."""
    fx, fy = focal
    r = u * rng.uniform(0.17, 0.26)
    draw.ellipse((fx - r, fy - r, fx + r, fy + r), fill=(*palette[0], 215))
    for _ in range(rng.randint(5, 9)):
        a, d = rng.uniform(0, 2 * math.pi), u * rng.uniform(0.1, 0.55)
        x, y, cr = fx + d * math.cos(a), fy + d * math.sin(a), u * rng.uniform(0.03, 0.15)
        colour = rng.choice(palette)
        if rng.random() < 0.35:
            draw.ellipse((x - cr, y - cr, x + cr, y + cr), outline=(*colour, 230), width=max(2, round(u * 0.008)))
        else:
            draw.ellipse((x - cr, y - cr, x + cr, y + cr), fill=(*colour, rng.randint(120, 190)))
    ring = r * rng.uniform(1.15, 1.35)  # a thin halo around the focal circle
    draw.ellipse((fx - ring, fy - ring, fx + ring, fy + ring),
                 outline=(255, 255, 255, 120) if dark else (30, 30, 40, 90), width=max(1, round(u * 0.003)))


def _stroke(draw: ImageDraw.ImageDraw, rng: random.Random, colour: RGB, w: int, h: int, u: int) -> None:
    """One bold brush-like stroke with round ends."""
    points = _bezier(*_random_curve(rng, w, h))
    i0 = rng.randint(5, 20)
    points = points[i0:i0 + rng.randint(25, 40)]
    width = u * rng.uniform(0.025, 0.045)
    draw.line(points, fill=colour, width=round(width), joint="curve")
    for x, y in (points[0], points[-1]):
        draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=colour)


def _dots(draw: ImageDraw.ImageDraw, rng: random.Random, colour: RGB, focal: Point, w: int, h: int, u: int) -> None:
    """A small grid of dots in the quarter opposite the focal point: calm against the busy part."""
    cols, rows, gap = rng.randint(4, 7), rng.randint(3, 5), u * 0.035
    x0 = (w - focal[0]) - cols * gap / 2
    y0 = (h - focal[1]) - rows * gap / 2
    r = u * 0.006
    for i in range(cols):
        for j in range(rows):
            x, y = x0 + i * gap, y0 + j * gap
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(*colour, 230))
