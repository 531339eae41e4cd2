"""How much one template may make: the bounds that keep a value from the input (a count, a width)
from exhausting the planner's memory.

Jinja's sandbox stops a template from reaching Python's internals, but not from asking for
``'=' * input.count`` with a count of ten billion: the planner would try to make that string and
take the whole process down with it, every run in it. Here each operation that can grow a value
far beyond its operands is checked **before** it runs — repetition (``*``), powers (``**``),
concatenation (``+``, ``~``), padding and precision in ``%`` and ``str.format``, and the methods and
filters that take a width or multiply text (``center``, ``ljust``, ``rjust``, ``zfill``,
``expandtabs``, ``indent``, ``replace``, ``translate``, ``join``, ``to_bytes``) — bytes as text;
a rendered text, and the text a block or macro collects (:class:`TextBuffer`), stops at the bound.
Loops are counted too (:func:`counted`): nested loops over large inputs would keep the planner
busy for hours without making anything; so are the items membership tests look through
(:func:`scanned`). Values nest at most :data:`MAX_DEPTH` levels, attribute paths name at most
:data:`MAX_KEYS` keys, and the few filters and codecs whose time grows faster than their input
(``round``, ``punycode``, ``idna``) are refused large arguments. Going over a bound is a
:class:`TooLarge` error for that run only.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import contextvars
import functools
import inspect
import itertools
import math
import re
import string
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_DIGITS", "MAX_KEYS", "MAX_LOOPS", "MAX_SCANS", "MAX_SIZE", "TextBuffer", "TooLarge",
           "bounded_filters", "check_binop", "check_call", "check_concat", "check_format_spec", "check_format_string",
           "check_printf", "counted", "rendering", "scanned"]

MAX_SIZE = 1_000_000
"""The most characters (or items) a template makes: its text, and any value made on the way."""

MAX_DIGITS = 4300
"""The most digits of a whole number a template makes (Python's own limit for turning one into text)."""

MAX_LOOPS = 1_000_000
"""The most turns of its loops, all together, that one rendering of a template takes."""

MAX_SCANS = 100_000_000
"""The most items (or characters) the membership tests (``x in a_list``, ``select('in', a_list)``) of
one rendering look through, all together: ``{% if item in input.allowed %}`` in a loop over the
input's items takes a time that grows with the product of both lengths."""

MAX_DEPTH = 500
"""The most levels deep a template nests lists, tuples and mappings: Python hashes a tuple (a key,
``unique``) with no guard against depth, and a million levels crashed the process."""

MAX_KEYS = 100
"""The most keys an ``attribute`` path of a filter names (``map(attribute='a.b.c')`` names 3): it is
followed for each item, and input nests at most 100 levels deep anyway."""

_SQUARE_CODECS = {"punycode": 1000, "idna": 1000}
"""Codecs whose time grows with the square of the text, and the most characters (or bytes) a
template gives them: a domain name has at most 253."""

_MAX_BITS = math.ceil(MAX_DIGITS * math.log2(10))

_loops_left: contextvars.ContextVar[list[int]] = contextvars.ContextVar("vow_template_loops")
_scans_left: contextvars.ContextVar[list[int]] = contextvars.ContextVar("vow_template_scans")
# the size of each list, tuple and mapping measured in this rendering, by id (the value is kept, so the
# id stays its own): a list made of the same list twice, again and again, is measured once per list
_sizes: contextvars.ContextVar[dict[int, tuple[Any, int, int]]] = contextvars.ContextVar("vow_template_sizes")
_CACHED = 100_000  # values kept in that cache before it starts over


class TooLarge(ValueError):
    """An operation in a template would make a value over :data:`MAX_SIZE` (or :data:`MAX_DIGITS`)."""


def _refuse(what: str, size: int | float, unit: str = "characters") -> TooLarge:
    return TooLarge(f"{what} would make {size:,.0f} {unit}; a template makes at most {MAX_SIZE:,} "
                    "(check the value it was given)")


def _is_text_or_list(value: Any) -> bool:
    return isinstance(value, (str, bytes, list, tuple))


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@contextlib.contextmanager
def rendering() -> Iterator[None]:
    """Count the loops of one rendering of a template (up to :data:`MAX_LOOPS` turns in all)."""
    token = _loops_left.set([MAX_LOOPS])
    scans = _scans_left.set([MAX_SCANS])
    sizes = _sizes.set({})
    try:
        yield
    finally:
        _sizes.reset(sizes)
        _scans_left.reset(scans)
        _loops_left.reset(token)


def measure(value: Any) -> tuple[int, int]:
    """The size of ``value`` (characters of its texts plus items of its lists and mappings, counted as
    often as they appear, as its text or JSON would show them) and how deeply its lists nest."""
    cache = _sizes.get(None)
    if cache is None:
        cache = {}
    elif len(cache) > _CACHED:
        cache.clear()
    return _measure(value, cache)


def _measure(value: Any, cache: dict[int, tuple[Any, int, int]]) -> tuple[int, int]:
    if isinstance(value, (str, bytes)):
        return len(value), 0
    if not isinstance(value, (list, tuple, dict)):
        return 1, 0
    known = cache.get(id(value))
    if known is not None and known[0] is value:
        return known[1], known[2]
    size, depth = len(value), 0
    for item in (value if not isinstance(value, dict) else [*value.keys(), *value.values()]):
        item_size, item_depth = _measure(item, cache)
        size, depth = size + item_size, max(depth, item_depth)
        if size > MAX_SIZE * 1000:  # far over already: no need to go on
            break
    cache[id(value)] = (value, size, depth + 1)
    return size, depth + 1


def check_size(value: Any, what: str) -> Any:
    """``value``, refused when it is text, bytes, a list or a mapping over :data:`MAX_SIZE`, or
    nested more than :data:`MAX_DEPTH` levels deep."""
    if isinstance(value, (str, bytes, list, tuple, dict)):
        size, depth = measure(value)
        if size > MAX_SIZE:
            raise _refuse(what, size, "characters and items")
        if depth > MAX_DEPTH:
            raise TooLarge(f"{what} would nest {depth:,} levels deep; a template's values nest at most "
                           f"{MAX_DEPTH:,} levels deep")
    return value


def count_turn() -> None:
    """Count one turn against this rendering's :data:`MAX_LOOPS` (a call of a macro: a macro calling
    itself twice makes 2**n calls with no loop in sight)."""
    left = _loops_left.get(None)
    if left is not None:
        _turn(left, "its loops and macro calls", "loops inside loops over large values, or a macro calling itself?")


def counted(iterable: Iterable[Any]) -> Iterable[Any]:
    """``iterable``, each turn of the loop over it counted against this rendering's :data:`MAX_LOOPS`
    (every ``{% for %}`` of a template loops over one)."""
    left = _loops_left.get(None)
    return iterable if left is None else _counting(iterable, left)


def _counting(iterable: Iterable[Any], left: list[int]) -> Iterator[Any]:
    for item in iterable:
        _turn(left, "its loops", "loops inside loops over large values?")
        yield item


def scanned(value: Any) -> Any:
    """``value``, the right side of an ``in`` test; looking through a list, tuple or text counts its
    length against this rendering's :data:`MAX_SCANS` (a mapping or a range looks up at once)."""
    left = _scans_left.get(None)
    if left is not None and isinstance(value, (list, tuple, str, bytes)):
        left[0] -= len(value)
        if left[0] < 0:
            raise TooLarge(f"its membership tests (in) would look through more than {MAX_SCANS:,} items or "
                           "characters in all, the most one template takes (a test in a loop over large values?)")
    return value


def _turn(left: list[int], what: str, hint: str) -> None:
    """Spend one of the turns ``left`` in this rendering; :class:`TooLarge` once none is."""
    left[0] -= 1
    if left[0] < 0:
        raise TooLarge(f"{what} would turn more than {MAX_LOOPS:,} times, the most one template takes ({hint})")


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``left <operator> right`` when its result would be over the bounds."""
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if _is_text_or_list(seq) and _whole(times) and (size := measure(seq)[0] * times) > MAX_SIZE:
                raise _refuse(f"repeating a value of length {len(seq):,} {times:,} times", size)
        if _whole(left) and _whole(right) and left.bit_length() + right.bit_length() > _MAX_BITS:
            raise TooLarge(f"multiplying whole numbers of {left.bit_length():,} and {right.bit_length():,} bits "
                           f"would make one of about {(left.bit_length() + right.bit_length()) * 0.30103:,.0f} "
                           f"digits; a template makes whole numbers of at most {MAX_DIGITS:,} digits")
    elif operator == "**":
        if _whole(left) and _whole(right) and abs(left) > 1 and right > 0:
            digits = right * math.log10(abs(left))
            if digits > MAX_DIGITS:
                raise TooLarge(f"{left} ** {right} would have about {digits:,.0f} digits; a template makes "
                               f"whole numbers of at most {MAX_DIGITS:,} digits")
    elif operator == "+":
        if _is_text_or_list(left) and _is_text_or_list(right):
            size = measure(left)[0] + measure(right)[0]
            if size > MAX_SIZE:
                raise _refuse("joining two values with +", size)
    elif operator == "%" and isinstance(left, (str, bytes)):
        check_printf(left if isinstance(left, str) else left.decode("latin-1"), right)


def check_concat(texts: list[str]) -> None:
    """Refuse ``a ~ b ~ ...`` (``texts``: each part as text) when they would join into more than
    :data:`MAX_SIZE` characters."""
    size = sum(map(len, texts))
    if size > MAX_SIZE:
        raise _refuse("joining values with ~", size)


# A printf-style conversion: flags, width and precision (either may be * for "taken from the values").
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?[a-zA-Z%]")


def _text_size(value: Any) -> int:
    return measure(value)[0] if isinstance(value, (str, bytes, list, tuple, dict)) else 30


def check_printf(template: str, values: Any = ()) -> None:
    """Refuse a ``%`` format whose widths or precisions, or the values it puts in (``values``: one, a
    tuple, or a mapping for ``%(name)s``), would make more than :data:`MAX_SIZE`; all its conversions
    together, for ``'%999999s' * 100`` makes each within the bound and the whole far over it."""
    for match in _PRINTF.finditer(template):
        for size in match.groups():
            if size == "*":
                raise TooLarge("a * width or precision in a % format is not allowed in a template; "
                               "write the number in the format")
            if size and int(size) > MAX_SIZE:
                raise _refuse(f"the width or precision {int(size):,} in {match.group(0)[:20]!r}", int(size))
    positional = values if isinstance(values, tuple) else (values,)
    total, position = len(template), 0
    for match in _PRINTF.finditer(template):
        if match.group(0).endswith("%") and not match.group(0).startswith("%("):
            continue
        key = re.match(r"%\(([^)]*)\)", match.group(0))
        if key is not None:
            value = values.get(key.group(1), "") if isinstance(values, dict) else ""
        else:
            value, position = (positional[position] if position < len(positional) else ""), position + 1
        total += _text_size(value) + sum(int(size) for size in match.groups() if size and size != "*")
        if total > MAX_SIZE:
            raise _refuse(f"the % format {template[:20]!r}", total)


def check_format_spec(spec: str) -> None:
    """Refuse a ``str.format`` spec (``>10``, ``.3f``) whose width or precision is over :data:`MAX_SIZE`."""
    for number in re.findall(r"\d+", spec):
        if len(number) > 7 or int(number) > MAX_SIZE:
            raise _refuse(f"the width or precision in the format spec {spec[:20]!r}", int(number[:20]))


def check_format_string(template: str, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> None:
    """Refuse a ``str.format`` template with a width or precision over :data:`MAX_SIZE`, or one
    taken from the values (``{:>{}}``), which cannot be checked before it is used; or one whose
    fields together, with the values put in them (``'{0}' * 1000``), would make more."""
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
    kwargs = kwargs or {}
    largest = max(map(_text_size, [*args, *kwargs.values()]), default=0)
    total, position = len(template), 0
    for _, field, spec, _ in fields:
        if field is None:
            continue
        if field == "":
            value, position = (args[position] if position < len(args) else ""), position + 1
            size = _text_size(value)
        elif field.isdigit():
            size = _text_size(args[int(field)]) if int(field) < len(args) else 0
        elif field in kwargs:
            size = _text_size(kwargs[field])
        else:  # an attribute or item of a value: at most as large as the largest
            size = largest
        total += size + sum(int(number[:7]) for number in re.findall(r"\d+", spec or ""))
        if total > MAX_SIZE:
            raise _refuse(f"the format {template[:20]!r}", total)


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


def _tabs(text: str | bytes, tabsize: Any = 8) -> int:
    tabs = text.count("\t") if isinstance(text, str) else text.count(b"\t")
    return len(text) + tabs * (tabsize if _whole(tabsize) else 8)


def _translated(text: str | bytes, table: Any, *_: Any) -> int:
    if isinstance(text, bytes):  # a table of 256 bytes: one byte for one
        return len(text)
    size = 0
    for char, times in collections.Counter(text).items():  # each letter once: a megabyte of one letter is quick
        try:
            new = table[ord(char)]
        except LookupError:
            new = char
        size += times * (len(new) if isinstance(new, str) else 0 if new is None else 1)
    return size


def _bytes_made(number: int, length: Any = 1, *_: Any, **kwargs: Any) -> int:
    length = kwargs.get("length", length)
    return length if _whole(length) else 0


def _indented(value: Any, width: Any = 4, *_: Any, **__: Any) -> int:
    text = str(value)
    per_line = len(width) if isinstance(width, str) else (width if _whole(width) else 4)
    return len(text) + per_line * (text.count("\n") + 1)


# str (and bytes) method -> the length of its result, from the text and the call's arguments
_STR_METHODS: dict[str, Callable[..., int]] = {
    "center": _padded, "ljust": _padded, "rjust": _padded, "zfill": _padded,
    "expandtabs": _tabs,
    "join": lambda text, items: _joined(text, items),
    "replace": _replaced,
    "translate": _translated,
}


def _check_codec(text: str | bytes, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse ``text.encode(...)`` or ``text.decode(...)`` with a codec that is slow on long texts."""
    encoding = kwargs.get("encoding", args[0] if args else "utf-8")
    try:
        name = codecs.lookup(encoding).name
    except (LookupError, TypeError):  # the call itself says what is wrong
        return
    most = _SQUARE_CODECS.get(name)
    if most is not None and len(text) > most:
        raise TooLarge(f"the {name} codec takes a time that grows with the square of the text; a template gives it "
                       f"at most {most:,} characters, not {len(text):,}")


def check_call(function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a call of a ``str`` method that would make more than :data:`MAX_SIZE` characters.
    Returns the arguments to call it with (an iterator given to ``join`` is read once, here)."""
    name = getattr(function, "__name__", "")
    owner = getattr(function, "__self__", None)
    formatted = getattr(getattr(function, "__wrapped__", None), "__self__", None)  # the sandbox wraps str.format
    if name == "format" and isinstance(formatted, str):
        check_format_string(formatted, args, kwargs)
        return args
    if name == "format_map" and isinstance(formatted, str):
        check_format_string(formatted, (), dict(args[0]) if args and isinstance(args[0], dict) else {})
        return args
    if name in ("encode", "decode") and isinstance(owner, (str, bytes)):
        _check_codec(owner, args, kwargs)
        return args
    if name == "to_bytes" and isinstance(owner, int):  # bool too: true.to_bytes(n)
        size_of: Callable[..., int] | None = _bytes_made
    elif isinstance(owner, (str, bytes)):
        size_of = _STR_METHODS.get(name)
    else:
        size_of = None
    if size_of is None:
        return args
    if name == "join" and args and not isinstance(args[0], (list, tuple)):
        args = (list(args[0]), *args[1:])
    try:
        size = size_of(owner, *args, **kwargs)
    except TypeError:  # wrong arguments: the call itself says so
        return args
    if size > MAX_SIZE:
        raise _refuse(f"{type(owner).__name__}.{name}", size)
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


def _wrapped_size(text: Any, width: Any = 79, break_long_words: Any = True, wrapstring: Any = None,
                  *_: Any, **__: Any) -> int:
    text, width = str(text), max(width if _whole(width) else 79, 1)
    lines = len(text) // width + text.count("\n") + 1
    longest = max(map(len, text.split()), default=0)
    if break_long_words and longest * longest // width > 2_000_000_000:
        # textwrap cuts a long word a piece at a time, copying the rest each time: hours for a long one
        raise TooLarge(f"the wordwrap filter would cut a word of {longest:,} characters into pieces of {width}; "
                       "a template wraps words that long at wider widths")
    return int(len(text) + lines * len("\n" if wrapstring is None else str(wrapstring)))


def _json_size(value: Any, indent: Any = None, *_: Any, **__: Any) -> int:
    size, depth = measure(value)
    per_level = len(indent) if isinstance(indent, str) else (indent if _whole(indent) else 0)
    return 8 * size + (size + 1) * max(per_level, 0) * depth  # each item on a line, indented per level


def _filled(count: Any, fill_with: Any) -> int:
    return count if _whole(count) and fill_with is not None else 0


def _sum(original: Callable[..., Any]) -> Callable[..., Any]:
    """The sum filter; for lists, joined in one go (Python's sum makes a new list for each one
    added: a million lists of one item took hours), and refused over the bound."""

    def sum_(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
        if attribute is None and isinstance(start, (list, tuple)):
            items = list(iterable)
            if all(isinstance(item, type(start)) for item in items):
                size = measure(start)[0] + sum(measure(item)[0] for item in items)
                if size > MAX_SIZE:
                    raise _refuse("the sum filter", size, "characters and items")
                return type(start)(itertools.chain(start, *items))
            iterable = items
        return original(environment, iterable, attribute, start)

    functools.update_wrapper(sum_, original)
    return sum_


def check_result(value: Any, what: str) -> Any:
    """``value``, the result of a filter or call, refused when over :data:`MAX_SIZE` (or a whole number
    over :data:`MAX_DIGITS`: ``int(base=16)`` and ``from_bytes`` read one from a text of any length, and
    dividing two of a megabyte takes minutes); an iterator (``map``, ``batch``) is checked as it is
    read, all it gives together."""
    if isinstance(value, (str, bytes, list, tuple, dict)):
        return check_size(value, what)
    if _whole(value) and value.bit_length() > _MAX_BITS:
        raise TooLarge(f"{what} would make a whole number of about {value.bit_length() * 0.30103:,.0f} digits; "
                       f"a template makes whole numbers of at most {MAX_DIGITS:,} digits")
    if isinstance(value, Iterator) and not isinstance(value, _Counted):
        return _Counted(value, what)
    return value


class _Counted(Iterator[Any]):
    def __init__(self, items: Iterator[Any], what: str) -> None:
        self._items, self._what, self._size = items, what, 0

    def __next__(self) -> Any:
        item = next(self._items)
        self._size += measure(item)[0] if isinstance(item, (str, bytes, list, tuple, dict)) else 1
        if self._size > MAX_SIZE:
            raise _refuse(self._what, self._size, "characters and items")
        return item


class TextBuffer(list[str]):
    """Where a block, a macro, a ``{% call %}`` or a recursive loop collects its text before it is joined
    (every ``{% set %}``, ``{% filter %}`` block and macro body writes into one), refused once it passes
    :data:`MAX_SIZE`: a thousand turns of a million characters each were gigabytes before they were
    joined and measured."""

    __slots__ = ("_size",)

    def __init__(self) -> None:
        super().__init__()
        self._size = 0

    def append(self, text: str) -> None:
        self._grow(len(text))
        super().append(text)

    def extend(self, texts: Iterable[str]) -> None:
        texts = list(texts)
        self._grow(sum(map(len, texts)))
        super().extend(texts)

    def _grow(self, size: int) -> None:
        self._size += size
        if self._size > MAX_SIZE:
            raise TooLarge(f"the text of a block or macro would be longer than {MAX_SIZE:,} characters, the most "
                           "a template makes (check the values it loops over)")


def _keys(attribute: Any) -> int:
    """How many keys an attribute path names (``a.b,c`` names 3, as ``sort`` reads it)."""
    return len(re.split(r"[.,]", attribute)) if isinstance(attribute, str) else 1


def _attribute_checked(filter_: Callable[..., Any], first: bool = False) -> Callable[..., Any]:
    """``filter_`` (``map``, ``sort``, ``selectattr``...), refusing an ``attribute`` path of more than
    :data:`MAX_KEYS` keys: it is followed for each item, and ``'0.' * n`` on a text never ends.
    ``first``: the path is the filter's first argument (``selectattr``), not ``attribute=``."""
    signature = inspect.signature(filter_)

    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            given = signature.bind(*args, **kwargs).arguments
        except TypeError:  # wrong arguments: the filter itself says so
            return filter_(*args, **kwargs)
        attribute = given.get("attribute", given.get("kwargs", {}).get("attribute"))
        if first and given.get("args"):
            attribute = given["args"][0]
        if (keys := _keys(attribute)) > MAX_KEYS:
            raise TooLarge(f"an attribute path of {keys:,} keys ({str(attribute)[:20]!r}...) is followed for each "
                           f"item; a template names at most {MAX_KEYS:,}")
        return filter_(*args, **kwargs)

    functools.update_wrapper(checked, filter_)
    return checked


def _round(original: Callable[..., Any]) -> Callable[..., Any]:
    """The round filter; ``floor``, ``ceil`` and a whole number rounded to tens, hundreds... make
    10 ** precision first: hours for a precision of a hundred million."""

    def round_(value: Any, precision: Any = 0, method: Any = "common") -> Any:
        if _whole(precision) and abs(precision) > MAX_DIGITS and (method != "common" or _whole(value)):
            raise TooLarge(f"the round filter rounds to at most {MAX_DIGITS:,} digits, not {precision:,}")
        return original(value, precision, method)

    functools.update_wrapper(round_, original)
    return round_


def _truncate(original: Callable[..., Any]) -> Callable[..., Any]:
    """The truncate filter, saying what is wrong with its length or leeway (Jinja asserts, and a bare
    AssertionError is no template error)."""

    def truncate(env: Any, s: Any, length: Any = 255, killwords: Any = False, end: Any = "...",
                 leeway: Any = None) -> Any:
        if _number(length) and isinstance(end, str) and length < len(end):
            raise ValueError(f"the truncate filter cuts to a length of at least its end {end!r} ({len(end)}), "
                             f"not {length}")
        if _number(leeway) and leeway < 0:
            raise ValueError(f"the truncate filter's leeway is 0 or more, not {leeway}")
        return original(env, s, length, killwords, end, leeway)

    functools.update_wrapper(truncate, original)
    return truncate


def checked_filter(name: str, filter_: Callable[..., Any]) -> Callable[..., Any]:
    """``filter_``, its result refused over the bound (see :func:`check_result`)."""
    what = f"the {name} filter"

    def checked(*args: Any, **kwargs: Any) -> Any:
        return check_result(filter_(*args, **kwargs), what)

    functools.update_wrapper(checked, filter_)
    return checked


def bounded_filters(filters: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Jinja's filters that can multiply text, each checked first: ``center``, ``indent``,
    ``replace``, ``join`` and ``format`` (a ``%`` format)."""
    sizes: dict[str, Callable[..., int]] = {
        "center": lambda value, width=80: max(len(str(value)), width if _whole(width) else 0),
        "indent": _indented,
        "replace": lambda value, old, new, count=None: _replaced(str(value), str(old), str(new),
                                                                 -1 if count is None else count),
        "join": _join_filter_size,
        "wordwrap": _wrapped_size,
        "tojson": _json_size,
        "batch": lambda value, linecount, fill_with=None, *_, **__: _filled(linecount, fill_with),
        "slice": lambda value, slices, *_, **__: slices if _whole(slices) else 0,
    }
    bounded = {name: _bounded(filters[name], size_of, name) for name, size_of in sizes.items()}
    original_format = filters["format"]

    def format_(value: Any, *args: Any, **kwargs: Any) -> Any:
        check_printf(str(value), kwargs if kwargs else args)
        return original_format(value, *args, **kwargs)

    bounded["format"] = format_
    bounded["sum"] = _sum(filters["sum"])
    bounded["round"] = _round(filters["round"])
    bounded["truncate"] = _truncate(filters["truncate"])
    every = {**filters, **bounded}
    for name in ("groupby", "join", "map", "max", "min", "rejectattr", "selectattr", "sort", "sum", "unique"):
        every[name] = _attribute_checked(every[name], first=name in ("rejectattr", "selectattr"))
    return {name: checked_filter(name, filter_) for name, filter_ in every.items()}
