"""Segment counting as carriers do it: GSM-7 160/153 septets, UCS-2 70/67 UTF-16 units."""

from __future__ import annotations

import pytest

from vow_sms.segments import count_segments


@pytest.mark.parametrize("body, expected", [
    ("", ("GSM-7", 1)),
    ("a" * 160, ("GSM-7", 1)),
    ("a" * 161, ("GSM-7", 2)),
    ("a" * 306, ("GSM-7", 2)),
    ("a" * 307, ("GSM-7", 3)),
    ("Ça coûte 5€ à Genève", ("UCS-2", 1)),  # û is not in the GSM alphabet
    ("Ça a coûté", ("UCS-2", 1)),
    ("Für Åsa: 5€ {ok}", ("GSM-7", 1)),
    ("€" * 80, ("GSM-7", 1)),   # 160 septets: extension characters cost two
    ("€" * 81, ("GSM-7", 2)),
    ("a" * 152 + "€" + "a" * 10, ("GSM-7", 2)),  # the escape pair is not split
    ("a" * 152 + "€" + "a" * 152, ("GSM-7", 3)),
    ("Привет", ("UCS-2", 1)),
    ("я" * 70, ("UCS-2", 1)),
    ("я" * 71, ("UCS-2", 2)),
    ("😀" * 35, ("UCS-2", 1)),  # 70 UTF-16 units
    ("😀" * 36, ("UCS-2", 2)),
    ("😀" * 67, ("UCS-2", 3)),  # 33 per 67-unit segment: a surrogate pair is never split
])
def test_count_segments(body: str, expected: tuple[str, int]) -> None:
    assert count_segments(body) == expected
