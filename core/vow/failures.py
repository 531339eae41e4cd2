"""How an exception becomes stored text, and comes back the same way live and on replay.

A workflow never receives the exception object a leaf raised: it receives what the store keeps,
decoded. So a run that goes on in the same process and a run resumed elsewhere after a crash see
the same exception — same class, message, attributes and cause chain — and take the same path.

What is kept (the stored JSON)::

    {"type": "httpx.HTTPStatusError", "message": "...", "attrs": {"status_code": 503, ...},
     "cause": {...the same, for __cause__ or __context__...}, "traceback": "...the original's..."}

* **The class** comes back only if vow or an installed plugin declared it (the builtin
  subclasses of ``Exception``, everything in :mod:`vow.errors`, the httpx errors, what plugins
  list through the ``vow_declare_errors`` hook, and what you declare with :meth:`vow.Vow.register_error`).
  Decoding never imports a module named in the store: an undeclared type comes back as
  :class:`~vow.errors.RejectedError` with ``type_name`` and ``message``. So does a leaf's
  ``SystemExit`` or ``KeyboardInterrupt`` (a library that calls ``sys.exit()``): the leaf's failure,
  which a workflow catches with ``except Exception``, never an order to end the process reading it.
* **Attributes** vow knows how to keep: ``retry_after`` and ``code`` of
  :class:`~vow.errors.TransientError` / :class:`~vow.errors.PermanentError`; for
  ``httpx.HTTPStatusError``, the request's method and URL and the response's status code and
  ``Retry-After`` header, so ``e.response.status_code`` works after a restart too.
* **The cause chain** (up to five deep) as ``__cause__``.
* **The original traceback**, as a note on the exception (``add_note``), so a failure shows
  where it happened however far away it is read.
"""

from __future__ import annotations

import builtins
import importlib
import json
import traceback
from collections.abc import Iterable
from typing import Any

from vow import errors as vow_errors

__all__ = ["FailureCodec", "message_of"]

MAX_CAUSES = 5
MAX_TRACEBACK = 8_000  # characters of the original traceback kept with a failure
MAX_MESSAGE = 100_000  # characters of a failure's message kept (one that quotes a whole response body)
_CUT_NOTE_ROOM = 64  # for "... (N more characters not kept)"

_encoder = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=repr)

# Declared by name, imported only when such a failure is decoded (httpx is heavy to import).
_LAZY: dict[str, tuple[str, str]] = {
    f"httpx.{name}": ("httpx", name) for name in (
        "HTTPError", "HTTPStatusError", "RequestError", "TransportError", "TimeoutException", "ConnectTimeout",
        "ReadTimeout", "WriteTimeout", "PoolTimeout", "NetworkError", "ConnectError", "ReadError", "WriteError",
        "CloseError", "RemoteProtocolError", "LocalProtocolError", "ProxyError", "UnsupportedProtocol",
        "DecodingError", "TooManyRedirects", "InvalidURL")
}
_LAZY.update({f"httpx._exceptions.{name}": spec for name, spec in
              ((key.split(".", 1)[1], value) for key, value in list(_LAZY.items()))})

# vow's own exceptions outside vow.errors
_LAZY.update({f"{module}.{name}": (module, name) for module, name in (
    ("vow.pipeline.workflow", "PipelineFailed"), ("vow.pipeline.source", "SpecError"),
    ("vow.pipeline.templates", "TemplateError"))})

def message_of(exc: BaseException) -> str:
    """``str(exc)``, or a placeholder naming its class when its ``__str__`` raises (a user's
    exception must not break what reports it)."""
    try:
        return exc.message if isinstance(exc, vow_errors.RejectedError) else str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the failure
        return f"<{type(exc).__name__} whose message could not be read>"


def type_name(cls: type) -> str:
    """``module.QualName`` of an exception class, as stored."""
    return f"{cls.__module__}.{cls.__qualname__}"


