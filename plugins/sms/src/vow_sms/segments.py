"""How many SMS segments a body costs, the way carriers count them.

A body that fits the GSM 03.38 alphabet is sent as GSM-7: 160 septets in one segment, 153 per
segment once it is split (the rest is the concatenation header), and the extension characters
(``{ } [ ] ~ | ^ \\ €`` and form feed) take two septets each. Anything else — an emoji, most
accented and non-Latin letters — switches the whole message to UCS-2: 70 UTF-16 units in one
segment, 67 per segment when split. A two-unit character is never split across segments.
"""

from __future__ import annotations

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


def encoding(body: str) -> str:
    """``GSM-7`` when every character is in the GSM alphabet, else ``UCS-2``."""
    return "GSM-7" if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in body) else "UCS-2"


def count_segments(body: str) -> tuple[str, int]:
    """``(encoding, segments)`` for ``body``; an empty body still costs one segment."""
    if encoding(body) == "GSM-7":
        return "GSM-7", _pack([2 if c in GSM7_EXTENSION else 1 for c in body], single=160, part=153)
    return "UCS-2", _pack([2 if ord(c) > 0xFFFF else 1 for c in body], single=70, part=67)


def _pack(costs: list[int], *, single: int, part: int) -> int:
    if sum(costs) <= single:
        return 1
    parts, room = 1, part
    for cost in costs:
        if cost > room:  # a two-unit character moves whole into the next segment
            parts, room = parts + 1, part
        room -= cost
    return parts
