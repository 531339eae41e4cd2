"""One entry point for the painters: (prompt, style, seed, size) -> PNG bytes."""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image

from vow_image_sim.abstract import paint_abstract
from vow_image_sim.canvas import png_bytes
from vow_image_sim.cartoon import paint_cartoon
from vow_image_sim.photo import paint_photo
from vow_image_sim.scene import Scene, read_scene

PAINTERS: dict[str, Callable[[Scene, int, int], Image.Image]] = {
    "photorealistic": paint_photo,
    "cartoon": paint_cartoon,
    "abstract": paint_abstract,
}
STYLES = tuple(PAINTERS)
MIN_SIDE, MAX_SIDE = 16, 2048


def render_png(prompt: str, style: str, seed: int = 0, width: int = 512, height: int = 512) -> bytes:
    """Paint ``prompt`` in ``style``: the same arguments always give the same PNG bytes.

    Raises ``ValueError`` for an unknown style or a side outside ``MIN_SIDE``..``MAX_SIDE``.
    """
    if style not in PAINTERS:
        raise ValueError(f"unknown style {style!r} (available: {', '.join(STYLES)})")
    for name, side in (("width", width), ("height", height)):
        if not MIN_SIDE <= side <= MAX_SIDE:
            raise ValueError(f"{name} must be between {MIN_SIDE} and {MAX_SIDE} pixels, got {side}")
    return png_bytes(PAINTERS[style](read_scene(prompt, style, seed), width, height))
