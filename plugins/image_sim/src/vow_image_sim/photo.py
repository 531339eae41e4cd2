"""The photorealistic painter: a layered landscape under a lit sky, seen through the air.

Far ridges fade into the horizon's haze (atmospheric perspective), fog settles at the foot of
each ridge, water mirrors the scene, and a little blur, vignette and grain give a lens's feel.
It paints at most ``WORK`` pixels wide and scales up, so it stays fast at any size.
"""

from __future__ import annotations

import random

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from vow_image_sim.canvas import (
    RGB,
    glow,
    grain,
    hsv,
    mix,
    ramp_mask,
    shift_hue,
    soft_mask,
    vertical_gradient,
    vignette,
)
from vow_image_sim.scene import Scene

WORK = 400

# Sky colours from the zenith (0) to the horizon (1).
SKIES: dict[str, list[tuple[float, RGB]]] = {
    "day": [(0.0, (46, 98, 172)), (0.55, (118, 164, 214)), (1.0, (214, 226, 232))],
    "sunset": [(0.0, (34, 38, 86)), (0.35, (112, 70, 126)), (0.72, (232, 118, 82)), (1.0, (255, 196, 124))],
    "dawn": [(0.0, (78, 104, 164)), (0.5, (206, 156, 172)), (1.0, (255, 212, 176))],
    "night": [(0.0, (5, 8, 24)), (0.6, (16, 28, 62)), (1.0, (40, 56, 94))],
}
# Light source colour, its glow, the glow's reach (fraction of the height) and strength.
LIGHTS: dict[str, tuple[RGB, RGB, float, float]] = {
    "day": ((255, 255, 250), (255, 244, 206), 0.75, 0.6),
    "sunset": ((255, 234, 196), (255, 172, 96), 0.8, 0.6),
    "dawn": ((255, 240, 220), (255, 190, 160), 0.7, 0.5),
    "night": ((232, 232, 214), (150, 170, 220), 0.3, 0.22),
}
RIDGE_HUES = {"day": 0.6, "sunset": 0.79, "dawn": 0.72, "night": 0.63}
# Cloud shadow, lit side, opacity.
CLOUD_COLOURS = {"day": ((196, 206, 222), (255, 255, 255), 0.85), "sunset": ((124, 78, 116), (255, 166, 124), 0.8),
                 "dawn": ((186, 156, 186), (255, 222, 218), 0.8), "night": ((24, 32, 56), (58, 70, 104), 0.5)}


def paint_photo(scene: Scene, width: int, height: int) -> Image.Image:
    """A photograph-like landscape for ``scene`` at ``width`` x ``height``."""
    scale = min(1.0, WORK / max(width, height))
    size = w, h = max(48, round(width * scale)), max(48, round(height * scale))
    rng = scene.rng("photo")
    water = scene.has("water")
    horizon = h * rng.uniform(0.6, 0.68) if water else h
    hue_turn = (scene.hue - 0.5) * 0.08
    stops = [(p * horizon / h, shift_hue(c, hue_turn)) for p, c in SKIES[scene.time]]
    haze = stops[-1][1]
    img = vertical_gradient(size, stops)

    ridges = _ridges(scene, rng, size, horizon, haze)
    light_y = ridges[0][0] - h * rng.uniform(0.04, 0.12) if scene.time in ("sunset",
                                                                           "dawn") else h * rng.uniform(0.12, 0.26)
    light = (w * rng.uniform(0.22, 0.78), light_y)
    if scene.time == "night":
        _stars(img, rng, horizon)
    _light(img, scene.time, light, h)
    _clouds(img, scene, rng, horizon)
    _landscape(img, scene, rng, ridges, haze)
    if water:
        _water(img, scene, rng, horizon, light, haze)
    img = img.filter(ImageFilter.GaussianBlur(0.5))
    img = img.resize((width, height), Image.Resampling.LANCZOS)
    img = vignette(img, 0.32)
    return grain(img, scene.rng("grain"), 7)


def _profile(rng: random.Random, roughness: float, points: int = 128) -> list[float]:
    """A ridge line by midpoint displacement: ``points + 1`` heights scaled into -1..1."""
    values = [0.0] * (points + 1)
    values[0], values[points] = rng.uniform(-1, 1), rng.uniform(-1, 1)
    step, amp = points, 1.0
    while step > 1:
        half = step // 2
        for i in range(half, points, step):
            values[i] = (values[i - half] + values[i + half]) / 2 + rng.uniform(-amp, amp)
        step, amp = half, amp * roughness
    low, high = min(values), max(values)
    return [2 * (v - low) / (high - low or 1) - 1 for v in values]


