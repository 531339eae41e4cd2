"""Reading a prompt: which scene to paint, in which palette, from which random stream.

Keywords pick scene elements (``night``, ``sunset``, ``ocean``, ``forest``, ``misty``, ...),
a colour word picks the palette's hue, and a hash of the prompt decides everything else, so
different prompts paint different pictures and the same prompt always paints the same one.
"""

from __future__ import annotations

import hashlib
import random
import re

import attrs

_TIMES = {
    "night": {"night", "moon", "moonlit", "moonlight", "midnight", "star", "stars", "starry", "galaxy", "nocturnal"},
    "sunset": {"sunset", "dusk", "evening", "twilight", "golden", "autumn", "fire", "ember", "embers"},
    "dawn": {"dawn", "sunrise", "morning", "spring", "blossom", "pastel"},
}
_ELEMENTS = {
    "water": {"ocean", "sea", "lake", "river", "water", "beach", "coast", "bay", "pond", "reflection",
              "harbor", "harbour", "island", "waves", "shore", "fjord", "boat", "sail"},
    "forest": {"forest", "woods", "wood", "trees", "tree", "jungle", "pine", "pines", "grove", "taiga",
               "fox", "deer", "bear", "owl", "wolf", "cabin"},
    "mist": {"mist", "misty", "fog", "foggy", "haze", "hazy", "smoke", "dream", "dreamy", "ethereal"},
    "snow": {"snow", "snowy", "winter", "ice", "icy", "frozen", "alpine", "glacier", "arctic"},
    "mountains": {"mountain", "mountains", "peak", "peaks", "alps", "ridge", "cliff", "volcano", "himalaya"},
    "desert": {"desert", "dune", "dunes", "sand", "canyon", "sahara", "mesa", "cactus"},
}
_ANIMALS = ("fox", "wolf", "cat", "dog", "bear", "rabbit", "bunny", "owl", "deer")
_HUES = {
    "red": 0.0, "crimson": 0.97, "scarlet": 0.01, "orange": 0.07, "amber": 0.09, "gold": 0.12,
    "golden": 0.12, "yellow": 0.15, "lime": 0.23, "green": 0.33, "emerald": 0.38, "mint": 0.42,
    "teal": 0.48, "cyan": 0.5, "turquoise": 0.47, "blue": 0.6, "azure": 0.57, "navy": 0.63,
    "indigo": 0.68, "violet": 0.75, "purple": 0.78, "lavender": 0.74, "magenta": 0.86, "pink": 0.92,
    "rose": 0.95, "autumn": 0.07,
}


@attrs.frozen
class Scene:
    """What to paint: time of day, the elements the prompt named, a base hue, a seed."""

    prompt: str
    time: str  # "day", "sunset", "dawn" or "night"
    elements: frozenset[str]
    hue: float  # 0..1, the palette's base hue
    hue_named: bool  # the prompt named a colour (the painter may lean on it harder)
    subject: str | None  # the first animal the prompt names, if any
    seed: int  # drives every random choice of the picture

    def has(self, element: str) -> bool:
        """Whether the prompt asked for ``element`` (water, forest, mist, snow, mountains, desert)."""
        return element in self.elements

    def rng(self, salt: str = "") -> random.Random:
        """A random stream for one part of the picture; the same salt always gives the same stream."""
        return random.Random(f"{self.seed}|{salt}")


def _digest(*parts: object) -> int:
    raw = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")


def read_scene(prompt: str, style: str, seed: int) -> Scene:
    """The scene a prompt describes; the same (prompt, style, seed) always gives the same scene."""
    words = set(re.findall(r"[a-z]+", prompt.lower()))
    time = next((name for name, keys in _TIMES.items() if words & keys), "day")
    elements = frozenset(name for name, keys in _ELEMENTS.items() if words & keys)
    prompt_hash = _digest(" ".join(prompt.lower().split()))
    if not elements:  # a prompt that names no scenery still gets a scene of its own
        elements = frozenset(n for n, bit in (("water", 1), ("forest", 2), ("mountains", 4)) if prompt_hash & bit)
    named = [_HUES[w] for w in sorted(words) if w in _HUES]
    hue = named[0] if named else (prompt_hash >> 8) % 1000 / 1000
    order = prompt.lower().split()
    subject = next((a for w in order for a in _ANIMALS if w.strip(".,;:!?") in (a, a + "s")), None)
    return Scene(prompt=prompt, time=time, elements=elements, hue=hue, hue_named=bool(named),
                 subject=subject, seed=_digest(prompt, style, seed))
