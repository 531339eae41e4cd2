"""Turning plain data (YAML, keyword arguments) into attrs classes: one strict converter for all.

Pipeline files, retry policies, failure injection and every plugin's options go through
:func:`structure`. Types are strict — ``max_attempts: 2.5`` is not quietly 2, ``"10"`` is not 10
and ``{'host': 42}`` is not ``'42'`` — extra keys are errors, and attrs validators run as part of
structuring. Every problem becomes a :class:`~vow.errors.ConfigError` whose ``issues`` carry the
key path of the bad value (``("smtp", "port")``) and what is wrong with it, so a pipeline error
can point at the very line.
"""

from __future__ import annotations

import math
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import attrs
import cattrs
import cattrs.gen
from cattrs.cols import list_structure_factory
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from vow.errors import ConfigError, KeyPath

T = TypeVar("T")

Issue = tuple[KeyPath, str]
"""One problem: the key path of the bad value, and what is wrong with it."""


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


def check_finite(value: float, what: str = "a finite number of seconds") -> None:
    """Refuse inf and nan (``ValueError``: "expected a finite number of seconds, got inf").

    YAML's ``.inf`` and ``.nan`` are numbers, and ``.nan`` passes every ``> 0`` or ``>= 0`` check (each
    comparison is false): a number of seconds (a timeout, a delay, a latency) or a rate is checked
    with this first. The one check for pipeline durations and for the attrs classes' validators
    (:func:`finite`).
    """
    if not math.isfinite(value):
        raise ValueError(f"expected {what}, got {value}")


def finite(what: str = "a finite number of seconds") -> Callable[[Any, Any, Any], None]:
    """An attrs validator: :func:`check_finite` on the field's value (``None`` passes: an unset optional)."""
    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if value is not None:
            check_finite(value, what)
    return check


def keys_of(cls: type) -> str:
    """The keys an attrs class accepts, for "allowed: ..." messages."""
    return ", ".join(f.alias for f in attrs.fields(cls) if f.init)


def _strict(check: Callable[[Any], bool], what: str,
            convert: Callable[[Any], Any] | None = None) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _type: Any) -> Any:
        if not check(value):
            raise TypeError(f"expected {what}, got {describe(value)}")
        return convert(value) if convert else value
    return hook


def _literal(value: Any, type_: Any) -> Any:
    allowed = typing.get_args(type_)
    if not any(value == a and type(value) is type(a) for a in allowed):  # True is not 1
        raise ValueError(f"expected one of {', '.join(repr(a) for a in allowed)}, got {describe(value)}")
    return value


