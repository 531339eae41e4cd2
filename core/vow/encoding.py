"""How arguments, results and errors become text in the store, and back.

Values are JSON. attrs instances are stored as their fields (via cattrs), so a workflow reads
back plain dicts and lists. The engine always hands a workflow the *decoded* stored value,
never the live object, so a first run and a replay see exactly the same thing.
"""

from __future__ import annotations

import builtins
import importlib
import json
from typing import Any

import attrs
import cattrs

from vow.errors import EncodeError, PermanentError, RejectedError, TransientError

_converter = cattrs.Converter()
_encoder = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=lambda o: _fallback(o))
_decode = json.JSONDecoder().decode
_PLAIN = (str, int, float, bool, type(None))


def _fallback(obj: Any) -> Any:
    if attrs.has(type(obj)):
        return _converter.unstructure(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def encode(value: Any, *, what: str = "value") -> str:
    """Encode ``value`` as canonical JSON text; raise :class:`EncodeError` saying ``what`` it was."""
    try:
        return _encoder.encode(value)
    except RecursionError:
        raise EncodeError(f"{what} cannot be stored: it is nested too deeply for JSON (a structure that "
                          "contains itself, or thousands of levels); flatten it") from None
    except Exception as exc:  # noqa: BLE001 - anything the encoder or a value's own hooks raise
        if "not supported between instances" in str(exc):  # sort_keys met keys of mixed types
            exc = TypeError("a dict mixes key types (for example 1 and '1'); use string keys")
        raise EncodeError(
            f"{what} cannot be stored: {exc}. Use JSON types (dict, list, str, int, float, bool, None) "
            "or attrs classes; store large binary data in a file and pass its path."
        ) from None


def decode(text: str | None) -> Any:
    """Decode JSON text written by :func:`encode` (``None`` stays ``None``)."""
    return None if text is None else _decode(text)


def normalize(value: Any, *, what: str = "value") -> tuple[Any, str]:
    """Return ``(value as it reads back from the store, its encoded text)``."""
    text = encode(value, what=what)
    if isinstance(value, _PLAIN) and not isinstance(value, float):
        return value, text
    try:
        return _decode(text), text
    except RecursionError:  # encoded, but too deep to read back: refuse it now rather than on replay
        raise EncodeError(f"{what} cannot be stored: it is nested too deeply to read back; flatten it") from None


def encode_args(args: tuple[Any, ...], kwargs: dict[str, Any], *, what: str) -> str:
    """Encode a call's arguments; kwargs are kept only when given, so the text stays short."""
    payload: Any = {"args": list(args), "kwargs": kwargs} if kwargs else list(args)
    return encode(payload, what=f"arguments of {what}")


def decode_args(text: str) -> tuple[list[Any], dict[str, Any]]:
    """The inverse of :func:`encode_args`."""
    payload = _decode(text) if text else []
    if isinstance(payload, dict):
        return list(payload.get("args", [])), dict(payload.get("kwargs", {}))
    return list(payload), {}


def encode_error(exc: BaseException) -> str:
    """Encode an exception as its type name, message and the retry hints vow understands."""
    cls = type(exc)
    payload: dict[str, Any] = {"type": f"{cls.__module__}.{cls.__qualname__}", "message": str(exc)}
    if isinstance(exc, TransientError) and exc.retry_after is not None:
        payload["retry_after"] = exc.retry_after
    code = getattr(exc, "code", None)
    if isinstance(code, (str, int)):
        payload["code"] = code
    return _encoder.encode(payload)


def decode_error(text: str | None) -> BaseException:
    """Rebuild a stored error: the original exception type when it can be imported here,
    otherwise :class:`RejectedError` carrying the type name and message."""
    payload = _decode(text) if text else {"type": "builtins.Exception", "message": ""}
    if not isinstance(payload, dict) or "type" not in payload:
        return RejectedError("unknown", str(payload))
    type_name, message = str(payload["type"]), str(payload.get("message", ""))
    cls = _import_exception(type_name)
    if cls is None:
        return RejectedError(type_name, message)
    exc = cls.__new__(cls)
    exc.args = (message,)
    if issubclass(cls, TransientError):
        exc.retry_after = payload.get("retry_after")
        exc.code = payload.get("code")
    elif issubclass(cls, PermanentError):
        exc.code = payload.get("code")
    return exc


def _import_exception(type_name: str) -> type[BaseException] | None:
    module_name, _, qualname = type_name.rpartition(".")
    try:
        obj: Any = builtins if module_name == "builtins" else importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError):
        return None
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return obj
    return None