def _ridges(scene: Scene, rng: random.Random, size: tuple[int, int], horizon: float,
            haze: RGB) -> list[tuple[float, float, list[float], RGB]]:
    """Each ridge far to near: (mean height, amplitude, profile, colour)."""
    w, h = size
    count = 6 if scene.has("mist") or scene.has("forest") else 5
    tall = 1.5 if scene.has("mountains") or scene.has("snow") else 1.0
    top, bottom = h * 0.4, (horizon - h * 0.03) if scene.has("water") else h * 0.86
    base_hue = scene.hue if scene.hue_named else RIDGE_HUES[scene.time] + (scene.hue - 0.5) * 0.15
    if scene.has("forest") and scene.time != "night" and not scene.hue_named:
        base_hue = 0.45
    if scene.has("desert") and not scene.hue_named:
        base_hue = 0.07
    near = hsv(base_hue, 0.45, 0.12 if scene.time == "night" else 0.2)
    far = mix(haze, hsv(base_hue, 0.3, 0.55 if scene.time != "night" else 0.3), 0.4)
    ridges = []
    for i in range(count):
        t = i / (count - 1)
        mean = top + (bottom - top) * t ** 1.2
        amp = h * (0.13 - 0.09 * t) * tall
        ridges.append((mean, amp, _profile(rng, 0.58 - 0.14 * t), mix(far, near, t ** 0.8)))
    return ridges


def _rgb(pixel: object) -> tuple[int, int, int]:
    """A pixel of an RGB image as a colour (Pillow types ``getpixel`` for every image mode)."""
    assert isinstance(pixel, tuple) and len(pixel) >= 3, pixel
    return int(pixel[0]), int(pixel[1]), int(pixel[2])


