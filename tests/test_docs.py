"""CONTRIBUTING's map of the tree names what is there, and everything the core is made of."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mapped_paths() -> list[str]:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    table = text.split("## Where things are", 1)[1].split("\n\n", 2)[1]
    return [path for row in table.splitlines()[2:] for path in re.findall(r"`([^`]+)`", row.split(" | ")[0])]


def test_every_path_the_map_names_exists() -> None:
    paths = mapped_paths()
    assert len(paths) > 20
    missing = [p for p in paths if "<" not in p and not (ROOT / p).exists()]
    assert not missing, f"CONTRIBUTING.md names paths that are not in the tree: {missing}"


def test_every_module_of_the_core_is_on_the_map() -> None:
    paths = mapped_paths()
    core = ROOT / "core" / "vow"
    unmapped = []
    for entry in sorted(core.iterdir()):
        if entry.name.startswith(("_", ".")) or entry.suffix not in (".py", "") or entry.name == "py.typed":
            continue
        if not any(p.rstrip("/") == f"core/vow/{entry.name}" for p in paths):
            unmapped.append(entry.name)
    assert not unmapped, f"CONTRIBUTING.md's 'Where things are' does not say what these hold: {unmapped}"
