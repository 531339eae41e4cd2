"""The input of a run: the file's ``input`` defaults, then ``--input`` documents, then ``--set`` keys.

``--input`` takes a JSON object or ``@path/to/file.json``; ``--set customer.email=ada@example.com``
sets one dotted key, its value read as JSON when it is JSON (``42``, ``true``, ``[1, 2]``) and as
text otherwise. Later sources win; mappings merge key by key.

Each source may nest lists and mappings at most :data:`MAX_DEPTH` levels deep.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from vow.pipeline.source import Path as KeyPath
from vow.pipeline.source import SpecError, Unreadable, read_bytes, too_long_number

MAX_INPUT_FILE_BYTES = 10_000_000
"""The most bytes an ``--input @file.json`` may hold: it is stored with the run, in every worker's reach."""

MAX_DEPTH = 100
"""How many levels of lists and mappings a run's input may nest, counting the input mapping itself.

The input is stored as JSON in the run's plan and read back by every worker, and Python's JSON
encoder and decoder (and the planner's own walks over the input) go one call deeper per level:
a few hundred levels can be read from a file or the command line and still fail to be stored, after
the store was opened. So the depth is checked where the input comes in, well inside what those
can do from any call stack."""

UNREADABLE = "nested too deeply to read (lists or mappings hundreds of levels deep)"
TOO_DEEP = (f"nests lists and mappings more than {MAX_DEPTH} levels deep (at most {MAX_DEPTH} levels, the input "
            "mapping included); flatten it")


def too_deep(data: Any, limit: int = MAX_DEPTH) -> KeyPath | None:
    """The key path (its top-level key) under which ``data`` nests lists and mappings more than
    ``limit`` levels deep, ``()`` when ``data`` itself is too deep at its top, or ``None`` when it
    is not. Walks without recursion, and never deeper than ``limit + 1``: a structure that
    contains itself is simply too deep."""
    stack: list[tuple[Any, KeyPath, int]] = [(data, (), 1)]
    while stack:
        value, top, depth = stack.pop()
        if isinstance(value, Mapping):
            children: Iterable[tuple[str | int, Any]] = value.items()
        elif isinstance(value, (list, tuple)):
            children = enumerate(value)
        else:
            continue
        if depth > limit:
            return top
        for key, child in children:
            stack.append((child, top or (key,), depth + 1))
    return None


NOT_JSON = "cannot be stored with the run (a value is text, a number, true/false, null, a list or a mapping)"


def not_json(data: Any) -> tuple[KeyPath, str] | None:
    """The key path of the first value in ``data`` that the run's plan cannot be stored with, and the
    problem; ``None`` when there is none. YAML reads ``2025-06-01`` as a date and ``!!binary`` as bytes,
    and a template can give any Python object: none of them is JSON. A mapping's keys may be numbers
    only when none is text (JSON writes them as text then; mixed, they cannot be sorted). Walks
    without recursion (:func:`too_deep` bounds the depth)."""
    stack: list[tuple[Any, KeyPath]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, Mapping):
            keys = list(value)
            texts = sum(isinstance(key, str) for key in keys)
            for key in keys if texts < len(keys) else ():
                at = path + (key if isinstance(key, int) else str(key),)
                if not (key is None or isinstance(key, (str, int, float))):
                    return at, (f"the key {key} ({type(key).__name__}) cannot be stored with the run; quote it to "
                                f"make it text: \"{key}\"")
                if texts and not isinstance(key, str):
                    return at, (f"the key {key!r} is not text but other keys of its mapping are, so it cannot be "
                                f"stored with the run; quote it: \"{key}\"")
            stack.extend(reversed([(item, path + (key,)) for key, item in value.items()]))  # in file order
        elif isinstance(value, (list, tuple, set, frozenset)):  # a set is stored as a sorted list
            stack.extend(reversed([(item, path + (i,)) for i, item in enumerate(value)]))
        elif value is not None and not isinstance(value, (str, int, float)):
            return path, _not_json_problem(value)
    return None


