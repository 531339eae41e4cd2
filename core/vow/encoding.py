"""How arguments and results become text in the store, and back (errors: :mod:`vow.failures`).

Values are JSON. attrs instances are stored as their fields (via cattrs), so a workflow reads
back plain dicts and lists. The engine always hands a workflow the *decoded* stored value,
never the live object, so a first run and a replay see exactly the same thing.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs

from vow.errors import EncodeError

_converter = cattrs.Converter()
_encoder = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=lambda o: _fallback(o))
_decode = json.JSONDecoder().decode
_PLAIN = (str, int, float, bool, type(None))
_encode_str = json.encoder.encode_basestring_ascii  # what _encoder uses for a str (ensure_ascii)

MAX_VALUE_BYTES = 256 * 1024 * 1024
"""The longest encoded value (a call's arguments, a result) vow stores, in bytes (the text is
ASCII). A promise's row holds its arguments and its result, and every store holds two of these
in one row: SQLite refuses a row over 1,000,000,000 bytes, PostgreSQL a value over 1 GB. A larger
value fails its own call with :class:`EncodeError` when it is made, rather than failing the commit
(and stopping the run at every resume, its leaf run again each time)."""


def _bounded(text: str, what: Described) -> str:
    if len(text) > MAX_VALUE_BYTES:
        raise EncodeError(f"{_described(what)} cannot be stored: it is {len(text):,} bytes as JSON, over the "
                          f"{MAX_VALUE_BYTES:,} a store holds; store large data in a file and pass its path")
    return text


def _fallback(obj: Any) -> Any:
    if attrs.has(type(obj)):
        return _converter.unstructure(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


Described = str | Callable[[], str]
"""What a value is, for an error message: text, or a function that builds it (only on an error)."""


def _described(what: Described) -> str:
    return what if isinstance(what, str) else what()


def _int_or_str_text(value: Any) -> str | None:
    """The JSON text of an int or a str (the commonest values), written as the encoder writes it
    without its set-up; ``None`` for anything else."""
    kind = type(value)
    if kind is int:
        try:
            return int.__repr__(value)
        except ValueError:  # more digits than Python prints (sys.get_int_max_str_digits): encode() says so
            return None
    if kind is str:
        return _encode_str(value)
    return None


def encode(value: Any, *, what: Described = "value") -> str:
    """Encode ``value`` as canonical JSON text; raise :class:`EncodeError` saying ``what`` it was."""
    text = _int_or_str_text(value)
    if text is not None:
        return _bounded(text, what)
    try:
        text = _encoder.encode(value)
    except RecursionError:
        raise EncodeError(f"{_described(what)} cannot be stored: it is nested too deeply for JSON (a structure that "
                          "contains itself, or thousands of levels); flatten it") from None
    except Exception as exc:  # noqa: BLE001 - anything the encoder or a value's own hooks raise
        if "not supported between instances" in str(exc):  # sort_keys met keys of mixed types
            exc = TypeError("a dict mixes key types (for example 1 and '1'); use string keys")
        elif "integer string conversion" in str(exc):  # more digits than Python prints
            exc = ValueError(f"a whole number of more than {sys.get_int_max_str_digits():,} digits cannot be "
                             "written as JSON; store it as text")
        raise EncodeError(
            f"{_described(what)} cannot be stored: {exc}. Use JSON types (dict, list, str, int, float, bool, None) "
            "or attrs classes; store large binary data in a file and pass its path."
        ) from None
    return _bounded(text, what)


def decode(text: str | None) -> Any:
    """Decode JSON text written by :func:`encode` (``None`` stays ``None``)."""
    return None if text is None else _decode(text)


def normalize(value: Any, *, what: Described = "value") -> tuple[Any, str]:
    """Return ``(value as it reads back from the store, its encoded text)``."""
    text = _int_or_str_text(value)
    if text is not None:  # the commonest results, read back as they are
        return value, _bounded(text, what)
    text = encode(value, what=what)
    if isinstance(value, _PLAIN) and not isinstance(value, float):
        return value, text
    try:
        return _decode(text), text
    except RecursionError:  # encoded, but too deep to read back: refuse it now rather than on replay
        raise EncodeError(f"{_described(what)} cannot be stored: it is nested too deeply to read back; "
                          "flatten it") from None


def plain_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """What :func:`encode_args` returns for the commonest calls (positional ints and strs), made
    without naming the call for an error that cannot happen; ``None`` for any other call."""
    return None if kwargs else _ints_and_strings(args)


def encode_args(args: tuple[Any, ...], kwargs: dict[str, Any], *, what: Described) -> str:
    """Encode a call's arguments; kwargs are kept only when given, so the text stays short.

    ``what`` names the call in an error; a hot caller passes a function that builds the name only
    when it is needed."""
    text = plain_args(args, kwargs)
    if text is not None:
        return text
    payload: Any = {"args": list(args), "kwargs": kwargs} if kwargs else list(args)
    return encode(payload, what=lambda: f"arguments of {_described(what)}")


def _ints_and_strings(items: tuple[Any, ...]) -> str | None:
    """The JSON list of ``items`` when each is an int or a str (the commonest arguments), written as
    the encoder writes it; ``None`` otherwise, and when it is too long to store (the caller's general
    path names the call in its error)."""
    parts = []
    for item in items:
        text = _int_or_str_text(item)
        if text is None:
            return None
        parts.append(text)
    text = "[" + ",".join(parts) + "]"
    return text if len(text) <= MAX_VALUE_BYTES else None


def decode_args(text: str) -> tuple[list[Any], dict[str, Any]]:
    """The inverse of :func:`encode_args`."""
    payload = _decode(text) if text else []
    if isinstance(payload, dict):
        return list(payload.get("args", [])), dict(payload.get("kwargs", {}))
    return list(payload), {}


_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """``text`` with each lone surrogate (which UTF-8 cannot encode) replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def json_safe(value: Any) -> Any:
    """``value`` as data strict JSON (RFC 8259) can hold, for a file or output other tools read.

    The store keeps what Python's JSON writes, which includes ``NaN`` and ``Infinity``; no other
    JSON reader takes them. Here a number JSON cannot write (NaN, infinity, an integer too long to
    print) becomes ``None``, as JavaScript's ``JSON.stringify`` makes it ``null``; a text's lone
    surrogates (a provider's JSON may carry ``"\\ud800"``) become U+FFFD; a key becomes its text, and
    any other value (a ``datetime``, a set) its text. Dump the result with ``allow_nan=False``.
    """
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        # Python refuses to print an int of more than 4,300 digits (sys.get_int_max_str_digits).
        return value if value.bit_length() <= 14_000 else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {valid_text(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return valid_text(str(value))