class FailureCodec:
    """Encodes exceptions for the store and decodes them into the declared classes only."""

    def __init__(self, declared: Iterable[type[BaseException]] = ()) -> None:
        self._classes: dict[str, type[BaseException]] = {}
        for obj in vars(builtins).values():
            # not SystemExit, KeyboardInterrupt, GeneratorExit: raised by a leaf (a library calling
            # sys.exit()), they are its failure, and come back as RejectedError, an Exception a
            # workflow catches, not as an order to end the process that reads them
            if isinstance(obj, type) and issubclass(obj, Exception):
                self._classes[type_name(obj)] = obj
        for obj in vars(vow_errors).values():
            if isinstance(obj, type) and issubclass(obj, BaseException):
                self._classes[type_name(obj)] = obj
        for cls in declared:
            self.declare(cls)

    def declare(self, cls: type[BaseException]) -> type[BaseException]:
        """Let failures of ``cls`` come back as ``cls`` (usable as a decorator)."""
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(f"only exception classes can be declared, got {cls!r}")
        self._classes[type_name(cls)] = cls
        return cls

    # -- encoding

    def encode(self, exc: BaseException) -> str:
        """The stored text of ``exc``: type, message, kept attributes, cause chain and traceback."""
        payload = self._payload(exc, depth=0, with_traceback=True)
        try:
            return _encoder.encode(payload)
        except (ValueError, TypeError, RecursionError):  # a message that cannot be text: keep the type
            return _encoder.encode({"type": payload["type"], "message": "<message could not be stored>"})

    def _payload(self, exc: BaseException, *, depth: int, with_traceback: bool) -> dict[str, Any]:
        cls = type(exc)
        message = message_of(exc)
        if len(message) > MAX_MESSAGE:  # cut to at most MAX_MESSAGE with the note: stored again, it stays
            length = MAX_MESSAGE - _CUT_NOTE_ROOM
            message = f"{message[:length]}... ({len(message) - length:,} more characters not kept)"
        payload: dict[str, Any] = {"type": exc.type_name if isinstance(exc, vow_errors.RejectedError)
                                   else type_name(cls), "message": message}
        kept = _keep_attributes(exc)
        if kept:
            payload["attrs"] = kept
        cause = exc.__cause__ if exc.__cause__ is not None else (
            None if exc.__suppress_context__ else exc.__context__)
        if cause is not None and depth < MAX_CAUSES:
            payload["cause"] = self._payload(cause, depth=depth + 1, with_traceback=False)
        if with_traceback:
            stored = getattr(exc, "__notes__", None)
            text = next((n for n in stored or () if n.startswith(_TRACEBACK_NOTE)), None)
            if text is not None:  # a failure decoded from the store keeps its first traceback
                payload["traceback"] = text[len(_TRACEBACK_NOTE):]
            elif exc.__traceback__ is not None:
                payload["traceback"] = "".join(traceback.format_exception(exc, chain=False))[-MAX_TRACEBACK:]
        return payload

    # -- decoding

    def decode(self, text: str | None) -> BaseException:
        """The exception stored as ``text`` (see the module docstring for what comes back)."""
        try:
            payload = json.loads(text) if text else {"type": "builtins.Exception", "message": ""}
        except (ValueError, RecursionError):
            return vow_errors.RejectedError("unknown", str(text)[:200])
        return self._from_payload(payload, depth=0)

    def _from_payload(self, payload: Any, *, depth: int) -> BaseException:
        if not isinstance(payload, dict) or "type" not in payload:
            return vow_errors.RejectedError("unknown", str(payload)[:200])
        name, message = str(payload["type"]), str(payload.get("message", ""))
        attrs = payload.get("attrs")
        if not isinstance(attrs, dict):  # vow 0.1 kept retry_after and code beside the message
            attrs = {k: payload[k] for k in ("retry_after", "code") if k in payload}
        cls = self._class(name)
        exc = _rebuild(cls, message, attrs) if cls is not None else vow_errors.RejectedError(name, message)
        cause = payload.get("cause")
        if cause is not None and depth < MAX_CAUSES:
            exc.__cause__ = self._from_payload(cause, depth=depth + 1)
        trace = payload.get("traceback")
        if isinstance(trace, str) and trace:
            exc.add_note(_TRACEBACK_NOTE + trace)
        return exc

    def _class(self, name: str) -> type[BaseException] | None:
        cls = self._classes.get(name)
        if cls is None and name in _LAZY:
            module, attr = _LAZY[name]
            try:
                cls = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError):
                return None
            self._classes[name] = cls
        return cls


_TRACEBACK_NOTE = "original traceback (kept by vow):\n"


def _keep_attributes(exc: BaseException) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for attr in ("retry_after", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            kept[attr] = value
    if not type_name(type(exc)).startswith("httpx."):
        return kept
    response = exc.__dict__.get("response")
    request = exc.__dict__.get("_request")
    if response is not None:
        kept["status_code"] = response.status_code
        retry_after = response.headers.get("retry-after")
        if retry_after is not None:
            kept["retry_after_header"] = retry_after
    if request is not None:
        kept["method"] = request.method
        kept["url"] = str(request.url)
    return kept


def _rebuild(cls: type[BaseException], message: str, attrs: dict[str, Any]) -> BaseException:
    """An instance of ``cls`` carrying ``message`` and the kept ``attrs``, without calling ``__init__``
    (whose signature vow cannot know)."""
    exc = cls.__new__(cls)
    exc.args = (message,)
    if issubclass(cls, vow_errors.RejectedError):
        exc.type_name, exc.message = attrs.get("type_name", "unknown"), message  # type: ignore[attr-defined]
    if issubclass(cls, (vow_errors.TransientError, vow_errors.PermanentError)):
        exc.code = attrs.get("code")  # type: ignore[attr-defined]
    if issubclass(cls, vow_errors.TransientError):
        exc.retry_after = attrs.get("retry_after")  # type: ignore[attr-defined]
    if type_name(cls).startswith("httpx."):
        _rebuild_http(exc, attrs)
    return exc


def _rebuild_http(exc: BaseException, attrs: dict[str, Any]) -> None:
    import httpx  # declared by vow: only reached when an httpx failure is decoded

    request = None
    if "method" in attrs:
        request = httpx.Request(str(attrs["method"]), str(attrs.get("url", "http://unknown/")))
    exc._request = request  # type: ignore[attr-defined]
    if "status_code" in attrs:
        headers = {"retry-after": str(attrs["retry_after_header"])} if "retry_after_header" in attrs else {}
        exc.response = httpx.Response(  # type: ignore[attr-defined]
            int(attrs["status_code"]), headers=headers,
            request=request or httpx.Request("GET", "http://unknown/"))

