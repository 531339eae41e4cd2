"""The pipeline file as attrs classes, structured with cattrs (unknown keys are errors).

Values stay as written (templates are strings); :mod:`vow.pipeline.plan` renders and checks
them. Types are strict: ``timeout: "soon"`` is an error, not a string quietly turned into
something else, and each error names the key path, so :class:`~vow.pipeline.source.Source`
can point at its line.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import attrs
import cattrs
import cattrs.gen

from vow.pipeline.source import Path, Source, SpecError

T = TypeVar("T")

FORMAT_VERSION = 1


@attrs.frozen
class Defaults:
    """What every branch gets unless it says otherwise."""

    retry: Any = None  # a policy name, or a mapping: {policy: exponential, max_attempts: 4, ...}
    timeout: float | None = None  # seconds per branch, retries included
    concurrency: int | None = None  # at most this many branches run at once


@attrs.frozen
class Gate:
    """Wait for the outside promise ``{run id}.{promise}`` (``vow resolve``) before fanning out."""

    promise: str = "approval"
    timeout: float | None = None


@attrs.frozen
class ChannelBranch:
    """Send one message per item over a notification channel."""

    channel: str
    to: str = ""
    subject: str | None = None
    body: str = ""
    data: Any = attrs.Factory(dict)
    options: Any = None
    id: str | None = None
    for_each: Any = None
    retry: Any = None
    timeout: float | None = None
    faults: Any = None


@attrs.frozen
class ImageBranch:
    """Generate one image per item with an image provider."""

    image: str
    prompt: str
    style: str | None = None  # default: the for_each item
    seed: Any = 0
    size: Any = 512
    options: Any = None
    id: str | None = None
    for_each: Any = None
    retry: Any = None
    timeout: float | None = None
    faults: Any = None


@attrs.frozen
class PipelineSpec:
    """A whole pipeline file."""

    version: int
    name: str
    fan_out: Any
    description: str | None = None
    id: str | None = None
    store: str | None = None
    defaults: Defaults = attrs.Factory(Defaults)
    input: Any = attrs.Factory(dict)
    gate: Gate | None = None
    fan_in: Literal["all_settled", "all"] = "all_settled"
    output: str | None = None


def keys_of(cls: type) -> str:
    """The keys a class accepts, for "allowed: ..." messages."""
    return ", ".join(f.name for f in attrs.fields(cls))


def describe(value: Any) -> str:
    """How a wrong value is shown in a message: its kind, then the value."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (true/false)"
    if isinstance(value, str):
        return f"text {value!r}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "nothing" if value is None else type(value).__name__


def _strict(check: Any, what: str, convert: Any = None) -> Any:
    def hook(value: Any, _type: Any) -> Any:
        if not check(value):
            raise TypeError(f"expected {what}, got {describe(value)}")
        return convert(value) if convert else value
    return hook


def _literal(value: Any, type_: Any) -> Any:
    allowed = type_.__args__
    if value not in allowed:
        raise ValueError(f"{value!r} is not allowed (allowed: {', '.join(map(str, allowed))})")
    return value


converter = cattrs.Converter(forbid_extra_keys=True)
"""Strict about types: no quiet ``str(42)`` or ``float("1")``."""
converter.register_structure_hook(str, _strict(lambda v: isinstance(v, str), "text"))
converter.register_structure_hook(
    int, _strict(lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"))
converter.register_structure_hook(
    float, _strict(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number", float))
converter.register_structure_hook(bool, _strict(lambda v: isinstance(v, bool), "true or false"))
converter.register_structure_hook_func(lambda t: getattr(t, "__origin__", None) is Literal, _literal)


def _mapping_of(cls: type) -> Any:
    """attrs classes come from mappings: say so when they get a list or a value instead."""
    build = cattrs.gen.make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True)

    def hook(value: Any, _type: Any) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"expected a mapping of keys ({keys_of(cls)}), got {describe(value)}")
        return build(value, _type)
    return hook


converter.register_structure_hook_factory(attrs.has, _mapping_of)


def structure(source: Source, cls: type[T], data: Any, path: Path) -> T:
    """Build ``cls`` from ``data`` found at ``path`` of ``source``; the first error (by line) is raised."""
    if not isinstance(data, dict):
        raise source.error(path, f"expected a mapping of keys ({keys_of(cls)}), got {describe(data)}")
    try:
        return converter.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        errors = [_located(source, p, e, cls_) for p, e, cls_ in _walk(exc, path, cls)]
    errors.sort(key=lambda e: (e.line or 0, len(e.path)))
    raise errors[0]


def _walk(exc: BaseException, path: Path, cls: type) -> list[tuple[Path, BaseException, type]]:
    """Every leaf error in a cattrs exception group, with its key path and the class it was in."""
    if isinstance(exc, cattrs.IterableValidationError):
        with_notes, without = exc.group_exceptions()
        found = []
        for sub, note in with_notes:
            found += _walk(sub, path + (note.index,), cls)
        return found + [(path, sub, cls) for sub in without]
    if isinstance(exc, cattrs.ClassValidationError):
        with_notes, without = exc.group_exceptions()
        found = []
        for sub, note in with_notes:
            inner = _attr_class(cls, note.name)
            found += _walk(sub, path + (note.name,), inner or cls)
        return found + [(path, sub, cls) for sub in without]
    return [(path, exc, cls)]


def _attr_class(cls: type, name: str) -> type | None:
    if not attrs.has(cls):
        return None
    field = attrs.fields_dict(cls).get(name)
    if field is None:
        return None
    for candidate in (field.type, *getattr(field.type, "__args__", ())):
        if isinstance(candidate, type) and attrs.has(candidate):
            return candidate
    return None


def _located(source: Source, path: Path, exc: BaseException, cls: type) -> SpecError:
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        extra = sorted(exc.extra_fields, key=lambda k: source.line(path + (k,)))[0]
        return source.error(path + (extra,), f"unknown key (allowed: {keys_of(exc.cl)})")
    if isinstance(exc, KeyError):
        return source.error(path, "required key is missing")
    return source.error(path, str(exc))
