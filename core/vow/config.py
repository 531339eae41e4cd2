"""Turning plain data (from YAML or keyword arguments) into a plugin's attrs options class.

Extra keys are forbidden and every error names the key path, so a typo in a pipeline file is
reported as ``fan_out[2].options.from_addr: extra key`` rather than as a traceback.
"""

from __future__ import annotations

import os
import re
import typing
from typing import Any, Mapping, TypeVar

import attrs
import cattrs

from vow.errors import ConfigError

T = TypeVar("T")

converter = cattrs.Converter(forbid_extra_keys=True)
"""The converter used for every options class (extra keys forbidden, booleans strict)."""


def _strict_bool(value: Any, _type: type) -> bool:
    # bool("false") is True: accept real booleans only (YAML already turns true/false/yes/no into them).
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {value!r}")


converter.register_structure_hook(bool, _strict_bool)


def structure(cls: type[T], data: Mapping[str, Any] | T | None, *, where: str = "options") -> T:
    """Build ``cls`` from ``data``; raise :class:`ConfigError` naming each bad key under ``where``.

    ``data`` may already be an instance of ``cls`` (Python callers), which is returned as is.
    """
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of options, got {type(data).__name__}")
    try:
        return converter.structure(dict(data), cls)
    except cattrs.BaseValidationError as exc:
        raise ConfigError("\n".join(_messages(exc, cls, where))) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _messages(exc: cattrs.BaseValidationError, cls: type, where: str) -> list[str]:
    out = []
    for line in cattrs.transform_error(exc, path="$", format_exception=_describe):
        message, _, path = line.rpartition(" @ ")
        key = path[1:].lstrip(".") if path.startswith("$") else path
        if message.startswith("extra fields found"):
            nested = _class_at(cls, key)
            allowed = ", ".join(f.name for f in attrs.fields(nested)) if nested is not None else "?"
            message = f"{message} (allowed: {allowed})"
        out.append(f"{where}.{key}: {message}" if key else f"{where}: {message}")
    return out or [f"{where}: {exc}"]


def _class_at(cls: type, key: str) -> type | None:
    """The attrs class found by following ``key`` (``smtp``, ``items[2].retry``) from ``cls``."""
    current: Any = cls
    for part in re.findall(r"[^.\[\]]+", key):
        current = _attrs_class(current)
        if part.isdigit():
            continue
        if current is None:
            return None
        field = attrs.fields_dict(attrs.resolve_types(current)).get(part)
        if field is None:
            return None
        current = field.type
    return _attrs_class(current)


def _attrs_class(tp: Any) -> type | None:
    """``tp`` itself, or the attrs class inside ``Optional[...]``/``list[...]``, if any."""
    if attrs.has(tp):
        return tp
    for arg in typing.get_args(tp):
        found = _attrs_class(arg)
        if found is not None:
            return found
    return None


def _describe(exc: BaseException, type_: type | None) -> str:
    """cattrs' wording, plus the validator's own reason (``rate must be between 0 and 1``)."""
    if typing.get_origin(type_) is typing.Literal:
        allowed = ", ".join(repr(a) for a in typing.get_args(type_))
        return f"invalid value (allowed: {allowed})"
    base = cattrs.v.format_exception(exc, type_)
    detail = str(exc)
    if isinstance(exc, ValueError) and detail and detail not in base:
        return f"{base}: {detail}"
    return base


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def secret(env_var: str, *, needed_for: str) -> str:
    """Read a secret from the environment; a missing one is a :class:`ConfigError` saying what needs it."""
    if not _ENV_NAME.match(env_var):
        raise ConfigError(f"{needed_for}: {env_var!r} is not an environment variable name")
    value = os.environ.get(env_var)
    if not value:
        raise ConfigError(f"{needed_for}: missing secret: set the environment variable {env_var}")
    return value