converter = cattrs.Converter(forbid_extra_keys=True)
"""The converter for every options class, pipeline key and policy: strict types, no extra keys."""
converter.register_structure_hook(str, _strict(lambda v: isinstance(v, str), "text"))
converter.register_structure_hook(
    int, _strict(lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"))
converter.register_structure_hook(
    float, _strict(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number", float))
converter.register_structure_hook(bool, _strict(lambda v: isinstance(v, bool), "true or false"))
def _origin_is(t: Any, origin: object) -> bool:
    found: object = typing.get_origin(t)
    return found is origin


converter.register_structure_hook_func(lambda t: _origin_is(t, Literal), _literal)

_EXPECTS = {str: "text", int: "a whole number", float: "a number", bool: "true or false", type(None): "nothing"}


def _expects(t: Any) -> str | None:
    """What a value of a plain type ``t`` looks like, for messages; ``None`` when ``t`` is not plain."""
    if _origin_is(t, Literal):
        return "one of " + ", ".join(repr(a) for a in typing.get_args(t))
    return _EXPECTS.get(t)


def _is_plain_union(t: Any) -> bool:
    """A union of plain types and literals with two or more choices besides ``None`` (``"full" | float``);
    ``X | None`` alone stays cattrs' own."""
    if typing.get_origin(t) not in (typing.Union, types.UnionType):
        return False
    choices = typing.get_args(t)
    return all(_expects(c) is not None for c in choices) and sum(c is not type(None) for c in choices) >= 2


def _plain_union(value: Any, type_: Any) -> Any:
    """The first choice of the union that takes ``value`` as it is (strict, so at most one does)."""
    choices = typing.get_args(type_)
    for choice in choices:
        if choice is type(None):
            if value is None:
                return None
            continue
        try:
            return converter.structure(value, choice)
        except (TypeError, ValueError):
            continue
    raise TypeError(f"expected {' or '.join(str(_expects(c)) for c in choices)}, got {describe(value)}")


converter.register_structure_hook_func(_is_plain_union, _plain_union)


def _from_mapping(cls: type) -> Callable[[Any, Any], Any]:
    """attrs classes come from mappings: say so, with the keys allowed, when they get anything else."""
    build: Callable[[Any, Any], Any] = cattrs.gen.make_dict_structure_fn(cls, converter,
                                                                          _cattrs_forbid_extra_keys=True)

    def hook(value: Any, type_: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a mapping of keys ({keys_of(cls)}), got {describe(value)}")
        return build(dict(value), type_)
    return hook


converter.register_structure_hook_factory(attrs.has, _from_mapping)


def _from_list(type_: Any) -> Callable[[Any, Any], Any]:
    """Lists come from lists: a mapping or a text is not quietly iterated into one."""
    build = list_structure_factory(type_, converter)

    def hook(value: Any, t: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a list, got {describe(value)}")
        return build(value, t)
    return hook


converter.register_structure_hook_factory(lambda t: _origin_is(t, list), _from_list)


def structure(cls: type[T], data: Mapping[str, Any] | T | None, *, where: str = "options") -> T:
    """Build ``cls`` from ``data``; raise :class:`ConfigError` with every bad key's path under ``where``.

    ``data`` may already be an instance of ``cls`` (Python callers), which is returned as is;
    ``None`` means no options.
    """
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    try:
        return converter.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
        raise ConfigError.of(issues(exc, cls, data), where=where) from None


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def from_text(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """Options written as text (a store URL's query, ``?busy_timeout=0.3``) turned into the types of
    ``cls``'s fields — whole numbers, numbers, true/false — where the text reads as one.

    Text that does not read as its field's type is left as it is, for :func:`structure` to refuse
    with its key path. This is the one place text becomes a number: nowhere else is text coerced.
    """
    fields = attrs.fields_dict(attrs.resolve_types(cls))
    out = dict(data)
    for key, value in data.items():
        field = fields.get(key)
        if field is None or not isinstance(value, str):
            continue
        target = field.type
        if typing.get_origin(target) in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(target) if a is not type(None)]
            target = options[0] if len(options) == 1 else None
        try:
            if target is bool and value.lower() in _TRUE | _FALSE:
                out[key] = value.lower() in _TRUE
            elif target is int:
                out[key] = int(value)
            elif target is float:
                out[key] = float(value)
        except ValueError:
            pass
    return out


def issues(exc: BaseException, cls: Any, data: Any, path: KeyPath = ()) -> list[Issue]:
    """Every problem inside ``exc`` (raised structuring ``data`` as ``cls``), with its key path."""
    found: list[Issue] = []
    if isinstance(exc, ClassValidationError):
        by_field, on_class = exc.group_exceptions()
        fields = attrs.fields_dict(attrs.resolve_types(cls)) if attrs.has(cls) else {}
        for sub, field_note in by_field:
            field = fields.get(field_note.name)
            inner = field.type if field is not None else Any
            key = str(field.alias if field is not None else field_note.name)
            found += issues(sub, inner, _at(data, key), path + (key,))
        for sub in on_class:
            found += _class_issues(sub, cls, data, path)
        return found
    if isinstance(exc, IterableValidationError):
        by_item, on_whole = exc.group_exceptions()
        args = typing.get_args(cls)
        item_type = args[-1] if args else Any
        for sub, item_note in by_item:
            index: str | int = getattr(item_note, "index")  # noqa: B009 - the note is a str, whose .index is a method
            found += issues(sub, item_type, _at(data, index), path + (index,))
        return found + [(path, _problem(sub)) for sub in on_whole]
    if isinstance(exc, KeyError):
        return [(path, "required key is missing")]
    return [(path, _problem(exc))]


def _class_issues(exc: BaseException, cls: Any, data: Any, path: KeyPath) -> list[Issue]:
    """Problems cattrs found with a class as a whole: unknown keys, or a validator that refused a value."""
    if isinstance(exc, ForbiddenExtraKeysError):
        allowed = keys_of(exc.cl)
        return [(path + (key,), f"unknown key (allowed: {allowed})") for key in sorted(exc.extra_fields)]
    field = _refusing_field(cls, data, exc)
    return [(path + (field,) if field else path, _problem(exc))]


def _refusing_field(cls: Any, data: Any, exc: BaseException) -> str | None:
    """The key whose attrs validator raised ``exc`` when ``cls`` was built from ``data`` (found by
    running each field's validator on its value again), or ``None`` for a check of the whole class."""
    if not (attrs.has(cls) and isinstance(data, Mapping)):
        return None
    for field in attrs.fields(attrs.resolve_types(cls)):
        if field.validator is None or field.alias not in data:
            continue
        try:
            value = converter.structure(data[field.alias], field.type)
            field.validator(None, field, value)
        except Exception as again:  # noqa: BLE001 - any refusal of this value names the field
            if type(again) is type(exc) and str(again) == str(exc):
                return str(field.alias)
    return None


def _problem(exc: BaseException) -> str:
    message = str(exc.args[0]) if isinstance(exc, (TypeError, ValueError)) and exc.args else str(exc)
    return message or type(exc).__name__


def _at(data: Any, key: str | int) -> Any:
    try:
        return data[key]
    except (KeyError, IndexError, TypeError):
        return None


# \A and \Z, not ^ and $: "$" also matches before a final line break, which a YAML block scalar ends with.
_ENV_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")


def secret(env_var: str, *, needed_for: str) -> str:
    """Read a secret from the environment; a missing one is a :class:`ConfigError` saying what needs it."""
    if not _ENV_NAME.match(env_var):
        raise ConfigError(f"{needed_for}: {env_var!r} is not an environment variable name")
    value = os.environ.get(env_var)
    if not value:
        raise ConfigError(f"{needed_for}: missing secret: set the environment variable {env_var}")
    return value
