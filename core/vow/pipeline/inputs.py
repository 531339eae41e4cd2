"""The input of a run: the file's ``input`` defaults, then ``--input`` documents, then ``--set`` keys.

``--input`` takes a JSON object or ``@path/to/file.json``; ``--set customer.email=ada@example.com``
sets one dotted key, its value read as JSON when it is JSON (``42``, ``true``, ``[1, 2]``) and as
text otherwise. Later sources win; mappings merge key by key.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from vow.pipeline.source import SpecError


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` on top; nested mappings merge, anything else is replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_input(text: str) -> dict[str, Any]:
    """One ``--input`` value: a JSON object, or ``@file.json``."""
    label = "--input"
    if text.startswith("@"):
        path = text[1:]
        label = f"--input {text}"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError(f"{label}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"{label}: cannot read it ({exc})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{label}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise SpecError(f"{label}: expected a JSON object such as {{\"order_id\": 1042}}, "
                        f"got {type(value).__name__}")
    return value


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses as JSON, else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_set(data: dict[str, Any], assignment: str) -> dict[str, Any]:
    """``data`` with one ``--set dotted.key=value`` applied."""
    key, eq, raw = assignment.partition("=")
    parts = key.strip().split(".")
    if not eq or not all(parts):
        raise SpecError(f"--set: expected key=value (a dotted key such as customer.email=ada@example.com), "
                        f"got {assignment!r}")
    out = copy.deepcopy(data)
    node = out
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SpecError(f"--set {assignment}: {'.'.join(parts[:depth + 1])} is {json.dumps(child)}, "
                            "not a mapping, so it has no keys to set")
        node = child
    node[parts[-1]] = parse_value(raw)
    return out


def command_line_input(inputs: Iterable[str] = (), sets: Iterable[str] = ()) -> dict[str, Any]:
    """The input given on the command line (``--input`` documents merged, then ``--set`` keys)."""
    data: dict[str, Any] = {}
    for text in inputs:
        data = merge(data, parse_input(text))
    for assignment in sets:
        data = apply_set(data, assignment)
    return data