def _stars(img: Image.Image, rng: random.Random, horizon: float) -> None:
    draw = ImageDraw.Draw(img)
    w, _ = img.size
    for _ in range(w * int(horizon) // 700):
        x, y = rng.uniform(0, w), horizon * rng.random() ** 1.4
        level = rng.uniform(0.3, 1.0) * (1 - y / horizon) ** 0.7
        here = _rgb(img.getpixel((int(x), int(y))))
        colour = mix(here, (255, 250, 236), level)
        draw.point((x, y), fill=colour)
        if level > 0.85:  # a few bright ones get a small cross of light
            dim = mix(here, (255, 250, 236), level * 0.45)
            draw.point([(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)], fill=dim)


def _light(img: Image.Image, time: str, centre: tuple[float, float], h: int) -> None:
    disc, halo, reach, strength = LIGHTS[time]
    glow(img, centre, h * reach, halo, strength, falloff=2.4)
    if time == "night":
        glow(img, centre, h * 0.12, disc, 0.6, falloff=3.0)
    else:  # the sun blows out the sky around it, as it does on film
        glow(img, centre, h * 0.22, disc, 0.95, falloff=1.8)
    r = h * (0.035 if time == "night" else 0.03)
    ImageDraw.Draw(img).ellipse((centre[0] - r, centre[1] - r, centre[0] + r, centre[1] + r), fill=disc)
    if time == "night":  # a darker patch or two: the moon's seas
        x, y = centre
        shade = mix(disc, (150, 150, 140), 0.35)
        draw = ImageDraw.Draw(img)
        draw.ellipse((x - r * 0.5, y - r * 0.4, x + r * 0.05, y + r * 0.1), fill=shade)
        draw.ellipse((x + r * 0.1, y + r * 0.15, x + r * 0.45, y + r * 0.5), fill=shade)


def _clouds(img: Image.Image, scene: Scene, rng: random.Random, horizon: float) -> None:
    """Puffy clouds: a soft mask painted in shadow, then lit everywhere but the underside."""
    w, h = img.size
    shade, lit, strength = CLOUD_COLOURS[scene.time]
    puffs = []
    for _ in range(rng.randint(2, 5)):
        cx, cy, span = rng.uniform(-0.05, 1.05) * w, rng.uniform(0.1, 0.45) * horizon, w * rng.uniform(0.12, 0.3)
        for _ in range(rng.randint(5, 9)):
            dx = rng.uniform(-1, 1)
            r = span * rng.uniform(0.12, 0.24) * (1.2 - abs(dx))  # bigger in the middle
            x, y = cx + dx * span, cy - r * rng.uniform(0.2, 0.8)
            puffs.append((x - r * 1.4, y - r, x + r * 1.4, min(y + r, cy)))

    def shapes(draw: ImageDraw.ImageDraw, k: float) -> None:
        for x0, y0, x1, y1 in puffs:
            draw.ellipse((x0 * k, y0 * k, x1 * k, y1 * k), fill=round(255 * strength))

    mask = soft_mask(img.size, shapes, blur=h * 0.012, shrink=2)
    underside = round(h * 0.02)
    lit_mask = ImageChops.multiply(mask, ImageChops.offset(mask, 0, underside))
    img.paste(shade, (0, 0, w, h), mask)
    img.paste(lit, (0, 0, w, h), lit_mask.filter(ImageFilter.GaussianBlur(h * 0.006)))


def _landscape(img: Image.Image, scene: Scene, rng: random.Random,
               ridges: list[tuple[float, float, list[float], RGB]], haze: RGB) -> None:
    w, h = img.size
    draw = ImageDraw.Draw(img)
    fog = 0.72 if scene.has("mist") else 0.22 if scene.time == "night" else 0.38
    snow = scene.has("snow") or (scene.has("mountains") and scene.time != "night")
    for i, (mean, amp, profile, colour) in enumerate(ridges):
        t = i / (len(ridges) - 1)
        step = w / (len(profile) - 1)
        line = [(k * step, mean - amp * v) for k, v in enumerate(profile)]
        if snow and t < 0.45:  # snow down to a ragged snowline; rock below it
            draw.polygon(line + [(w, h), (0, h)], fill=mix(colour, (248, 250, 255), 0.75 - t))
            snowline = mean - amp * rng.uniform(0.1, 0.5)
            line = [(x, max(y, snowline + h * 0.03 * (rng.random() - 0.5) + h * 0.04 * (y - mean) / amp))
                    for x, y in line]
        draw.polygon(line + [(w, h), (0, h)], fill=colour)
        if scene.has("forest") and t > 0.15:
            _pines(draw, rng, line, h * (0.025 + 0.11 * t ** 1.6), colour)
        if i < len(ridges) - 1:
            next_mean = ridges[i + 1][0]
            img.paste(haze, (0, 0, w, h), ramp_mask(img.size, mean - amp * 0.4, next_mean + amp * 0.3, 0, fog))


def _pines(draw: ImageDraw.ImageDraw, rng: random.Random, line: list[tuple[float, float]],
           height: float, colour: RGB) -> None:
    """A row of conifer silhouettes standing on ``line``."""
    step = line[1][0] - line[0][0]
    x = rng.uniform(0, height * 0.3)
    while x < line[-1][0] + height:
        k = min(len(line) - 2, int(x / step))
        f = x / step - k
        base = line[k][1] + (line[k + 1][1] - line[k][1]) * min(1.0, f) + height * 0.08
        tree = height * rng.uniform(0.55, 1.2)
        draw.polygon(_pine_outline(x, base, tree), fill=colour)
        x += tree * rng.uniform(0.12, 0.45)


def _pine_outline(x: float, base: float, height: float, tiers: int = 4) -> list[tuple[float, float]]:
    half = height * 0.17
    right = []
    for k in range(1, tiers + 1):
        y = base - height + height * k / tiers
        spread = half * (0.35 + 0.65 * k / tiers)
        right.append((x + spread, y))
        if k < tiers:
            right.append((x + spread * 0.35, y - height * 0.02))
    left = [(2 * x - px, py) for px, py in reversed(right)]
    return [(x, base - height)] + right + left


def _water(img: Image.Image, scene: Scene, rng: random.Random, horizon: float,
           light: tuple[float, float], haze: RGB) -> None:
    w, h = img.size
    top = int(horizon)
    depth = h - top
    mirror = img.crop((0, top - depth, w, top)).transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    smeared = mirror.resize((max(1, w // 10), depth), Image.Resampling.BILINEAR).resize((w, depth),
                                                                                        Image.Resampling.BILINEAR)
    mirror = Image.blend(mirror, smeared, 0.55)
    deep = mix(haze, hsv(0.58 + (scene.hue - 0.5) * 0.1, 0.5, 0.25 if scene.time != "night" else 0.08), 0.6)
    mirror = Image.composite(Image.new("RGB", mirror.size, deep), mirror, ramp_mask(mirror.size, 0, depth, 0.15, 0.55))
    img.paste(mirror, (0, top))
    draw = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(depth * 1.2)):
        y = top + depth * rng.random() ** 1.5
        length = w * (0.02 + 0.12 * (y - top) / depth) * rng.uniform(0.4, 1.2)
        x = rng.uniform(-0.1, 1.1) * w
        tone = (*haze, rng.randint(25, 60)) if rng.random() < 0.6 else (0, 0, 0, rng.randint(15, 40))
        draw.line((x, y, x + length, y), fill=tone, width=1)
    lx, ly = light
    if ly < horizon:  # the light's glitter path on the water
        disc = LIGHTS[scene.time][0]
        for _ in range(int(depth * 1.5)):
            d = rng.random() ** 1.3
            y = top + 1 + depth * d
            spread = w * (0.02 + 0.12 * d)
            x = lx + rng.gauss(0, spread * 0.5)
            length = spread * rng.uniform(0.1, 0.5)
            draw.line((x - length / 2, y, x + length / 2, y), fill=(*disc, rng.randint(60, 170)), width=1)
