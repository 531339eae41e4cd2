"""The cartoon painter: flat saturated colours, thick dark outlines, friendly round shapes.

Drawn at twice the size and scaled down, so the outlines come out smooth (Pillow's shapes are
not antialiased).
"""

from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw

from vow_image_sim.canvas import RGB, hsv, mix
from vow_image_sim.scene import Scene

INK: RGB = (44, 32, 58)
MAX_WORK = 1100
# Sky colours from the top of the picture down to the horizon, painted as flat bands.
SKIES: dict[str, tuple[RGB, RGB]] = {
    "day": ((84, 176, 238), (182, 228, 252)),
    "sunset": ((150, 96, 178), (255, 196, 120)),
    "dawn": ((140, 166, 236), (255, 212, 196)),
    "night": ((20, 26, 70), (58, 74, 136)),
}
SKY_BANDS = 5


class _Pen:
    """Drawing helpers that share the outline width and the unit of length."""

    def __init__(self, img: Image.Image) -> None:
        self.draw = ImageDraw.Draw(img)
        self.glaze = ImageDraw.Draw(img, "RGBA")  # for the few translucent touches
        self.w, self.h = img.size
        self.u = min(self.w, self.h)
        self.line = max(2, round(self.u * 0.011))

    def circle(self, x: float, y: float, r: float, fill: RGB, outline: bool = True) -> None:
        self.draw.ellipse((x - r, y - r, x + r, y + r), fill=fill,
                          outline=INK if outline else None, width=self.line)

    def poly(self, points: list[tuple[float, float]], fill: RGB) -> None:
        self.draw.polygon(points, fill=fill, outline=INK, width=self.line)


def paint_cartoon(scene: Scene, width: int, height: int) -> Image.Image:
    """A cartoon landscape for ``scene`` at ``width`` x ``height``."""
    scale = min(2.0, MAX_WORK / max(width, height))
    w, h = max(64, round(width * scale)), max(64, round(height * scale))
    img = Image.new("RGB", (w, h))
    pen = _Pen(img)
    rng = scene.rng("cartoon")
    top, horizon = SKIES[scene.time]
    for i in range(SKY_BANDS):  # flat bands of sky, lighter towards the horizon
        pen.draw.rectangle((0, h * 0.7 * i / SKY_BANDS, w, h), fill=mix(top, horizon, i / (SKY_BANDS - 1)))

    if scene.time == "night":
        _stars(pen, rng)
        light = _moon(pen, rng)
    else:
        light = _sun(pen, rng, scene.time)
    # Clouds in their own slots, away from the sun or moon, so nothing hides a face.
    slots = [k for k in range(4) if abs((k + 0.5) / 4 * w - light) > w * 0.22]
    for k in rng.sample(slots, min(len(slots), 2 if scene.time != "night" else 1)):
        _cloud(pen, rng, scene.time, w * (k + rng.uniform(0.3, 0.7)) / 4)
    ground = h * (0.7 if scene.has("water") else 1.0)
    if scene.has("mountains") or scene.has("snow"):
        _mountains(pen, rng, scene, ground)
    _hills(pen, rng, scene, ground)
    if scene.has("water"):
        _sea(pen, rng, scene, ground)
    if scene.subject is not None and scene.subject in CRITTERS:
        _critter(pen, rng, scene, scene.subject, ground)
    return img.resize((width, height), Image.Resampling.LANCZOS)


def _sun(pen: _Pen, rng: random.Random, time: str) -> float:
    x = pen.w * rng.choice([rng.uniform(0.16, 0.32), rng.uniform(0.68, 0.84)])
    y = pen.h * (0.2 if time == "day" else 0.3)
    r = pen.u * 0.09
    spin = rng.uniform(0, math.pi)
    for k in range(12):  # rays first, so the disc covers their inner ends
        a = spin + k * math.pi / 6
        tip, side = r * (1.75 if k % 2 else 1.5), r * 1.05
        pen.poly([(x + side * math.cos(a - 0.2), y + side * math.sin(a - 0.2)),
                  (x + tip * math.cos(a), y + tip * math.sin(a)),
                  (x + side * math.cos(a + 0.2), y + side * math.sin(a + 0.2))], (255, 176, 40))
    pen.circle(x, y, r, (255, 214, 64) if time == "day" else (255, 196, 72))
    _face(pen, x, y, r, asleep=False)
    return x


