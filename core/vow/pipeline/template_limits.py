"""How much one template may make: the bounds that keep a value from the input (a count, a width)
from exhausting the planner's memory.

Jinja's sandbox stops a template from reaching Python's internals, but not from asking for
``'=' * input.count`` with a count of ten billion: the planner would try to make that string and
take the whole process down with it, every run in it. Here each operation that can grow a value
far beyond its operands is checked **before** it runs — repetition (``*``), powers (``**``),
concatenation (``+``, ``~``), padding and precision in ``%`` and ``str.format``, and the methods and
filters that take a width or multiply text (``center``, ``ljust``, ``rjust``, ``zfill``,
``expandtabs``, ``indent``, ``replace``, ``join``) — and a rendered text stops at the bound.
Loops are counted too (:func:`counted`): nested loops over large inputs would keep the planner
busy for hours without making anything. Going over a bound is a :class:`TooLarge` error for
that run only.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import re
import string
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any

__all__ = ["MAX_DIGITS", "MAX_LOOPS", "MAX_SIZE", "TooLarge", "bounded_filters", "check_binop", "check_call",
           "check_concat", "check_format_spec", "check_format_string", "check_printf", "counted", "rendering"]

MAX_SIZE = 1_000_000
"""The most characters (or items) a template makes: its text, and any value made on the way."""

MAX_DIGITS = 4300
"""The most digits of a whole number a template makes (Python's own limit for turning one into text)."""

MAX_LOOPS = 1_000_000
"""The most turns of its loops, all together, that one rendering of a template takes."""

_loops_left: contextvars.ContextVar[list[int]] = contextvars.ContextVar("vow_template_loops")


class TooLarge(ValueError):
    """An operation in a template would make a value over :data:`MAX_SIZE` (or :data:`MAX_DIGITS`)."""


def _refuse(what: str, size: int | float, unit: str = "characters") -> TooLarge:
    return TooLarge(f"{what} would make {size:,.0f} {unit}; a template makes at most {MAX_SIZE:,} "
                    "(check the value it was given)")


def _is_text_or_list(value: Any) -> bool:
    return isinstance(value, (str, list, tuple))


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@contextlib.contextmanager
def rendering() -> Iterator[None]:
    """Count the loops of one rendering of a template (up to :data:`MAX_LOOPS` turns in all)."""
    token = _loops_left.set([MAX_LOOPS])
    try:
        yield
    finally:
        _loops_left.reset(token)


def counted(iterable: Iterable[Any]) -> Iterable[Any]:
    """``iterable``, each turn of the loop over it counted against this rendering's :data:`MAX_LOOPS`
    (every ``{% for %}`` of a template loops over one)."""
    left = _loops_left.get(None)
    return iterable if left is None else _counting(iterable, left)


def _counting(iterable: Iterable[Any], left: list[int]) -> Iterator[Any]:
    for item in iterable:
        left[0] -= 1
        if left[0] < 0:
            raise TooLarge(f"its loops would turn more than {MAX_LOOPS:,} times, the most one template takes "
                           "(loops inside loops over large values?)")
        yield item


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``left <operator> right`` when its result would be over the bounds."""
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if _is_text_or_list(seq) and _whole(times) and len(seq) * times > MAX_SIZE:
                raise _refuse(f"repeating a value of length {len(seq):,} {times:,} times", len(seq) * times)
    elif operator == "**":
        if _whole(left) and _whole(right) and abs(left) > 1 and right > 0:
            digits = right * math.log10(abs(left))
            if digits > MAX_DIGITS:
                raise TooLarge(f"{left} ** {right} would have about {digits:,.0f} digits; a template makes "
                               f"whole numbers of at most {MAX_DIGITS:,} digits")
    elif operator == "+":
        if _is_text_or_list(left) and _is_text_or_list(right) and len(left) + len(right) > MAX_SIZE:
            raise _refuse("joining two values with +", len(left) + len(right))
    elif operator == "%" and isinstance(left, str):
        check_printf(left)


def check_concat(texts: list[str]) -> None:
    """Refuse ``a ~ b ~ ...`` (``texts``: each part as text) when they would join into more than
    :data:`MAX_SIZE` characters."""
    size = sum(map(len, texts))
    if size > MAX_SIZE:
        raise _refuse("joining values with ~", size)


# A printf-style conversion: flags, width and precision (either may be * for "taken from the values").
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?[a-zA-Z%]")


def check_printf(template: str) -> None:
    """Refuse a ``%`` format whose widths or precisions would make more than :data:`MAX_SIZE`."""
    for match in _PRINTF.finditer(template):
        for size in match.groups():
            if size == "*":
                raise TooLarge("a * width or precision in a % format is not allowed in a template; "
                               "write the number in the format")
            if size and int(size) > MAX_SIZE:
                raise _refuse(f"the width or precision {int(size):,} in {match.group(0)[:20]!r}", int(size))


def check_format_spec(spec: str) -> None:
    """Refuse a ``str.format`` spec (``>10``, ``.3f``) whose width or precision is over :data:`MAX_SIZE`."""
    for number in re.findall(r"\d+", spec):
        if len(number) > 7 or int(number) > MAX_SIZE:
            raise _refuse(f"the width or precision in the format spec {spec[:20]!r}", int(number[:20]))


def check_format_string(template: str) -> None:
    """Refuse a ``str.format`` template with a width or precision over :data:`MAX_SIZE`, or one
    taken from the values (``{:>{}}``), which cannot be checked before it is used."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:  # a malformed template: str.format itself says what is wrong
        return
    for _, _, spec, _ in fields:
        if spec and "{" in spec:
            raise TooLarge("a width or precision taken from the values ({:>{}}) is not allowed in a template; "
                           "write the number in the format")
        if spec:
            check_format_spec(spec)


def _lengths(items: Iterable[Any]) -> int:
    return sum(len(item) if isinstance(item, Sized) else 20 for item in items)


def _joined(separator: str, items: Any) -> int:
    items = list(items) if not isinstance(items, (list, tuple)) else items
    return _lengths(items) + len(separator) * max(len(items) - 1, 0)


def _replaced(text: str, old: str, new: str, count: int = -1) -> int:
    found = text.count(old) if old else len(text) + 1
    if count >= 0:
        found = min(found, count)
    return len(text) + found * (len(new) - len(old))


def _padded(text: str, width: Any = 0, *_: Any) -> int:
    return max(len(text), width if _whole(width) else 0)


def _tabs(text: str, tabsize: Any = 8) -> int:
    return len(text) + text.count("\t") * (tabsize if _whole(tabsize) else 8)


def _indented(value: Any, width: Any = 4, *_: Any, **__: Any) -> int:
    text = str(value)
    per_line = len(width) if isinstance(width, str) else (width if _whole(width) else 4)
    return len(text) + per_line * (text.count("\n") + 1)


# str method -> the length of its result, from the text and the call's arguments
_STR_METHODS: dict[str, Callable[..., int]] = {
    "center": _padded, "ljust": _padded, "rjust": _padded, "zfill": _padded,
    "expandtabs": _tabs,
    "join": lambda text, items: _joined(text, items),
    "replace": _replaced,
}


def check_call(function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a call of a ``str`` method that would make more than :data:`MAX_SIZE` characters.
    Returns the arguments to call it with (an iterator given to ``join`` is read once, here)."""
    name = getattr(function, "__name__", "")
    owner = getattr(function, "__self__", None)
    formatted = getattr(getattr(function, "__wrapped__", None), "__self__", None)  # the sandbox wraps str.format
    if name in ("format", "format_map") and isinstance(formatted, str):
        check_format_string(formatted)
        return args
    if not isinstance(owner, str) or name not in _STR_METHODS:
        return args
    if name == "join" and args and not isinstance(args[0], (list, tuple)):
        args = (list(args[0]), *args[1:])
    try:
        size = _STR_METHODS[name](owner, *args, **kwargs)
    except TypeError:  # wrong arguments: the call itself says so
        return args
    if size > MAX_SIZE:
        raise _refuse(f"str.{name}", size)
    return args


def _bounded(filter_: Callable[..., Any], size_of: Callable[..., int], name: str) -> Callable[..., Any]:
    """``filter_``, checking the size of its result first; it keeps Jinja's marker for a filter that
    takes the evaluation context before its value (``join``, ``replace``)."""
    passes_context = getattr(filter_, "jinja_pass_arg", None) is not None

    def bounded(*args: Any, **kwargs: Any) -> Any:
        try:
            size = size_of(*args[passes_context:], **kwargs)
        except TypeError:  # wrong arguments: the filter itself says so
            size = 0
        if size > MAX_SIZE:
            raise _refuse(f"the {name} filter", size)
        return filter_(*args, **kwargs)

    functools.update_wrapper(bounded, filter_)
    return bounded


def _join_filter_size(value: Any, separator: Any = "", *_: Any, **__: Any) -> int:
    return _joined(str(separator), value) if isinstance(value, (list, tuple)) else 0


def bounded_filters(filters: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Jinja's filters that can multiply text, each checked first: ``center``, ``indent``,
    ``replace``, ``join`` and ``format`` (a ``%`` format)."""
    sizes: dict[str, Callable[..., int]] = {
        "center": lambda value, width=80: max(len(str(value)), width if _whole(width) else 0),
        "indent": _indented,
        "replace": lambda value, old, new, count=None: _replaced(str(value), str(old), str(new),
                                                                 -1 if count is None else count),
        "join": _join_filter_size,
    }
    bounded = {name: _bounded(filters[name], size_of, name) for name, size_of in sizes.items()}
    original_format = filters["format"]

    def format_(value: Any, *args: Any, **kwargs: Any) -> Any:
        check_printf(str(value))
        return original_format(value, *args, **kwargs)

    bounded["format"] = format_
    return bounded