def _not_json_problem(value: Any) -> str:
    if isinstance(value, (datetime.date, datetime.time)):
        return f"the {type(value).__name__} {value} {NOT_JSON}; quote it to keep it as text: \"{value}\""
    if isinstance(value, (bytes, bytearray)):
        return f"binary data (bytes) {NOT_JSON}"
    text = repr(value)
    return f"a {type(value).__name__} ({text[:60]}{'...' if len(text) > 60 else ''}) {NOT_JSON}"


def check_depth(data: Any, label: str) -> None:
    """A :class:`SpecError` naming ``label`` (``--input``, ``--set KEY``) when ``data`` is nested too deeply."""
    top = too_deep(data)
    if top is not None:
        key = f" {'.'.join(map(str, top))!r}" if top else ""
        raise SpecError(f"{label}:{key} {TOO_DEEP}")


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
            text = read_bytes(path, MAX_INPUT_FILE_BYTES, "an input file").decode("utf-8")
        except FileNotFoundError:
            raise SpecError(f"{label}: no such file") from None
        except IsADirectoryError:
            raise SpecError(f"{label}: is a directory, not a JSON file") from None
        except Unreadable as exc:
            raise SpecError(f"{label}: {exc}") from None
        except OSError as exc:  # str(exc) repeats the path, or names the descriptor it was opened as ("... : 3")
            raise SpecError(f"{label}: cannot read it ({exc.strerror})") from None
        except UnicodeDecodeError as exc:
            raise SpecError(f"{label}: cannot read it ({exc})") from None
    try:
        value = _strict_json(text, label)
    except _NotJson as exc:
        raise SpecError(f"{label}: not valid JSON ({exc})") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{label}: not valid JSON ({exc})") from None
    except ValueError:  # the one other: a whole number longer than Python reads
        raise SpecError(f"{label}: {too_long_number()}") from None
    except RecursionError:  # the decoder goes one call deeper per level
        raise SpecError(f"{label}: {UNREADABLE}") from None
    if not isinstance(value, dict):
        raise SpecError(f"{label}: expected a JSON object such as {{\"order_id\": 1042}}, "
                        f"got {type(value).__name__}")
    check_depth(value, label)
    return value


class _NotJson(ValueError):
    """A constant Python's decoder takes and JSON has not (NaN, Infinity)."""


def _strict_json(text: str, label: str) -> Any:
    """``json.loads(text)`` as JSON has it: ``NaN`` and ``Infinity`` are :class:`_NotJson`, and a number
    too large for a float (``1e999``, which Python reads as infinity) or a key given twice in one object
    a :class:`SpecError`."""
    def constant(name: str) -> Any:
        raise _NotJson(f"{name} is not JSON")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:  # Python's decoder keeps the last one, dropping the first without a word
                raise SpecError(f"{label}: not valid JSON (the key {key!r} is given twice in one object)")
            out[key] = value
        return out

    def number(literal: str) -> float:
        value = float(literal)
        if math.isinf(value):
            raise SpecError(f"{label}: {literal} is too large a number (it would be infinity); give it as text")
        return value

    return json.loads(text, parse_constant=constant, parse_float=number, object_pairs_hook=unique)


def parse_value(text: str, label: str = "value") -> Any:
    """A command-line value: JSON when it parses as JSON, else the text itself (``label`` names it
    in the error for JSON nested too deeply to read)."""
    try:
        return _strict_json(text, label)
    except (json.JSONDecodeError, _NotJson):  # NaN and Infinity are Python's, not JSON: text too
        return text
    except ValueError:  # the one other: a whole number longer than Python reads
        raise SpecError(f"{label}: {too_long_number()}") from None
    except RecursionError:  # the decoder goes one call deeper per level
        raise SpecError(f"{label}: {UNREADABLE}") from None


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
    node[parts[-1]] = parse_value(raw, f"--set {key.strip()}")
    check_depth(out, "--set")
    return out


def command_line_input(inputs: Iterable[str] = (), sets: Iterable[str] = ()) -> dict[str, Any]:
    """The input given on the command line (``--input`` documents merged, then ``--set`` keys)."""
    data: dict[str, Any] = {}
    for text in inputs:
        data = merge(data, parse_input(text))
    for assignment in sets:
        data = apply_set(data, assignment)
    return data