def _moon(pen: _Pen, rng: random.Random) -> float:
    x, y, r = pen.w * rng.uniform(0.18, 0.82), pen.h * 0.2, pen.u * 0.08
    pen.circle(x, y, r, (255, 240, 170))
    pen.circle(x + r * 0.45, y - r * 0.45, r * 0.16, (240, 220, 150), outline=False)
    pen.circle(x - r * 0.5, y + r * 0.45, r * 0.11, (240, 220, 150), outline=False)
    _face(pen, x, y, r, asleep=True)
    return x


def _face(pen: _Pen, x: float, y: float, r: float, asleep: bool) -> None:
    """Two eyes, pink cheeks and a smile on a disc of radius ``r``."""
    d = pen.draw
    ex, ey, er = r * 0.32, y - r * 0.12, r * 0.12
    for side in (-1, 1):
        cx = x + side * ex
        if asleep:
            d.arc((cx - er, ey - er, cx + er, ey + er), 20, 160, fill=INK, width=pen.line)
        else:
            d.ellipse((cx - er * 0.8, ey - er, cx + er * 0.8, ey + er), fill=INK)
            d.ellipse((cx - er * 0.15, ey - er * 0.65, cx + er * 0.3, ey - er * 0.2), fill=(255, 255, 255))
        d.ellipse((cx + side * r * 0.14 - er, ey + r * 0.3 - er * 0.6,
                   cx + side * r * 0.14 + er, ey + r * 0.3 + er * 0.6), fill=(255, 138, 138))
    d.arc((x - r * 0.32, y - r * 0.1, x + r * 0.32, y + r * 0.42), 25, 155, fill=INK, width=pen.line)


