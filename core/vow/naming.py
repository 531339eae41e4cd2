"""The names under which leaves and child workflows are stored.

A promise records the function it calls as ``module.qualname``. A file run as a script has the
module name ``__main__``, and the same file imported (by ``vow worker --app shop``) is ``shop``:
recorded naively, one run could not be resumed by the other although nothing changed. So
``__main__`` is resolved to the name the file would have when imported: the module spec's name
under ``python -m``, or the file's dotted path under the ``sys.path`` entry that holds it.
"""

from __future__ import annotations

import functools
import os
import sys
import types
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from vow.errors import EncodeError

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

MAX_KNOWN_FUNCTIONS = 10_000
"""Entries a table keyed by :func:`function_key` keeps; past that it starts again (code made at run
time, one function object per call, would otherwise grow it for ever)."""

__all__ = [
    "MAX_KNOWN_FUNCTIONS", "function_key", "function_name", "lasting", "looked_up", "main_module_name",
    "not_in_a_run_id", "refuse_unstorable", "storable", "stored_as", "why_unstorable",
]


def why_unstorable(text: str) -> str | None:
    """Why no store can keep ``text`` as text (an id, key or tag), or ``None`` when every store can.

    Two things: a lone surrogate (not UTF-8: SQLite and PostgreSQL take text as UTF-8) and a NUL
    character (PostgreSQL's text holds none). The engine refuses such an id at the call
    (:func:`vow.engine.stepper.check_text`), so none is ever stored."""
    if "\x00" in text:
        return f"{text!r} holds a NUL character (\\x00), which a store's text cannot hold; remove it"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"{exc} (ids and tags must be valid text; remove lone surrogates)"
    return None


def storable(text: str) -> bool:
    """Whether every store can keep ``text``: a lookup by an id that is not finds nothing, as it was
    never stored (see :func:`why_unstorable`)."""
    return (text.isascii() and "\x00" not in text) or why_unstorable(text) is None


def refuse_unstorable(texts: Iterable[str], what: str) -> None:
    """Raise :class:`~vow.errors.EncodeError` when a store is asked to write one of ``texts`` that no
    store can keep (``what`` names them: "the lease of run ..."), before anything is written."""
    for text in texts:
        reason = why_unstorable(text)
        if reason is not None:
            raise EncodeError(f"{what} cannot be stored: {reason}")


def not_in_a_run_id(c: str) -> bool:
    """A character no run id holds: a space, a control character (``\\x1b`` would steer the terminal of
    whoever lists the runs), or a lone surrogate (a byte of the command line that is not UTF-8: no
    store can keep it as text)."""
    return c.isspace() or unicodedata.category(c) in ("Cc", "Cs")


def main_module_name() -> str | None:
    """The import name of the ``__main__`` module, or ``None`` when it has none (``python -c``, a REPL)."""
    main = sys.modules.get("__main__")
    if main is None:
        return None
    spec = getattr(main, "__spec__", None)
    name = str(spec.name) if spec is not None and spec.name else ""
    if name and name != "__main__":
        return name[: -len(".__main__")] if name.endswith(".__main__") else name
    path = getattr(main, "__file__", None)
    if not path:
        return None
    return _module_for_file(os.path.abspath(path))


def _module_for_file(path: str) -> str | None:
    stem, ext = os.path.splitext(path)
    if ext != ".py":
        return None
    best: str | None = None
    for entry in sys.path:
        base = os.path.abspath(entry or os.getcwd())
        if not stem.startswith(base + os.sep):
            continue
        dotted = stem[len(base) + 1:].replace(os.sep, ".")
        if all(part.isidentifier() for part in dotted.split(".")) and (best is None or len(dotted) < len(best)):
            best = dotted
    return best


def function_name(fn: Any) -> str:
    """The name a promise records for ``fn``: its ``__vow_name__`` when it has one (a step that moved
    keeps the name runs already hold), else ``module.qualname`` with ``__main__`` resolved to its
    import name. A partial is named by the function it wraps, and a callable object by its class:
    never by an address, which a replay in another process would not find again."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    fixed = getattr(fn, "__vow_name__", None)
    if isinstance(fixed, str) and fixed:
        return fixed
    qual = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not isinstance(qual, str) or not qual:  # an instance with __call__
        fn = type(fn)
        qual = fn.__qualname__
    module = getattr(fn, "__module__", None) or ""
    if module == "__main__":
        module = main_module_name() or ""
    return f"{module}.{qual}" if module else qual


def lasting(fn: Any) -> bool:
    """Whether ``fn`` lives as long as its module (a function defined at module or class level, or a
    builtin function), so what is learnt of it may be cached by identity. Not a closure, a partial, a
    bound method or a callable object: a workflow may make one for each call, and a cache keyed by
    them would keep every one, and all they hold, for the life of the process."""
    kind = type(fn)
    if kind is types.FunctionType:  # by its code's name: functools.wraps gives a closure a module-level one
        return "<locals>" not in fn.__code__.co_qualname
    return kind is types.BuiltinFunctionType and (fn.__self__ is None or isinstance(fn.__self__, types.ModuleType))


def function_key(fn: Any) -> Any:
    """What the engine learns of ``fn`` (how long its attempts take, whether it is ``async``) is kept
    under. A function that lives as long as its module is its own key (:func:`lasting`: the
    quickest to look up). Another one (a closure, a bound method, a partial) is keyed by its code
    and qualified name, through a partial to the function it wraps, so one made afresh for each call
    has the key of the last one: tables keyed by it stay as small as the program and keep none of
    the objects a run made. A builtin method is keyed by its qualified name, another callable object
    by its class."""
    if lasting(fn):
        return fn
    while isinstance(fn, functools.partial):
        fn = fn.func
    code = getattr(fn, "__code__", None)
    name = getattr(fn, "__qualname__", None)
    if code is None and not isinstance(name, str):
        return type(fn)
    return code, name


def looked_up(table: Mapping[Any, T], fn: Any) -> T | None:
    """``table.get(fn)``, or ``None`` when ``fn`` cannot be a key: an object equal by value (a
    dataclass with ``__call__``) has no hash, and is never cached by identity anyway."""
    try:
        return table.get(fn)
    except TypeError:
        return None


def stored_as(name: str) -> Callable[[F], F]:
    """Decorator: record the decorated leaf or workflow as ``name`` whatever module it lives in (give
    a function that moved the name its runs already hold: ``@stored_as("shop.invoice")``)."""
    def mark(fn: F) -> F:
        fn.__vow_name__ = name  # type: ignore[attr-defined]
        return fn

    return mark