def _stars(pen: _Pen, rng: random.Random) -> None:
    for _ in range(rng.randint(7, 12)):
        x, y, r = pen.w * rng.random(), pen.h * rng.uniform(0.04, 0.5), pen.u * rng.uniform(0.012, 0.024)
        spin = rng.uniform(0, math.pi)
        points = [(x + (r if k % 2 == 0 else r * 0.45) * math.cos(spin + k * math.pi / 5),
                   y + (r if k % 2 == 0 else r * 0.45) * math.sin(spin + k * math.pi / 5)) for k in range(10)]
        pen.draw.polygon(points, fill=(255, 230, 120), outline=INK, width=max(1, pen.line // 2))


def _cloud(pen: _Pen, rng: random.Random, time: str, x: float) -> None:
    """Round puffs on a flat bottom, outlined as one shape: all outlines first, then all fills."""
    y = pen.h * rng.uniform(0.12, 0.34)
    size = pen.u * rng.uniform(0.05, 0.075)
    puffs = [(x + dx * size, y - dy * size, r * size)
             for dx, dy, r in ((-1.4, 0.0, 0.8), (-0.5, 0.5, 1.1), (0.6, 0.6, 1.25), (1.5, 0.1, 0.85))]
    body = (x - 2.1 * size, y - 0.7 * size, x + 2.3 * size, y + 0.8 * size)
    white = {"day": (255, 255, 255), "night": (150, 160, 210)}.get(time, (255, 236, 236))
    for fill, grow in ((INK, pen.line), (white, 0)):
        for px, py, r in puffs:
            pen.draw.ellipse((px - r - grow, py - r - grow, px + r + grow, py + r + grow), fill=fill)
        x0, y0, x1, y1 = body
        pen.draw.rounded_rectangle((x0 - grow, y0 - grow, x1 + grow, y1 + grow), radius=size * 0.8, fill=fill)


def _hills(pen: _Pen, rng: random.Random, scene: Scene, ground: float) -> None:
    """Three rows of round hills, back to front, with trees standing on them."""
    hue = scene.hue if scene.hue_named else 0.29 + (scene.hue - 0.5) * 0.16
    sat, val = 0.62, 0.82
    if scene.has("desert") and not scene.hue_named:
        hue, sat = 0.09, 0.6
    if scene.has("snow"):
        hue, sat, val = 0.6, 0.08, 0.98
    if scene.time == "night":
        val *= 0.85 if scene.has("snow") else 0.55
    rows = 2 if scene.has("water") else 3
    for row in range(rows):
        t = row / 2
        colour = hsv(hue + 0.03 * row, sat * (0.75 + 0.25 * t), val * (1.05 - 0.12 * row))
        top = ground - pen.h * (0.54 - 0.15 * row) * (0.6 if scene.has("water") else 1.0)
        x = -pen.w * rng.uniform(0.1, 0.3)
        while x < pen.w * 1.1:
            rx = pen.w * rng.uniform(0.28, 0.5)
            ry = (ground - top) * rng.uniform(0.8, 1.1)
            cx, cy = x + rx, ground + ry * 0.25
            pen.draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=colour, outline=INK, width=pen.line)
            trees = rng.randint(2, 5) if scene.has("forest") else rng.randint(0, 2)
            for _ in range(trees):
                tx = cx + rx * rng.uniform(-0.5, 0.5)
                surface = cy - ry * math.sqrt(max(0.0, 1 - ((tx - cx) / rx) ** 2))
                _tree(pen, rng, tx, surface + pen.u * 0.01, pen.u * (0.07 + 0.04 * row), scene)
            if row == rows - 1 and not scene.has("snow"):
                _flowers(pen, rng, cx, cy, rx, ry)
            x += rx * rng.uniform(1.0, 1.5)
        if scene.has("mist") and row < rows - 1:  # flat ribbons of fog drifting between the rows
            for _ in range(2):
                y, half = top + (ground - top) * rng.uniform(0.3, 0.6), pen.h * 0.022
                x0 = pen.w * rng.uniform(-0.3, 0.4)
                pen.glaze.rounded_rectangle((x0, y - half, x0 + pen.w * rng.uniform(0.5, 0.9), y + half),
                                      radius=half, fill=(255, 255, 255, 150))


def _tree(pen: _Pen, rng: random.Random, x: float, base: float, size: float, scene: Scene) -> None:
    leaf_hue = 0.3 if not scene.hue_named else scene.hue + 0.05
    leaves = hsv(leaf_hue + rng.uniform(-0.04, 0.04), 0.7, 0.55 if scene.time != "night" else 0.35)
    if scene.has("snow") or rng.random() < 0.4:  # a pine
        for k in range(3):
            top = base - size * (1.3 - 0.3 * k)
            half = size * (0.25 + 0.1 * k)
            pen.poly([(x, top), (x + half, top + size * 0.55), (x - half, top + size * 0.55)],
                     (250, 250, 255) if scene.has("snow") and k == 0 else leaves)
        pen.draw.rectangle((x - size * 0.07, base - size * 0.05, x + size * 0.07, base + size * 0.12),
                           fill=(140, 90, 60), outline=INK, width=pen.line)
        return
    pen.draw.rectangle((x - size * 0.09, base - size * 0.6, x + size * 0.09, base + size * 0.1),
                       fill=(150, 96, 60), outline=INK, width=pen.line)
    pen.circle(x, base - size * 0.85, size * 0.42, leaves)
    pen.circle(x - size * 0.12, base - size * 0.95, size * 0.12, mix(leaves, (255, 255, 255), 0.3), outline=False)


def _flowers(pen: _Pen, rng: random.Random, cx: float, cy: float, rx: float, ry: float) -> None:
    colours = [(255, 120, 150), (255, 220, 80), (255, 255, 255), (190, 130, 255)]
    for _ in range(rng.randint(2, 5)):
        fx = cx + rx * rng.uniform(-0.6, 0.6)
        fy = cy - ry * math.sqrt(max(0.0, 1 - ((fx - cx) / rx) ** 2)) + pen.u * rng.uniform(0.04, 0.12)
        if fy < pen.h:
            r = pen.u * 0.016
            colour = rng.choice(colours)
            petals = [(fx + r * math.cos(k * 2 * math.pi / 5),
                       fy + r * math.sin(k * 2 * math.pi / 5)) for k in range(5)]
            for grow, fill in ((pen.line // 2, INK), (0, colour)):  # one outline around all petals
                for px, py in petals:
                    pen.draw.ellipse((px - r * 0.75 - grow, py - r * 0.75 - grow, px + r * 0.75 + grow,
                                      py + r * 0.75 + grow), fill=fill)
            pen.circle(fx, fy, r * 0.45, (255, 200, 60), outline=False)


def _sea(pen: _Pen, rng: random.Random, scene: Scene, ground: float) -> None:
    sea = (64, 148, 232) if scene.time != "night" else (34, 60, 130)
    pen.draw.rectangle((-pen.line, ground, pen.w + pen.line, pen.h + pen.line), fill=sea, outline=INK, width=pen.line)
    crest = mix(sea, (255, 255, 255), 0.45)
    for row in range(4):
        y = ground + (pen.h - ground) * (0.2 + 0.2 * row)
        r = pen.u * (0.02 + 0.008 * row)
        x = rng.uniform(-r * 4, 0)
        while x < pen.w:
            pen.draw.arc((x, y - r, x + 2 * r, y + r), 200, 340, fill=crest, width=pen.line)
            x += r * rng.uniform(4, 9)
    bx, by, s = pen.w * rng.uniform(0.25, 0.75), ground + (pen.h - ground) * 0.45, pen.u * 0.07
    pen.draw.line((bx, by, bx, by - s * 2.1), fill=INK, width=pen.line)
    pen.poly([(bx + s * 0.1, by - s * 2.0), (bx + s * 1.2, by - s * 0.35), (bx + s * 0.1, by - s * 0.35)], (255, 255,
                                                                                                            255))
    pen.poly([(bx - s * 0.1, by - s * 1.6), (bx - s * 0.1, by - s * 0.35), (bx - s * 0.8, by - s * 0.35)], (255, 214,
                                                                                                            64))
    pen.poly([(bx - s * 1.2, by - s * 0.2), (bx + s * 1.3, by - s * 0.2), (bx + s * 0.9, by + s * 0.4),
              (bx - s * 0.85, by + s * 0.4)], (224, 72, 72))


def _mountains(pen: _Pen, rng: random.Random, scene: Scene, ground: float) -> None:
    """A few tall peaks behind the hills, with zigzag snow caps."""
    rock = hsv(0.62 + (scene.hue - 0.5) * 0.1, 0.25, 0.62 if scene.time != "night" else 0.4)
    snow = (250, 252, 255) if scene.time != "night" else (206, 214, 240)
    x = -pen.w * rng.uniform(0.05, 0.2)
    while x < pen.w:
        half, height = pen.w * rng.uniform(0.2, 0.32), pen.h * rng.uniform(0.42,
                                                                           0.58) * (0.8 if scene.has("water") else 1)
        peak = (x + half, ground - height)
        pen.poly([(x, ground), peak, (x + 2 * half, ground)], mix(rock, (255, 255, 255), rng.uniform(0, 0.15)))
        cap = 0.32  # the cap covers the top third, its lower edge a zigzag
        left, right = (peak[0] - half * cap, peak[1] + height * cap), (peak[0] + half * cap, peak[1] + height * cap)
        teeth = [(left[0] + (right[0] - left[0]) * k / 6,
                  left[1] - (height * 0.07 if k % 2 else 0)) for k in range(1, 6)]
        pen.poly([peak, right] + teeth[::-1] + [left], snow)
        x += half * rng.uniform(1.1, 1.6)


# Cartoon animals a prompt may name: fur, belly, ear shape, tail shape.
CRITTERS: dict[str, tuple[RGB, RGB, str, str]] = {
    "fox": ((240, 128, 48), (255, 246, 232), "pointy", "bushy"),
    "wolf": ((150, 156, 170), (236, 238, 244), "pointy", "bushy"),
    "cat": ((250, 170, 80), (255, 240, 220), "pointy", "thin"),
    "dog": ((196, 140, 92), (250, 232, 210), "floppy", "thin"),
    "bear": ((150, 98, 64), (220, 180, 140), "round", "stub"),
    "rabbit": ((236, 232, 236), (255, 214, 224), "long", "stub"),
    "bunny": ((236, 232, 236), (255, 214, 224), "long", "stub"),
}


def _critter(pen: _Pen, rng: random.Random, scene: Scene, subject: str, ground: float) -> None:
    """The animal the prompt named (``subject``), sitting in the foreground and smiling."""
    fur, belly, ears, tail = CRITTERS[subject]
    s = pen.u * 0.12
    x = pen.w * rng.choice([0.3, 0.7])
    base = min(pen.h - s * 0.3, ground + s * 0.1) if not scene.has("water") else ground - s * 0.05
    side = 1 if x < pen.w / 2 else -1  # the tail sweeps away from the middle
    if tail == "bushy":
        tx, ty = x - side * s * 1.25, base - s * 0.75
        pen.draw.ellipse((tx - s * 0.65, ty - s * 0.5, tx + s * 0.65, ty + s * 0.5), fill=fur, outline=INK,
                         width=pen.line)
        tip = tx - side * s * 0.45
        pen.draw.ellipse((tip - s * 0.25, ty - s * 0.28, tip + s * 0.25, ty + s * 0.28), fill=belly, outline=INK,
                         width=pen.line)
    elif tail == "thin":
        pen.draw.arc((x - side * s * 1.4 - s * 0.5, base - s * 1.3, x - side * s * 1.4 + s * 0.5, base),
                     90 if side > 0 else 0, 270 if side > 0 else 180, fill=INK, width=pen.line * 3)
    pen.draw.ellipse((x - s * 0.75, base - s * 1.35, x + s * 0.75, base), fill=fur, outline=INK, width=pen.line)
    pen.draw.ellipse((x - s * 0.4, base - s * 0.95, x + s * 0.4, base - s * 0.05), fill=belly)
    hy, hr = base - s * 1.6, s * 0.62
    for k in (-1, 1):  # ears behind the head
        ex = x + k * hr * 0.62
        if ears == "pointy":
            pen.poly([(ex - s * 0.26, hy - hr * 0.4), (ex + k * s * 0.06, hy - hr * 1.45), (ex + s * 0.26,
                                                                                            hy - hr * 0.4)], fur)
            pen.draw.polygon([(ex - s * 0.12, hy - hr * 0.55), (ex + k * s * 0.04, hy - hr * 1.15),
                              (ex + s * 0.12, hy - hr * 0.55)], fill=mix(belly, (255, 160, 170), 0.35))
        elif ears == "long":
            pen.draw.ellipse((ex - s * 0.18, hy - hr * 2.1, ex + s * 0.18, hy - hr * 0.4), fill=fur, outline=INK,
                             width=pen.line)
            pen.draw.ellipse((ex - s * 0.08, hy - hr * 1.9, ex + s * 0.08, hy - hr * 0.6), fill=belly)
        elif ears == "round":
            pen.circle(ex, hy - hr * 0.75, s * 0.22, fur)
        else:  # floppy
            pen.draw.ellipse((ex - s * 0.2 + k * s * 0.2, hy - hr * 0.6, ex + s * 0.2 + k * s * 0.2, hy + hr * 0.5),
                             fill=mix(fur, INK, 0.25), outline=INK, width=pen.line)
    pen.circle(x, hy, hr, fur)
    pen.draw.ellipse((x - hr * 0.55, hy + hr * 0.05, x + hr * 0.55, hy + hr * 0.85), fill=belly)  # muzzle
    for k in (-1, 1):
        ex, ey = x + k * hr * 0.38, hy - hr * 0.12
        pen.draw.ellipse((ex - hr * 0.11, ey - hr * 0.15, ex + hr * 0.11, ey + hr * 0.15), fill=INK)
        pen.draw.ellipse((ex - hr * 0.02, ey - hr * 0.11, ex + hr * 0.07, ey - hr * 0.02), fill=(255, 255, 255))
        pen.draw.ellipse((x + k * hr * 0.62 - hr * 0.12, hy + hr * 0.2 - hr * 0.07,
                          x + k * hr * 0.62 + hr * 0.12, hy + hr * 0.2 + hr * 0.07), fill=(255, 138, 138))
    pen.draw.ellipse((x - hr * 0.13, hy + hr * 0.18, x + hr * 0.13, hy + hr * 0.36), fill=INK)  # nose
    pen.draw.arc((x - hr * 0.2, hy + hr * 0.25, x + hr * 0.2, hy + hr * 0.62), 30, 150, fill=INK, width=pen.line)
